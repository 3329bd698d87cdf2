"""Instructions per eager forward call, counted by valgrind's callgrind: a deterministic measure.

Wall-clock time on a shared machine varies by tens of percent from one run to the next (issue 8
measured 22 ms and 35 ms for the same case minutes apart); the number of instructions a call
executes hardly varies at all, so a change of a percent in it is a change in the code. This is
the approach of PyTorch's own ``benchmarks/instruction_counts``:
``torch.utils.benchmark.Timer.collect_callgrind`` runs the statement in a fresh Python process
under callgrind, counting instructions only around the measured loop.

That process builds the model, its eager runner and the inputs as the inference kind does
(``torch.manual_seed(0)``, ``spec.create(size).eval()``, ``backend.prepare``,
``spec.inputs(config, batch, seed=1)``) and counts the call that kind times,
``run(inputs)``: a forward under ``torch.inference_mode()``. It counts a number of calls in a
row (``calls_per_count``), once to warm up and then ``REPEATS`` times;
``extra_info["instructions"]`` holds one count per call for each repeat, with callgrind's noisy
interpreter symbols removed (``counts(denoise=True)``), and ``instructions_number`` the calls
per count.

Most repeats agree within 0.2%, but now and then one counts 0.5% to 1.4% more: for
``mlp_784_128_10`` at batch 1 (171,000 instructions a call), 1 to 3 repeats in 8. It is no
chance: two processes with the same environment count the same repeats to the instruction, and
the pattern moves with the memory allocators' settings (glibc's ``MALLOC_*`` tunables,
``PYTHONMALLOC=malloc``), so it is their bookkeeping, falling in one repeat or another as the
process's environment lays out its memory. A comparison reads the median of the repeats, which
one such repeat cannot move.

Counts are taken at one intra-op thread (``COUNTING_THREADS``), whatever the run's threads, as
PyTorch's own instruction counts are: valgrind runs a process's threads one at a time, so the
instructions OpenMP's waiting threads spin through depend on its scheduling. At the run's 2
threads, three repeats of ``mlp_784_128_10`` at batch 1 counted 1.08, 1.34 and 1.20 million
instructions per call; ``linear_2_1``, too small for a parallel region, agreed within 0.1%.

pytest-benchmark times the whole valgrind process once, most of which is importing torch under
valgrind (about 80 s on the 2-core machine): that is what the case cost, not a latency.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from torch.utils.benchmark import Timer

from bench.cases import BenchCase
from bench.measure import case_info
from impl import get_spec

KINDS = ("instructions",)
# Counts from one process: five, so that their median is a count that agrees with others even
# where two repeats hold an allocator's bookkeeping (see the module doc); each costs a second or
# two beside torch's import under valgrind. Before them, one repeat is counted and dropped, as
# warm-up of the counted code (see calls_per_count).
REPEATS = 5
# The counted loop is copies of the statement, each run once per repeat, so the statement is one
# call of a function that every copy shares: Python's specialising interpreter settles on a
# function run many times, not on a statement run four times.
STATEMENT = "run(native)"
COUNTING_THREADS = 1  # see the module doc: spin-waiting threads make counts depend on scheduling
FLOPS_PER_COUNT = 1e9  # what one count may hold at most, beyond one call: see calls_per_count
CALLS_PER_COUNT = (100, 10)  # the choices, besides one call


def calls_per_count(flops_per_call: int) -> int:
    """How many calls one count holds: 100, 10 or 1, the most whose FLOPs fit ``FLOPS_PER_COUNT``.

    Counts are not exact. Python 3.11+ keeps trying to specialise the bytecode a call runs, each
    try costing thousands of instructions at call numbers of its own, and a call's count falls as
    the process warms up (linear_2_1, batch 1, 2 threads: 78,573 instructions around the 50th
    call, 78,125 around the 400th). Repeated counts of 10 calls spread by 0.36%, of 100 calls by
    0.16%; a large call's millions of instructions hide the tries. But under valgrind a call runs
    50 to 100 times slower, so a large call is counted fewer times. Its size is measured in
    FLOPs, which are the same in every run, because the number of calls must be: the count per
    call depends on it a little. At most ``FLOPS_PER_COUNT`` a count keeps the counted calls to
    seconds, beside torch's import under valgrind (about 80 s).
    """
    return next((n for n in CALLS_PER_COUNT if n * flops_per_call <= FLOPS_PER_COUNT), 1)


def bench_instructions(benchmark, case: BenchCase, prepared_models) -> None:
    spec = get_spec(case.model)
    model = prepared_models.model(case.model, case.size, case.device)
    inputs = spec.inputs(spec.config(case.size), case.batch_size, seed=1)
    flops = prepared_models.flops(case.model, case.size, case.device, inputs)
    number = calls_per_count(flops)
    setup = callgrind_setup(case, COUNTING_THREADS)
    timer = Timer(stmt=STATEMENT, setup=setup, num_threads=COUNTING_THREADS)

    def count() -> list[float]:
        with callgrind_environment():
            _, *counted = timer.collect_callgrind(
                number=number, repeats=1 + REPEATS, collect_baseline=False
            )
        return [stats.counts(denoise=True) / number for stats in counted]

    benchmark.group = case.group
    per_call = benchmark.pedantic(count, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        **case_info(case, model, inputs, COUNTING_THREADS),
        flops=flops,
        instructions=per_call,
        instructions_number=number,
    )


def callgrind_setup(case: BenchCase, threads: int) -> str:
    """Code that the valgrind process runs before counting: ``run`` and ``native``, the call and
    inputs that the inference kind times, built as ``PreparedModels`` builds them.

    The process runs a script from a temporary directory, so it gets this process's import path
    first: the repository, and the modules of plugin models (named in ``TORCHGAUGE_PLUGINS``,
    which it inherits). It imports the model's family module alone, not every model: under
    valgrind, the import of torchvision that other families need costs about 50 s.
    """
    return "\n".join(
        [
            "import sys",
            f"sys.path[:0] = [p for p in {sys.path!r} if p not in sys.path]",
            "import pathlib, tempfile",
            "import torch",
            f"import {get_spec(case.model).build.__module__}  # its family alone: see impl.models",
            "from impl import get_spec",
            "from impl.backends import get_backend",
            f"spec, backend = get_spec({case.model!r}), get_backend({case.backend!r})",
            f"config = spec.config({case.size!r})",
            "torch.manual_seed(0)",
            f"model = spec.create({case.size!r}).eval()",
            "example = spec.inputs(config, backend.example_batch)",
            "workdir = tempfile.TemporaryDirectory()  # removed when the process ends",
            f"runner = backend.prepare(model, example, pathlib.Path(workdir.name), {threads})",
            f"inputs = spec.inputs(config, {case.batch_size}, seed=1)",
            "run, native = runner.run, runner.convert(inputs)",
        ]
    )


@contextmanager
def callgrind_environment() -> Iterator[None]:
    """What the valgrind process needs from the environment, set for the call and restored.

    ``collect_callgrind`` runs ``python`` from PATH, not ``sys.executable``: from a virtual
    environment that is not on PATH it would find no torch, so this interpreter's directory goes
    first. A fixed ``PYTHONHASHSEED`` gives every run the same string hashes, hence the same
    dictionary probing: counts of two runs then differ by what changed, not by a random seed.
    """
    wanted = {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "PYTHONHASHSEED": "0",
    }
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
