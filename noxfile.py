"""Sessions: ``checks`` (property checks + benchmark smoke), ``bench`` (quick CPU benchmark and
report), ``lint`` (ruff). pip installs torch from the pinned wheel; uv would download gigabytes."""

from __future__ import annotations

import nox

nox.options.sessions = ["checks", "lint"]
nox.options.default_venv_backend = "virtualenv"


@nox.session
def checks(session: nox.Session) -> None:
    """Property checks of every model and technique, plus every benchmark body run once on the
    cases of a quick run (each model at its quick size, batches 1 and 8: the body is the same at
    any batch, and emulated bfloat16 at 32 costs minutes); one pytest-xdist worker per CPU, each
    taking the next test when it is free (``checks/conftest.py`` orders them)."""
    session.install("-e", ".")
    session.run(
        "pytest",
        "--numprocesses=auto",
        "--dist=worksteal",
        "--benchmark-disable",
        "--bench-quick",
        "--bench-batch-sizes=1,8",
        "--durations=30",  # where the budget goes
        *session.posargs,
        # two workers on two CPUs, each with OpenMP threads: waiting threads sleep, not spin
        env={"OMP_WAIT_POLICY": "PASSIVE"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The quick CPU benchmark of every model and backend; writes reports/runs/<run-id>/."""
    session.install("-e", ".")
    session.run("torchgauge", "run", "--quick", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff")
    session.run("ruff", "check", ".", *session.posargs)
