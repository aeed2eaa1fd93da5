"""Bad inputs and faults, tried as a skeptical user would: every row asserts its outcome.

Outcomes (issue 12): a clear error (in-process: a BnreproError whose one paragraph names the key
or path, raised before any data is read; from the command line: exit status 2, no traceback),
a correct acceptance (the run does what was asked), or an exact resume. Each section below is a
table of cases; add a row for every new bad input the suite learns to catch.
"""
import subprocess
import sys

import pytest

from bnrepro.errors import BnreproError
from tests.conftest import REPO, SMOKE, run_one


def cli(args: list[str], cwd, timeout: int = 120) -> subprocess.CompletedProcess:
    """experiments/train.py as a user runs it."""
    return subprocess.run([sys.executable, str(REPO / "experiments" / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def clear_error(proc: subprocess.CompletedProcess, *names: str) -> None:
    """Exit status 2, no traceback, and the message names every one of `names`."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    for name in names:
        assert name in out, (name, out[-2000:])


def refused_in_process(make_cfg, tmp_path, overrides: list[str], match: str) -> None:
    """The run refuses `overrides` with a BnreproError matching `match`."""
    with pytest.raises(BnreproError, match=match):
        run_one(make_cfg(*SMOKE, *overrides), tmp_path / "run")


# --- the config: types, ranges, unknown keys (before any data is read) -------------------------
CONFIG_CASES: list = []

# --- the data: missing, partial, corrupt, non-finite, out-of-range labels ------------------------
DATA_CASES: list = []

# --- faults: run directories, signals, disks, damaged records, sweeps ---------------------------
FAULT_CASES: list = []
