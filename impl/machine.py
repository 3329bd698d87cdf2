"""What this machine can do: features probed from torch's own report, and what every run records.

Machines differ (AVX2 or AVX-512, native bfloat16 or not, 2 cores or 16, a GPU or none), and a
capability that works on one may be refused on another: oneDNN has no bfloat16 LSTM on a CPU
without native bf16 support. A model declares which features a capability needs, next to the
capability (``ModelSpec.needs``); checks and benchmarks skip, with a reason naming the feature and
what torch reports, only where the probe says the feature is missing, and run everywhere else.

    >>> ONEDNN_BF16.available          # False on an AVX2-only CPU
    >>> ONEDNN_BF16.missing_reason()   # "needs onednn_bf16 (...); this machine: ..."
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Feature:
    """A machine feature that a capability can need, probed from torch itself."""

    name: str  # "onednn_bf16"
    device: str  # the device it concerns: a CPU feature does not matter to a CUDA run
    description: str  # what it is and where it exists, for skip reasons
    probe: Callable[[], bool]  # True where the feature is present
    reported: Callable[[], str]  # what torch reports about it here, for skip reasons

    @property
    def available(self) -> bool:
        return _probe(self.name, self.probe)

    def missing_reason(self) -> str:
        return f"needs {self.name} ({self.description}); this machine: {self.reported()}"


@functools.cache
def _probe(name: str, probe: Callable[[], bool]) -> bool:
    """Probe once per process: the answer cannot change while torch is loaded."""
    return bool(probe())


def cpu_capability() -> str:
    """torch's own name for the widest vector ISA it dispatches to: DEFAULT, AVX2, AVX512, ..."""
    return torch.backends.cpu.get_cpu_capability()


def onednn_bf16_supported() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def int8_engine() -> str:
    """The quantised engine in effect: torch picks "x86" on x86 builds, "qnnpack" on Arm."""
    return torch.backends.quantized.engine


# what torch.utils.benchmark.Timer.collect_callgrind runs: all three come with Debian's valgrind
CALLGRIND_TOOLS = ("valgrind", "callgrind_control", "callgrind_annotate")


def callgrind_tools() -> dict[str, str | None]:
    """Where each callgrind tool is on PATH, or None where it is not."""
    return {tool: shutil.which(tool) for tool in CALLGRIND_TOOLS}


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), which can be fewer than the host has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


CUDA = Feature(
    name="cuda",
    device="cuda",
    description="an NVIDIA GPU with a CUDA build of torch",
    probe=torch.cuda.is_available,
    reported=lambda: (
        f"torch {torch.__version__}, torch.cuda.is_available() is {torch.cuda.is_available()}"
    ),
)

CUDA_BF16 = Feature(
    name="cuda_bf16",
    device="cuda",
    description="native bfloat16 on an NVIDIA GPU of compute capability 8.0 (Ampere) or newer",
    probe=lambda: torch.cuda.is_available() and torch.cuda.is_bf16_supported(False),
    reported=lambda: (
        f"torch.cuda.get_device_capability() is {torch.cuda.get_device_capability()}"
        if torch.cuda.is_available()
        else "no CUDA device"
    ),
)

ONEDNN_BF16 = Feature(
    name="onednn_bf16",
    device="cpu",
    description="oneDNN bfloat16 kernels: x86 with AVX-512 or newer, or Arm with BF16",
    probe=onednn_bf16_supported,
    reported=lambda: (
        f"torch.backends.cpu.get_cpu_capability() is {cpu_capability()!r}, "
        f"torch.ops.mkldnn._is_mkldnn_bf16_supported() is {onednn_bf16_supported()}"
    ),
)

INT8_ENGINE = Feature(
    name="int8_engine",
    device="cpu",
    description="a quantised CPU engine (x86, fbgemm, onednn or qnnpack)",
    probe=lambda: int8_engine() != "none",
    reported=lambda: (
        f"torch.backends.quantized.engine is {int8_engine()!r}, supported engines are "
        f"{torch.backends.quantized.supported_engines}"
    ),
)

VALGRIND = Feature(
    name="valgrind",
    device="cpu",
    description=(
        "valgrind's callgrind, which counts the instructions a call executes: "
        f"{', '.join(CALLGRIND_TOOLS)} on PATH, from the Debian package valgrind"
    ),
    probe=lambda: all(callgrind_tools().values()),
    reported=lambda: ", ".join(
        f"{tool} {'at ' + path if path else 'not on PATH'}"
        for tool, path in callgrind_tools().items()
    ),
)

FEATURES = (CUDA, CUDA_BF16, ONEDNN_BF16, INT8_ENGINE, VALGRIND)


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """What a measurement here depends on: CPU and its features, threads, GPU, library versions.

    Recorded with every benchmark run (``machine_info["torchgauge"]`` of pytest-benchmark JSON).
    """
    import onnxruntime

    cuda = CUDA.available
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "onnxruntime": onnxruntime.__version__,
        "cpu_model": _cpu_model(),
        "cpu_capability": cpu_capability(),
        "onednn_bf16": ONEDNN_BF16.available,
        "quantized_engine": int8_engine(),
        "quantized_engines": list(torch.backends.quantized.supported_engines),
        "threads": torch.get_num_threads() if threads is None else threads,
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "features": {f.name: f.available for f in FEATURES},
    }


def _cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo where there is one, else the platform's."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
