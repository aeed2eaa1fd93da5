"""What a run writes about itself besides its metrics: provenance.json (the code, machine and command
behind it), summary.json's fields as it starts and ends, and the console's last line. Kept apart from
session.py, which runs the steps, so each stays readable."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Mapping

import torch
import torchvision

from bnrepro.errors import BnreproError
from bnrepro.files import unwritable
from bnrepro.schema import Config, choice
from bnrepro.training.checkpoint import Interrupted

REPO = Path(__file__).resolve().parents[2]


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


def provenance(cfg: Config, device: torch.device) -> dict[str, object]:
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


def new_summary(cfg: Config) -> dict[str, object]:
    """summary.json as a run starts: who it is, status `running` until it ends."""
    return {"variant": cfg.variant, "experiment": cfg.experiment, "seed": cfg.seed, "data": choice(cfg.data.name),
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
    if isinstance(err, OSError) and (message := unwritable(err)):  # a full disk: the user's to fix, no bug
        return {"status": "failed", "error": message}
    return {"status": "failed", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def times(start: float) -> dict[str, float]:
    """Wall time since `start` (perf_counter) and the Unix times it spans; a sweep's elapsed time
    comes from these, and the stacked seeds of one process share them (counted once)."""
    wall, now = time.perf_counter() - start, time.time()
    return {"wall_time_s": round(wall, 3), "started_at": round(now - wall, 3), "ended_at": round(now, 3)}


def drift_metrics(cfg: Config) -> dict[str, tuple[str, str]]:
    """The drift statistics of Figure 1's layer (the MLP's last hidden one) the HParams table shows:
    tag -> (drift key, statistic); none without probes or for the Inceptions."""
    if cfg.probe.every <= 0 or cfg.model.name != "mlp":
        return {}
    layer = f"layer{cfg.model.depth}"
    return {f"drift/{layer}/{kind}_{stat}": (f"{layer}/{kind}", stat)
            for kind in ("unit", "all") for stat in ("rel_movement", "spread_ratio")}


def as_text(record: Mapping[str, object]) -> str:
    """A JSON record as a Markdown code block (TensorBoard's Text tab renders Markdown)."""
    return "```json\n" + json.dumps(record, indent=2, default=str) + "\n```"


def ended_line(out: Path, summaries: Mapping[int, Mapping[str, object]]) -> str:
    """The console's last word on a run (a stack: each member's status): how it ended and where its
    output is, so that a sweep's log names every job's directory."""
    statuses = {s: str(summary.get("status")) for s, summary in summaries.items()}
    if len(statuses) == 1:
        (status,) = statuses.values()
    else:
        status = ", ".join(f"seed {s} {v}" for s, v in statuses.items())
    return f"{status}: output in {out}"
