"""Checkpoints that survive any crash, and resume that continues exactly where a run stopped.

A checkpoint is `RUN_DIR/checkpoints/step<N>-<sha256 prefix>.pt`, a plain `torch.load`-able
file holding the model, optimizer, schedule, every RNG (torch CPU and CUDA, numpy, python, the
augmentation generator), the data order position, the loop's running loss window, and per
member the best accuracy so far, the divergence counters, the latest values and the probe
history, and the step. A stack of seeds (`seeds=[...]`) is one model: its checkpoints go to
`RUN_DIR/checkpoints/seeds=<s1>,<s2>,.../`, beside the members' own run directories. It is
written to a temporary file, fsynced, and renamed into place, so a crash leaves the previous
checkpoint intact; the checksum in its name detects a file damaged afterwards (truncated copy,
bad disk), which is then reported, set aside as `*.corrupt`, and the previous checkpoint used
(or none: the run starts over). A temporary file left by a killed write is removed at the next
start (bnrepro/training/rundir.py). The data order needs no generator state: an epoch's order
is a pure function of (seed, epoch) (`epoch_generator`), so the position (epoch, index) is all
there is to save.

Rerunning the same command into the same run directory resumes from the newest good
checkpoint (`trainer.resume=true`, the default), truncating metrics.csv after its step (one
no later than the rows metrics.csv holds whole: a torn last line is written again); a run
already completed or diverged there is not redone, nor shortened (a smaller trainer.max_steps
than it, or than the newest checkpoint, is refused). How a run ends is part of what must match
(`stop_mode`): a run stopped at its plateau does not answer a request for a fixed budget
(trainer.stop_at_plateau=false), nor a fixed budget one for the plateau rule (which might have
stopped it earlier); either is refused, finished or checkpointed, with what it holds and the fix. SIGTERM and Ctrl-C stop the run at the end
of the current step with a checkpoint (a second Ctrl-C aborts at once); so does SIGUSR2 when a
handler for it was installed (submitit's, which requeues a SLURM job near its time limit), and
that handler then runs, after the checkpoint.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bnrepro.errors import BnreproError
from bnrepro.files import atomic_open
from bnrepro.nn.bn_variants import length_dependent
from bnrepro.schema import Config, plain
from bnrepro.tracking.logger import flatten
from bnrepro.training import distributed

CHECKPOINT_DIR = "checkpoints"
STOP_POLL = 50  # steps between the ranks' agreement on a stop request under torchrun
_NAME = re.compile(r"^step(\d+)-([0-9a-f]{16})\.pt$")
# Keys that may change between an interrupted attempt and its resumption: where files are and
# how the run reports, never what it computes.
# The stop mode is compared on its own terms (`stop_mode`).
RESUME_IGNORES = ("data.root", "data.download", "trainer.progress", "trainer.device", "trainer.threads",
                  "trainer.checkpoint_every", "trainer.checkpoint_keep", "trainer.resume", "trainer.max_steps",
                  "trainer.stop_at_plateau", "trainer.plateau_min_steps", "trainer.keep_best_val", "trainer.final_test")
# Protocol v2's records of a run (bnrepro/training/final_eval.py): compared only when asked for (`comparable`),
# so the runs and checkpoints of every config that predates them compare as they always have.
AFTER_TRAINING = ("trainer.keep_best_val", "trainer.final_test")


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGTERM or SIGINT at the end of step `step`, after its checkpoint."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (trainer.checkpoint_every=0)"
        super().__init__(f"{signal.Signals(signum).name} at step {step}; {where}")


class CorruptCheckpoint(Exception):
    def __init__(self, reason: str, damaged: bool):
        super().__init__(reason)
        self.damaged = damaged  # the bytes are not what was written (else: intact but unreadable here)


def stop_mode(flat: dict[str, Any]) -> dict[str, Any]:
    """How a run (its flattened config) ends: nothing for a fixed budget (the keys of a run that
    does not stop early stay out, so its checkpoints compare as they always have); with
    trainer.stop_at_plateau, the step the rule is checked from (plateau_min_steps, 0: half of
    max_steps), which decides where the run stops."""
    if not flat.get("trainer.stop_at_plateau"):
        return {}
    start = flat.get("trainer.plateau_min_steps") or flat["trainer.max_steps"] // 2
    return {"trainer.stop_at_plateau": True, "trainer.plateau_min_steps": start}


def comparable(cfg: Config | dict) -> dict[str, Any]:
    """The flattened config (a `Config` or a config.yaml's dict) minus RESUME_IGNORES, plus its
    `stop_mode` and the AFTER_TRAINING records it asks for (a finished run without best_val.pt does not
    answer trainer.keep_best_val=true): what must match to resume, or to reuse a finished run."""
    flat = flatten(plain(cfg))
    return {**{k: v for k, v in flat.items() if k not in RESUME_IGNORES}, **stop_mode(flat),
            **{k: True for k in AFTER_TRAINING if flat.get(k)}}


def describe_stop(flat: dict[str, Any], steps: object = None, status: str | None = None,
                  stopped: str | None = None) -> str:
    """A run's stop mode in words (with how it ended, for a finished one)."""
    mode = stop_mode(flat)
    rule = (f"trainer.stop_at_plateau=true, checked from step {mode['trainer.plateau_min_steps']}" if mode
            else "trainer.stop_at_plateau=false")
    if status is None:
        return (f"a stop at the plateau ({rule}, at most trainer.max_steps={flat['trainer.max_steps']})" if mode else
                f"the fixed budget of trainer.max_steps={flat['trainer.max_steps']} ({rule})")
    if status == "diverged":
        return f"a run that diverged at step {steps} ({rule})"
    if stopped:
        return f"a run that stopped at its plateau at step {steps} ({rule})"
    return f"a run that trained its whole budget of {steps} steps ({rule})"


def stop_mismatch(out: Path, saved: dict[str, Any], cfg: Config, previous: dict) -> BnreproError:
    """The refusal of a finished run whose stop mode is not the one asked for."""
    held, asked = flatten(plain(saved)), flatten(plain(cfg))
    what = describe_stop(held, previous.get("steps"), previous.get("status"), previous.get("stopped"))
    if stop_mode(asked) and stop_mode(held):
        why = "the rule, checked from another step, might have stopped it at another one"
    elif stop_mode(asked):
        why = "the plateau rule was not applied to it, and might have stopped it earlier"
    elif previous.get("stopped"):
        why = "the steps after its stop were never trained"
    else:
        why = "its config and summary record the other stopping rule"
    return BnreproError(
        f"{out} already holds {what}, but this run asks for {describe_stop(asked)}, which that run does not answer: "
        f"{why}. It is neither reused nor extended in place (its record would mix two stopping rules). Give this run "
        "its own directory (hydra.run.dir=... / hydra.sweep.dir=...), pass trainer.resume=false to train it over "
        "again there (replacing the run it holds), or ask for the stop mode it was trained with.")


def finished_run(out: Path, cfg: Config) -> dict | None:
    """The summary of a run already completed (or diverged) in `out` with this config, else None."""
    summary, saved = out / "summary.json", out / "config.yaml"
    if not (summary.exists() and saved.exists()):
        return None
    try:
        previous = json.loads(summary.read_text())
    except ValueError:  # torn by a crash of an older version, a full disk, a bad copy
        print(f"Note: {summary} is damaged (not valid JSON), so the run there counts as unfinished: resuming it from "
              "its last checkpoint, which rewrites the summary.", file=sys.stderr)
        return None
    if previous.get("status") not in ("completed", "diverged"):
        return None
    held = yaml.safe_load(saved.read_text())
    if comparable(held) != comparable(cfg):
        rest = {k: v for k, v in comparable(held).items() if not k.startswith(("trainer.stop_at", "trainer.plateau"))}
        if rest == {k: v for k, v in comparable(cfg).items() if not k.startswith(("trainer.stop_at", "trainer.plateau"))}:
            raise stop_mismatch(out, held, cfg, previous)
        raise BnreproError(f"{out} already holds a finished run with a different config. Give this run its own "
                           "directory (hydra.run.dir=... / hydra.sweep.dir=...), or delete the old one.")
    steps = previous.get("steps")
    if isinstance(steps, int) and steps > cfg.trainer.max_steps:
        raise BnreproError(
            f"{out} already holds a run that went further ({previous['status']} at step {steps}) than "
            f"trainer.max_steps={cfg.trainer.max_steps}. A run is not shortened in place (its config and summary "
            f"would disagree): read its first {cfg.trainer.max_steps} steps from its metrics.csv, pass "
            f"trainer.max_steps={steps} to keep it as it is, trainer.resume=false to start over there, or give this run "
            "its own directory (hydra.run.dir=...).")
    if previous["status"] == "completed" and steps != cfg.trainer.max_steps and not previous.get("stopped"):
        return None  # a longer schedule: continue from the last checkpoint
    return previous


def refuse_changed_schedule(cfg: Config, loaded: dict, run_dir: Path, path: Path) -> None:
    """Refuse to resume `loaded` (a checkpoint at `path`) under another trainer.max_steps when a BN
    schedule scales with it (FrozenBN's freeze step, Batch Renorm's ramp: `length_dependent`): the
    steps so far followed the old length's schedule, so the result would match no straight run.
    (The plateau rule's start moves too, but only later: checks that did not stop the run before
    would not have stopped a straight one either.)"""
    saved = loaded.get("max_steps")
    if saved is None:  # a checkpoint of an older version: its attempt's config.yaml says
        try:
            saved = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["max_steps"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return
    if saved == cfg.trainer.max_steps or not (schedules := length_dependent(cfg.bn)):
        return
    raise BnreproError(
        f"trainer.max_steps={cfg.trainer.max_steps} would continue the run in {run_dir} (checkpoint {path.name}, "
        f"step {loaded['step']}), which was trained for trainer.max_steps={saved}; but {' and '.join(schedules)} "
        "schedule(s) BN in proportion to trainer.max_steps, so its steps so far followed the other length's "
        "schedule and the result would match no straight run of either length. Give this run its own directory "
        f"(hydra.run.dir=...), trainer.resume=false to start over there, or keep trainer.max_steps={saved}.")


# --- RNG state, as tensors and plain values (loadable with weights_only=True) -------------------

def rng_state() -> dict[str, Any]:
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# --- files ---------------------------------------------------------------------------------------

def write_atomic(directory: Path, step: int, obj: dict) -> Path:
    """torch.save `obj` as directory/step<N>-<sha>.pt: temporary file, fsync, rename, fsync dir."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    path = directory / f"step{step:08d}-{hashlib.sha256(data).hexdigest()[:16]}.pt"
    with atomic_open(path, "wb", sync_dir=True) as f:  # the rename itself survives a power cut
        f.write(data)
    return path


def read_verified(path: Path) -> dict:
    match = _NAME.match(path.name)
    data = path.read_bytes()
    if not match or hashlib.sha256(data).hexdigest()[:16] != match.group(2):
        raise CorruptCheckpoint(f"its sha256 does not match its name ({len(data)} bytes: truncated or damaged)", True)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise CorruptCheckpoint(f"torch.load failed ({type(err).__name__}: {err})", False) from err


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every well-named checkpoint in `directory`, newest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found, reverse=True)


# --- what a run saves ----------------------------------------------------------------------------

@dataclass
class TrainingState:
    """Everything `fit` holds between two steps that a resumed run needs back (per member where
    members differ: their records, results and probes)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    batches: Any  # the training batches (data order and augmentation), with state_dict()
    population: Any  # EpochBatches | None: Algorithm 2's own stream of training batches
    probe: Any  # ActivationProbe | None
    logs: list  # RunLogger per member: their `latest` values become the summaries' final metrics
    results: list  # FitResult per member: status, best accuracy, divergence counter

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "batches": self.batches.state_dict(),
            "population": self.population.state_dict() if self.population else None,
            "probe": self.probe.state_dict() if self.probe else None,
            "latest": [dict(log.latest) for log in self.logs],
            "results": [r.state_dict() for r in self.results],
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.batches.load_state_dict(state["batches"])
        if self.population:
            self.population.load_state_dict(state["population"])
        if self.probe:
            self.probe.load_state_dict(state["probe"])
        for log, latest in zip(self.logs, state["latest"]):
            log.latest.update(latest)
        for result, saved in zip(self.results, state["results"]):
            result.load_state_dict(saved)
        set_rng_state(state["rng"])


class Checkpointer:
    """Periodic, signal-triggered and resumable checkpoints of one run (see the module docstring).

    Only the main process writes (`write=False` elsewhere); every process reads on resume.
    Use as a context manager around training: it turns SIGTERM/SIGINT into a request to stop
    after the current step.
    """

    def __init__(self, out_dir: Path, every: int, keep: int, config: dict[str, Any], write: bool = True):
        self.directory = Path(out_dir) / CHECKPOINT_DIR
        self.every, self.keep, self.config, self.write = every, max(1, keep), config, write
        self.loaded: dict[str, Any] | None = None
        self.max_steps: int | None = None  # saved beside the config, which leaves it out: see `extends`
        self.last_path: Path | None = None
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @classmethod
    def from_config(cls, out_dir: Path, cfg: Config, write: bool = True) -> "Checkpointer":
        """The checkpoints of the run `cfg` describes in `out_dir`: its own checkpoints/ for one
        seed, checkpoints/seeds=.../ for a stack (whose members have run directories of their own)."""
        checkpointer = cls(out_dir, cfg.trainer.checkpoint_every, cfg.trainer.checkpoint_keep, comparable(cfg), write)
        checkpointer.max_steps = cfg.trainer.max_steps
        if cfg.seeds is not None:
            checkpointer.directory = checkpointer.directory / f"seeds={','.join(map(str, cfg.seeds))}"
        return checkpointer

    # Loading
    def load_latest(self, upto: int | None = None) -> int:
        """Load the newest good checkpoint into `self.loaded` (of step <= `upto`, when given: the
        last step whose metrics rows are whole); its step, or 0 when there is none."""
        found = checkpoints(self.directory)
        if upto is not None and found and found[0][0] > upto:
            kept = [(step, path) for step, path in found if step <= upto]
            print(f"Note: metrics.csv's last line is torn (a write cut short), losing rows of step {upto + 1} or "
                  f"later, which {found[0][1].name} vouched for: resuming from "
                  + (f"{kept[0][1].name} instead, so that those rows are written again." if kept else
                     "step 0 instead (no checkpoint is that early), so that those rows are written again."),
                  file=sys.stderr)
            if self.write:  # else a second interruption would resume from one of them, past the rows lost
                for step, path in found[:len(found) - len(kept)]:
                    path.unlink(missing_ok=True)
            found = kept
        for i, (step, path) in enumerate(found):
            try:
                state = read_verified(path)
            except CorruptCheckpoint as err:
                then = (f"Falling back to the previous one, {found[i + 1][1].name}." if i + 1 < len(found) else
                        "No earlier checkpoint is left: the run starts over from step 0.")
                print(f"Checkpoint {path} is unusable: {err}. {then}", file=sys.stderr)
                if self.write and err.damaged:  # set aside, out of the newest-K rotation
                    os.replace(path, path.with_name(path.name + ".corrupt"))
                continue
            if state["config"] != self.config:
                changed = sorted(k for k in state["config"].keys() | self.config.keys()
                                 if state["config"].get(k) != self.config.get(k))
                raise BnreproError(
                    f"{path} was written by a run with a different config ({', '.join(changed[:8])} differ), so it "
                    "cannot be resumed. Give this run its own directory (hydra.run.dir=...), or trainer.resume=false "
                    "to start over here.")
            self.loaded, self.last_path = state, path
            return step
        return 0

    def clear(self) -> None:
        """Start over (trainer.resume=false): an earlier attempt's checkpoints must not outrank ours."""
        if self.write:
            for _, path in checkpoints(self.directory):
                path.unlink()

    def restore(self, state: TrainingState) -> dict[str, Any] | None:
        """Put the loaded checkpoint into `state`; returns its `step` and loss window, or None."""
        if self.loaded is None:
            return None
        state.load_state_dict(self.loaded["training"])
        return {"step": self.loaded["step"], **self.loaded["window"]}

    # Saving
    def after_step(self, step: int, state: TrainingState, loss_sum: torch.Tensor, window: int) -> None:
        """Called at the end of every step: checkpoint when due, and stop when a signal asked to."""
        due = bool(self.every) and step % self.every == 0
        # Every rank must stop at the same step, and agreeing on it is a collective and a host sync:
        # under torchrun it is polled every STOP_POLL steps (and at checkpoints), not every step.
        if distributed.active() and not due and step % STOP_POLL:
            return
        stop = distributed.any_rank(self.signum is not None)
        if not (stop or due):
            return
        path = self.save(step, state, loss_sum, window) if self.every else None
        if stop:
            signum = self.signum or signal.SIGTERM
            if callable(chained := self._previous.get(signum)) and signum not in (signal.SIGTERM, signal.SIGINT):
                chained(signum, None)  # e.g. submitit's SIGUSR2: requeue the job, now that it is checkpointed
            raise Interrupted(signum, step, path)

    def save(self, step: int, state: TrainingState, loss_sum: torch.Tensor, window: int) -> Path | None:
        # The ranks' windows averaged: resumed ranks all start from it, and the mean is linear.
        window_state = {"loss_sum": distributed.average(loss_sum.clone()).tolist(), "window": window}
        if not self.write:
            return None
        for log in state.logs:  # metrics.csv on disk up to `step` before the checkpoint that vouches for it
            log.sync()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.last_path = write_atomic(self.directory, step, {
            "step": step, "config": self.config, "max_steps": self.max_steps, "window": window_state,
            "training": state.state_dict()})
        for _, old in checkpoints(self.directory)[self.keep:]:
            old.unlink(missing_ok=True)
        return self.last_path

    # Signals
    def _request_stop(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for the step
        self.signum = signum

    def __enter__(self) -> "Checkpointer":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
                # SIGUSR2 only when someone (submitit, before a SLURM time limit) handles it: it is
                # then passed on to that handler after the checkpoint.
                if signum != signal.SIGUSR2 or callable(signal.getsignal(signum)):
                    self._previous[signum] = signal.signal(signum, self._request_stop)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
