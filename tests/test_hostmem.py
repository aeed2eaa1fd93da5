"""bnrepro.training.hostmem: glibc's malloc keeps freed memory, and nothing else changes."""
import ctypes
import json
import subprocess
import sys

import pytest

from bnrepro.training import hostmem
from tests.conftest import REPO


def test_applies_on_glibc_linux():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux's")
    assert hostmem.keep_host_memory() is True
    assert hostmem.keep_host_memory() is True  # once per process, then a no-op


def test_a_libc_without_mallopt_changes_nothing(monkeypatch):
    monkeypatch.setattr(hostmem, "_applied", False)

    def no_libc(*args, **kwargs):
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert hostmem.keep_host_memory() is False
    assert hostmem._applied is False


@pytest.mark.slow  # ~12 s: two fresh processes; scripts/bench_host_memory.py checks the same on every run
def test_the_same_bits_with_and_without():
    """The benchmark's own child (fig2's 3-seed stack, a few steps, 300 images) in two fresh processes,
    malloc's settings being per process: the same parameters and evaluation totals."""
    script = REPO / "scripts" / "bench_host_memory.py"
    runs = {mode: json.loads(subprocess.run([sys.executable, str(script), "--child", mode, "--steps", "3", "--evals",
                                             "1", "--images", "300"], check=True, capture_output=True, text=True,
                                            cwd=REPO).stdout.splitlines()[-1]) for mode in ("default", "kept")}
    assert runs["kept"]["applied"] and not runs["default"]["applied"]
    assert runs["default"]["digest"] == runs["kept"]["digest"]
