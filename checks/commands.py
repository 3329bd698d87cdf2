"""Run the ``torchgauge`` command as a user would: its own process, real files, real exit codes.

``torchgauge_in_this_process`` runs the same ``main`` in the check's own process, for commands
that answer before they build or measure anything (listings, bad input): in a process of their
own they would spend 5 s of the checks' CPU each importing torch and every model family, which
the check's process has imported already. What a process adds to ``main`` (``sys.exit`` of its
return code, the environment it inherits) is checked by the commands that run in their own.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import chdir, redirect_stderr, redirect_stdout
from pathlib import Path

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]


def torchgauge(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m bench ARGS`` in ``cwd``, with ``env`` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def torchgauge_in_this_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchgauge ARGS`` in ``cwd`` through ``bench.cli.main`` in this process, its output
    captured as a process's would be; argparse's usage errors exit with 2 as the command does."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with chdir(cwd), redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = 0 if exit_.code is None else exit_.code
    return subprocess.CompletedProcess(
        ["torchgauge", *args], code, stdout.getvalue(), stderr.getvalue()
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` and its bytes: to show that nothing changed."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
