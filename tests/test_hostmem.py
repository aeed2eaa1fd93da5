"""bnrepro.training.hostmem: glibc's malloc keeps freed memory, and nothing else changes."""
import ctypes
import subprocess
import sys

import pytest

from bnrepro.training import hostmem


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


@pytest.mark.slow  # ~8 s: two fresh processes; scripts/bench_host_memory.py checks the same on every run
def test_the_same_bits_with_and_without(tmp_path):
    """A short run of the conv stack, in two fresh processes (malloc's settings are per process)."""
    code = """
import hashlib, sys, torch
from bnrepro.config import compose
from bnrepro.training.hostmem import keep_host_memory
from bnrepro.training.members import build_members
from bnrepro.training.optim import build_optimizer
if sys.argv[1] == "kept":
    assert keep_host_memory()
torch.set_num_threads(1)
cfg = compose("experiment=fig2_fashion_mnist", "variant=bn_baseline", "seeds=[0,1]", "model.width_mult=0.0625")
m = build_members(cfg, (1, 32, 32), 10, torch.device("cpu"))
opt, _ = build_optimizer(m.module, cfg.optim)
g = torch.Generator().manual_seed(0)
x, y = torch.rand(300, 1, 32, 32, generator=g), torch.randint(0, 10, (300,), generator=g)
for i in range(3):
    opt.zero_grad(set_to_none=True); m.forward_backward(x[32 * i:32 * i + 32], y[32 * i:32 * i + 32]); opt.step()
totals = m.evaluate([(x, y)])
params = torch.cat([p.detach().flatten() for p in m.module.parameters()])
print(hashlib.sha256(params.numpy().tobytes() + totals.numpy().tobytes()).hexdigest())
"""
    digests = {mode: subprocess.run([sys.executable, "-c", code, mode], check=True, capture_output=True,
                                    text=True, cwd=tmp_path).stdout.split()[-1] for mode in ("default", "kept")}
    assert digests["default"] == digests["kept"]
