"""Data-parallel training: torchrun with 2 CPU processes over gloo, and the bn.sync knob."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from bnrepro.errors import BnreproError
from tests.conftest import REPO, SMOKE, run_one

DDP_SMOKE = [*SMOKE, "trainer.threads=1"]


def test_sync_bn_needs_cuda_and_says_so(make_cfg, tmp_path):
    with pytest.raises(BnreproError, match="bn.sync=true needs CUDA"):
        run_one(make_cfg(*DDP_SMOKE, "bn.sync=true"), tmp_path)


def test_shard_is_identity_in_one_process():
    import torch

    from bnrepro.training import distributed

    x, y = torch.arange(8.0).view(4, 2), torch.arange(4)
    assert distributed.shard(x, y)[0] is x and distributed.world_size() == 1 and distributed.is_main()


def test_torchrun_two_processes_rank0_writes_and_matches_one_process(make_cfg, tmp_path):
    """One torchrun sweep of 2 jobs, 2 processes each (~7 s on 2 idle cores)."""
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k != "BNREPRO_RUN_TIME"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "experiments/train.py",
         "-m", "variant=baseline,bn", *DDP_SMOKE, f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for variant in ("baseline", "bn"):
        (job,) = [d for d in sweep.iterdir() if d.is_dir() and f"variant={variant}" in d.name]
        # Rank 0 alone writes: one event file, one row per number, one .hydra/.
        assert len(list(job.glob("events.out.tfevents.*"))) == 1
        ddp = pd.read_csv(job / "metrics.csv")
        assert not ddp.duplicated(["step", "split", "name"]).any()
        assert json.loads((job / "summary.json").read_text())["status"] == "completed"
        one = run_one(make_cfg(*DDP_SMOKE, f"variant={variant}"), tmp_path / variant)
        ddp_loss = ddp[(ddp.split == "test") & (ddp.name == "loss")].value.tolist()
        one_loss = [one["final"]["test/loss"]]
        if variant == "baseline":  # averaged gradients of two halves == the whole batch's gradient
            assert ddp_loss[-1] == pytest.approx(one_loss[0], rel=1e-5)
        else:  # per-process BN normalizes over 16 examples instead of 32: a different network
            assert ddp_loss[-1] != pytest.approx(one_loss[0], rel=1e-5)
    assert pd.read_csv(sweep / "summary.csv").status.tolist() == ["completed", "completed"]


def test_torchrun_ranks_stop_at_the_plateau_together(tmp_path):
    """trainer.stop_at_plateau under torchrun: the ranks agree (distributed.any_rank) and stop at the
    first check, as one process does (tests/test_plateau_stop.py), rather than one waiting for the other."""
    from tests.test_plateau_stop import FLAT

    single = [o for o in FLAT if not o.startswith("seeds=")]
    env = {k: v for k, v in os.environ.items() if k != "BNREPRO_RUN_TIME"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "experiments/train.py",
         *single, f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stopped"] == "plateau" and summary["steps"] == 40
