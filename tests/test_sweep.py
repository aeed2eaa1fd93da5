"""Sweeps: launcher configs, a parallel sweep with a failing job, and its summary."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnrepro.analysis.summarize import SUMMARY_CSV, main, summarize
from bnrepro.config import SWEEP_ENV, OutputDirCheck, run_name  # importing it registers config_schema
from bnrepro.training.rundir import lock
from tests.conftest import CONFIGS, REPO, SMOKE, run_one


def hydra_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True).hydra


def test_default_launcher_is_hydras_basic_one():
    assert hydra_cfg().launcher._target_.endswith("BasicLauncher")


def test_local_launcher_config():
    launcher = hydra_cfg("hydra/launcher=local").launcher
    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 2 and launcher.backend == "loky"
    assert hydra_cfg("hydra/launcher=local", "hydra.launcher.n_jobs=8").launcher.n_jobs == 8


def test_slurm_launcher_config():
    launcher = hydra_cfg("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.sweep.dir=/scratch/s").launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 240, 1)
    assert launcher.submitit_folder == "/scratch/s/.submitit/%j"


@pytest.mark.parametrize("launcher", [
    ["trainer.threads=1"],  # Hydra's basic launcher, one job after another
    pytest.param(["hydra/launcher=local", "hydra.launcher.n_jobs=2"], marks=pytest.mark.slow),  # ~11 s on 2 idle cores
])
def test_sweep_with_a_failing_job_keeps_every_result(tmp_path, launcher):
    """Three jobs; data.pad_to=10 is refused inside its job (validation: smaller than the images)."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "experiments/train.py", "-m", *launcher, "data.pad_to=28,30,10", *SMOKE, "probe.every=0",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0  # Hydra reports the failed job at the end of the sweep...
    dirs = {p.name.split(",")[0]: p for p in sweep.iterdir() if p.is_dir() and p.name != "by_variant"}
    jobs = {name: json.loads((d / "summary.json").read_text()) for name, d in dirs.items()}
    assert {k: v["status"] for k, v in jobs.items()} == {
        "data.pad_to=28": "completed", "data.pad_to=30": "completed", "data.pad_to=10": "failed"}
    assert "data.pad_to=10 is smaller" in jobs["data.pad_to=10"]["error"]
    for name in ("data.pad_to=28", "data.pad_to=30"):  # ...and the others' results are all there
        assert jobs[name]["steps"] == 20 and (dirs[name] / "metrics.csv").exists()
        if "hydra/launcher=local" in launcher:  # n_jobs=2 jobs share the usable cores
            threads = json.loads((dirs[name] / "provenance.json").read_text())["torch_threads"]
            assert threads == max(1, len(os.sched_getaffinity(0)) // 2)
    # ...and the sweep summary, refreshed by each job as it ended, lists all three.
    table = pd.read_csv(sweep / SUMMARY_CSV)
    table = table.set_index(table.run.str.split(",").str[0])
    assert table.status.to_dict() == {k: v["status"] for k, v in jobs.items()}
    assert table.loc["data.pad_to=28", "test_accuracy"] == jobs["data.pad_to=28"]["final"]["test/accuracy"]
    assert "data.pad_to=10 is smaller" in table.loc["data.pad_to=10", "error"]


def test_summarize_lists_running_and_failed_jobs(make_cfg, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    smoke = [*SMOKE, "trainer.threads=1"]
    run_one(make_cfg(*smoke, "seed=0"), sweep / "seed=0")
    run_one(make_cfg(*smoke, "seed=1"), sweep / "seed=1")
    (sweep / "seed=1" / "summary.json").unlink()  # killed without a word
    with pytest.raises(Exception):
        run_one(make_cfg(*smoke, "seed=2", "trainer.batch_size=5000"), sweep / "seed=2")
    (sweep / "seed=3" / ".hydra").mkdir(parents=True)  # just started: only Hydra's files so far
    (sweep / "seed=3" / ".hydra" / "config.yaml").write_text("variant: bn\nseed: 3\n")

    with lock(sweep / "seed=3"):  # a job that has started holds its lock
        frame = summarize(sweep).set_index("run")
    # seed=1: no summary and no process holds its lock: killed, not running (issue 33)
    assert frame.status.to_dict() == {"seed=0": "completed", "seed=1": "interrupted", "seed=2": "failed",
                                      "seed=3": "running"}
    assert "no process holds its lock" in frame.loc["seed=1", "error"]
    assert frame.loc["seed=1", "steps"] == 20  # how far it got, from its metrics.csv
    assert "batch_size=5000" in frame.loc["seed=2", "error"]
    assert frame.loc["seed=3", "seed"] == 3

    with lock(sweep / "seed=3"):
        assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "4 jobs: 1 completed, 1 interrupted, 1 failed, 1 running" in out and "seed=2" in out
    assert pd.read_csv(sweep / SUMMARY_CSV).shape[0] == 4


def test_summarize_script_and_errors(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "summarize.py"), str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "is not a directory" in proc.stderr


def test_a_job_is_named_by_its_own_command_not_by_another_process_in_its_sweep_dir(tmp_path, monkeypatch):
    """make's halves launch processes sweeping different keys into one directory, each overwriting
    its multirun.yaml; a job's name (and so a resume's) must follow the keys its own command sweeps."""
    def multirun_config(*overrides):
        first = [o.split(",")[0] for o in overrides]  # composed with one value each...
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("train", overrides=[*first, f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
        cfg.hydra.overrides.task = list(overrides)  # ...the sweeper's config holds the command's sweeps
        return cfg

    monkeypatch.delenv(SWEEP_ENV, raising=False)
    task = ["seed=1", "bn.ghost_batch=8", "data=synthetic"]
    mine = multirun_config("seed=0,1", "bn.ghost_batch=8", "data=synthetic")
    other = multirun_config("bn.ghost_batch=2,8", "seed=1", "data=synthetic")
    OmegaConf.save(other, tmp_path / "multirun.yaml")  # the other process launched last
    assert run_name(task, sweep_dir=str(tmp_path)).startswith("bn.ghost_batch=8,seed=1")  # the file alone
    OutputDirCheck().on_multirun_start(mine)
    assert run_name(task, sweep_dir=str(tmp_path)).startswith("seed=1,bn.ghost_batch=8")
    assert run_name(task, sweep_dir=str(tmp_path / "elsewhere")).startswith("seed=1,bn")  # no file: variant, seed lead
