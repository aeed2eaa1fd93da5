import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))

# Tiny, fast, file-free defaults for runs composed from the real configs.
# data.val_size=0: the tiny real-format files of some tests hold fewer images than the MNIST/CIFAR
# configs' 5,000-image validation split (tests/test_val_split.py sets its own).
SMOKE = ["data=synthetic", "data.val_size=0", "trainer.max_steps=20", "trainer.eval_every=10", "trainer.log_every=5",
         "trainer.batch_size=32", "trainer.progress=none", "trainer.device=cpu", "probe.every=5",
         "probe.batch_size=64"]


@pytest.fixture
def make_cfg():
    """Compose the real configs/train.yaml with overrides, as the runner would: a typed schema.Config."""
    from bnrepro.config import compose

    return compose


@pytest.fixture(autouse=True)
def _quiet_and_isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", os.environ.get("CI", "1"))  # no progress bars in test logs
    monkeypatch.delenv("BNREPRO_DATA", raising=False)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Runs with trainer.threads=N set torch's process-wide thread count; later tests get theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_one(cfg, out_dir):
    """`session.run` of a single run (no `seeds`): its one summary."""
    from bnrepro.training.session import run

    (summary,) = run(cfg, out_dir)
    return summary


def pytest_configure(config):
    """Each of the -n 2 workers computes with one torch thread, so two of them share 2 cores
    without oversubscribing them (a test that sets trainer.threads still gets what it asks)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
