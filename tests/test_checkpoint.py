"""Checkpoints and exact resume: SIGKILL at an arbitrary step, SIGTERM/Ctrl-C, corrupt files."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bnrepro.training.checkpoint import CHECKPOINT_DIR, CorruptCheckpoint, checkpoints, read_verified
from bnrepro.errors import BnreproError
from tests.conftest import REPO, SMOKE, run_one

# Long enough to be stopped mid-way (~1 s of training), with every kind of saved state in use:
# augmentation generator, Algorithm 2's population stream, probes, a learning-rate decay.
RESUMABLE = [*SMOKE, "trainer.max_steps=600", "trainer.eval_every=50", "trainer.log_every=10", "probe.every=25",
             "trainer.threads=1", "trainer.deterministic=true", "trainer.checkpoint_every=100",
             "data.augment.flip=true", "data.augment.crop_padding=2", "bn.population=average",
             "bn.population_batches=3", "optim.lr_decay=0.9", "optim.lr_decay_every=100"]


def start(out, *extra, overrides=RESUMABLE):
    return subprocess.Popen([sys.executable, "experiments/train.py", *overrides, *extra, f"hydra.run.dir={out}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def logged_step(out) -> int:
    metrics = out / "metrics.csv" if (out / "metrics.csv").exists() else out / "seed=0" / "metrics.csv"
    try:
        return int(metrics.read_text().splitlines()[-1].split(",")[0])
    except (OSError, IndexError, ValueError):
        return -1


def stop_at(proc, out, step, signum):
    """Send `signum` once the run has logged `step` (polled every 5 ms: an arbitrary step after it)."""
    deadline = time.time() + 60
    while logged_step(out) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run never got there"
        time.sleep(0.005)
    proc.send_signal(signum)
    return proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def resumable_cfg():
    from bnrepro.config import compose

    return compose(*RESUMABLE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, resumable_cfg):
    """The uninterrupted run (in this process: the same numbers as a subprocess, one start fewer)."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("reference")
    run_one(resumable_cfg, out)
    torch.set_num_threads(threads)
    return out


def resume(cfg, out):
    return run_one(cfg, out)  # (conftest restores torch's thread count after each test)


def same_record(a, b):
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("status", "steps", "final", "best_accuracy", "best_step", "drift"):
        assert sa[key] == sb[key], key


def test_sigkill_at_arbitrary_step_then_rerun_is_identical(reference, resumable_cfg, tmp_path):
    out = tmp_path / "run"
    proc = start(out)
    stop_at(proc, out, 340, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    killed_at = logged_step(out)
    saved = [step for step, _ in checkpoints(out / CHECKPOINT_DIR)]
    assert saved and max(saved) < killed_at < 600  # rows after the checkpoint must be dropped on resume

    summary = resume(resumable_cfg, out)
    assert summary["resumed_from"].endswith(".pt") and f"step{max(saved):08d}" in summary["resumed_from"]
    same_record(reference, out)
    # TensorBoard purged the first attempt's steps after the checkpoint: one point per step.
    steps = [e.step for e in EventAccumulator(str(out)).Reload().Scalars("test/accuracy")]
    assert steps == sorted(set(steps)) == list(range(50, 601, 50))


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_checkpoint_before_exiting(reference, resumable_cfg, tmp_path, signum, code):
    out = tmp_path / "run"
    proc = start(out)
    _, stderr = stop_at(proc, out, 230, signum)
    assert proc.returncode == code, stderr
    assert "Rerun the same command" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and signal.Signals(signum).name in summary["error"]
    # The checkpoint is of the step the run stopped at, not the last periodic one.
    assert summary["checkpoint"].endswith(".pt") and f"step{summary['steps']:08d}" in summary["checkpoint"]
    assert 230 <= summary["steps"] < 600 and summary["steps"] % 100

    resume(resumable_cfg, out)
    same_record(reference, out)


def small(tmp_path, *extra):
    return [*SMOKE, "trainer.threads=1", "trainer.checkpoint_every=5", "trainer.checkpoint_keep=3", *extra]


def test_corrupt_checkpoint_is_reported_and_the_previous_one_used(make_cfg, tmp_path, capfd):
    out = tmp_path / "run"
    ref = run_one(make_cfg(*small(tmp_path)), out)
    kept = checkpoints(out / CHECKPOINT_DIR)
    assert [s for s, _ in kept] == [20, 15, 10]  # the newest 3
    newest, previous = kept[0][1], kept[1][1]
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    (out / "summary.json").unlink()  # as if killed after the last checkpoint
    summary = run_one(make_cfg(*small(tmp_path)), out)
    err = capfd.readouterr().err
    assert str(newest) in err and "sha256" in err
    assert summary["resumed_from"] == str(previous)
    assert summary["final"] == ref["final"]
    assert newest.with_name(newest.name + ".corrupt").exists()


def test_checksum_catches_a_flipped_byte(make_cfg, tmp_path):
    run_one(make_cfg(*small(tmp_path)), tmp_path)
    path = checkpoints(tmp_path / CHECKPOINT_DIR)[0][1]
    assert read_verified(path)["step"] == 20
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match="sha256"):
        read_verified(path)
    # No temporary file is left behind by the atomic writes.
    assert not [p for p in (tmp_path / CHECKPOINT_DIR).iterdir() if p.name.endswith(".tmp")]


def test_finished_run_is_not_redone_and_a_changed_config_is_refused(make_cfg, tmp_path):
    first = run_one(make_cfg(*small(tmp_path)), tmp_path)
    mtime = (tmp_path / "metrics.csv").stat().st_mtime_ns
    assert run_one(make_cfg(*small(tmp_path), "trainer.progress=lines"), tmp_path) == first
    assert (tmp_path / "metrics.csv").stat().st_mtime_ns == mtime
    with pytest.raises(BnreproError, match="different config"):
        run_one(make_cfg(*small(tmp_path), "optim.lr=0.3"), tmp_path)
    (tmp_path / "summary.json").unlink()
    with pytest.raises(BnreproError, match="optim.lr"):  # the checkpoints say which keys differ
        run_one(make_cfg(*small(tmp_path), "optim.lr=0.3"), tmp_path)
    # trainer.resume=false starts over there, with none of the old checkpoints left to outrank its own.
    summary = run_one(make_cfg(*small(tmp_path), "optim.lr=0.3", "trainer.resume=false", "trainer.max_steps=12"),
                  tmp_path)
    assert summary["status"] == "completed" and "resumed_from" not in summary
    assert [s for s, _ in checkpoints(tmp_path / CHECKPOINT_DIR)] == [12, 10, 5]  # 12: its final weights


def test_unexpected_exception_is_recorded_as_failed(make_cfg, tmp_path, monkeypatch):
    import bnrepro.training.session

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(bnrepro.training.session, "fit", broken)
    with pytest.raises(RuntimeError):
        run_one(make_cfg(*SMOKE, "trainer.threads=1"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: boom"
    assert "Traceback" in summary["traceback"]


def test_metrics_keep_one_row_per_step_after_resume(make_cfg, tmp_path):
    """Extending a finished schedule continues from its last checkpoint, appending."""
    run_one(make_cfg(*small(tmp_path)), tmp_path)
    summary = run_one(make_cfg(*small(tmp_path), "trainer.max_steps=30"), tmp_path)
    assert summary["steps"] == 30 and summary["resumed_from"].endswith(".pt")
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    acc = metrics[(metrics.split == "test") & (metrics.name == "accuracy")]
    assert acc.step.tolist() == [10, 20, 30]
    assert not metrics.duplicated(["step", "split", "name"]).any()


def test_sigusr2_handler_runs_after_the_checkpoint(make_cfg, tmp_path):
    """submitit handles SIGUSR2 (SLURM's warning before the time limit) by requeueing the job:
    the run checkpoints first, then hands the signal on, then stops as interrupted."""
    from bnrepro.training.checkpoint import Checkpointer, Interrupted

    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        with Checkpointer(tmp_path, every=0, keep=1, config={}) as ckpt:
            os.kill(os.getpid(), signal.SIGUSR2)
            with pytest.raises(Interrupted, match="SIGUSR2 at step 7"):
                ckpt.after_step(7, None, torch.zeros(()), 0)
        assert calls == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is not ckpt._request_stop  # restored on exit
    finally:
        signal.signal(signal.SIGUSR2, previous)


# The stacked path's promises are the single path's: two seeds as one model, norm outputs probed.
STACKED = [*SMOKE, "variant=bn", "trainer.max_steps=600", "trainer.eval_every=50", "trainer.log_every=10",
           "probe.every=25", "probe.norm_output=true", "trainer.threads=1", "trainer.deterministic=true",
           "trainer.checkpoint_every=100", "optim.lr_decay=0.9", "optim.lr_decay_every=100", "seeds=[0,1]"]


def test_stacked_run_killed_then_rerun_is_identical(make_cfg, tmp_path):
    reference = tmp_path / "reference"
    from bnrepro.training.session import run

    run(make_cfg(*STACKED), reference)
    out = tmp_path / "run"
    proc = start(out, overrides=STACKED)
    stop_at(proc, out, 340, signal.SIGKILL)
    saved = [step for step, _ in checkpoints(out / CHECKPOINT_DIR / "seeds=0,1")]
    assert saved and max(saved) < logged_step(out) < 600
    summaries = run(make_cfg(*STACKED), out)
    assert all(f"step{max(saved):08d}" in s["resumed_from"] for s in summaries)
    for seed in (0, 1):
        same_record(reference / f"seed={seed}", out / f"seed={seed}")
