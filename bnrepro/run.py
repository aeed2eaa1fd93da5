"""One run, end to end: set up, train, and leave a complete record in the run directory.

A run directory holds: config.yaml (resolved), provenance.json, metrics.csv, TensorBoard
events, and summary.json (status completed | diverged | failed, final and best metrics, wall
time, steps/s). Hydra adds its own .hydra/ with the unresolved config and the overrides.
Checkpoints go to checkpoints/ (bnrepro/checkpoint.py); under torchrun only rank 0 writes.
"""
from __future__ import annotations

import functools
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torchvision
from omegaconf import DictConfig, OmegaConf

from bnrepro import distributed, summarize
from bnrepro.checkpoint import Checkpointer, Interrupted, finished_run
from bnrepro.config import choice, validate
from bnrepro.data import build_data
from bnrepro.errors import BnreproError
from bnrepro.models import build_model
from bnrepro.tracking import RunLogger, flatten, write_json_atomic
from bnrepro.train import fit

REPO = Path(__file__).resolve().parents[1]


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Set both ways: a joblib (loky) worker process runs one job after another.
    torch.use_deterministic_algorithms(deterministic)
    if deterministic:
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BnreproError(f"trainer.device={name} was asked for, but torch sees no CUDA device. "
                           "Use trainer.device=cpu (or auto).")
    return device


@functools.cache
def git_state() -> dict[str, object]:
    """The checkout's SHA and dirty flag, read once per process: a sweep's jobs all run the code
    imported when it started, whatever is edited while it runs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"git_sha": git("rev-parse", "HEAD") or None, "git_dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(cfg: DictConfig, device: torch.device) -> dict[str, object]:
    return {
        **git_state(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": cfg.seed,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
    }


def new_summary(cfg: DictConfig, seed: int) -> dict[str, object]:
    """summary.json as a run starts: who it is, status `running` until it ends."""
    return {"variant": cfg.variant, "experiment": cfg.experiment, "seed": seed, "data": choice(cfg.data.name),
            "model": cfg.model.name, "status": "running"}


def ending(err: BaseException) -> dict[str, object]:
    """What summary.json says of a run that `err` ended: `interrupted` (SIGTERM, Ctrl-C, exit) or
    `failed` (a user error in one paragraph; anything else with its traceback)."""
    if isinstance(err, Interrupted):
        return {"status": "interrupted", "error": str(err), "steps": err.step, "checkpoint": str(err.checkpoint)}
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        return {"status": "interrupted", "error": f"{type(err).__name__} {err}".strip()}
    if isinstance(err, BnreproError):
        return {"status": "failed", "error": str(err)}
    return {"status": "failed", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def times(start: float) -> dict[str, float]:
    """Wall time since `start` (perf_counter) and the Unix times it spans; a sweep's elapsed time
    comes from these, and the stacked seeds of one process share them (counted once)."""
    wall, now = time.perf_counter() - start, time.time()
    return {"wall_time_s": round(wall, 3), "started_at": round(now - wall, 3), "ended_at": round(now, 3)}


def run(cfg: DictConfig, out_dir: str | os.PathLike) -> dict[str, object]:
    """Train `cfg` into `out_dir` and return the summary that was written to summary.json.

    Any exception is recorded as status `failed` (with the error) and re-raised; SIGTERM, Ctrl-C
    and SystemExit as `interrupted`. A run already finished in `out` with this config is not redone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    main_rank = distributed.is_main()  # under torchrun only rank 0 writes
    if cfg.trainer.resume and (previous := finished_run(out, cfg)):
        print(f"{out} already holds this run ({previous['status']}); not rerunning it.", file=sys.stderr)
        return previous
    start = time.perf_counter()
    summary = new_summary(cfg, cfg.seed)
    try:
        validate(cfg)
        if main_rank:
            OmegaConf.save(cfg, out / "config.yaml", resolve=True)
        if threads := cfg.trainer.threads or summarize.threads_per_job():
            torch.set_num_threads(threads)
        seed_everything(cfg.seed, cfg.trainer.deterministic)
        device = distributed.device_for_rank(resolve_device(cfg.trainer.device))
        if main_rank:
            write_json_atomic(out / "provenance.json", provenance(cfg, device))
        data = build_data(cfg.data, batch_size=cfg.trainer.batch_size,
                          eval_batch_size=cfg.trainer.eval_batch_size, device=device)
        model = distributed.convert_sync_bn(build_model(cfg, data.input_shape, data.num_classes), cfg.bn.sync,
                                            device).to(device)
        if cfg.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = cfg.trainer.cudnn_benchmark
        hparam_dict = flatten(OmegaConf.to_container(cfg, resolve=True))
        name = f"{cfg.variant} seed={cfg.seed}"
        checkpoints = Checkpointer.from_config(out, cfg, write=main_rank)
        if not cfg.trainer.resume:
            checkpoints.clear()
        start_step = checkpoints.load_latest()
        if start_step:
            summary["resumed_from"] = str(checkpoints.last_path)
        logger = RunLogger if main_rank else distributed.QuietLogger
        with logger(out, hparam_dict, cfg.trainer.max_steps, cfg.trainer.progress, name, start_step) as log, \
                checkpoints:
            train_start = time.perf_counter()
            result = fit(model, data, cfg, log, checkpoints)
            train_time = time.perf_counter() - train_start
        summary.update(
            status=result.status, divergence=result.divergence, steps=result.steps, final=result.final,
            best_accuracy=result.best_accuracy, best_step=result.best_step,
            train_time_s=round(train_time, 3), steps_per_s=round((result.steps - start_step) / train_time, 1),
            data_source=data.source, drift=result.drift,
        )
    except BaseException as err:
        summary.update(ending(err))
        raise
    finally:
        summary.update(times(start))
        if main_rank:
            write_json_atomic(out / "summary.json", summary)
    return summary


def main(cfg: DictConfig, out_dir: str) -> None:
    """The Hydra runner's body: a user error is one paragraph on stderr and exit status 2.

    Inside a multirun the error is raised instead, so Hydra records the job as failed and the
    sweep's other jobs still run; each job, however it ends, refreshes the sweep's summary.csv
    (Hydra skips on_multirun_end callbacks when a job failed, so nothing waits for the sweep's end).
    SIGTERM / Ctrl-C stop the run (and the sweep) after a checkpoint, exit status 128 + signal.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if cfg.seeds:  # a seed sweep as one stacked model; imported here, it imports this module
            from bnrepro.stacked_run import run_stacked

            run_stacked(cfg, out_dir)
        else:
            run(cfg, out_dir)
    except BnreproError as err:
        if multirun:
            raise
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:
        print(f"Interrupted: {err}. Rerun the same command (same output directory) to resume.", file=sys.stderr)
        sys.exit(128 + err.signum)
    finally:
        if multirun and distributed.is_main():
            summarize.refresh(HydraConfig.get().sweep.dir)
