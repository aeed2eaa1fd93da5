"""Evaluation after training: a finished run's final network, read back from its run directory
without Hydra, and evaluated the way the training loop evaluates it.

One home for what `shift.py` (issue 18's distribution shift) and `inference.py` (issue 18's
inference-time statistics) do after training, so that a row they write equals what the run logged
wherever they evaluate what the run evaluated:
- the network is built by the training path (`members.build_members`: its layout, e.g.
  trainer.channels_last) and given the weights of the run's final step; the run saves them as a
  checkpoint when it ends (bnrepro/training/loop.py), so a run whose last periodic checkpoint is
  older than its final step (trainer.max_steps not a multiple of trainer.checkpoint_every, a stop at
  the plateau) is still evaluated as it ended; a run directory without them is refused, never
  evaluated at an older step;
- `evaluate` is the loop's own evaluation (`SingleModel.evaluate`: eval mode, trainer.amp's bf16
  autocast, float64 totals), so an amp-trained run's numbers here are its logged ones.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from enum import Enum
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from bnrepro.errors import BnreproError
from bnrepro.schema import Config
from bnrepro.training.members import SingleModel, build_members


def from_plain(cls, values: dict):
    """The dataclass `cls` from the plain dicts of a run's config.yaml (`schema.plain`), enums and
    nested groups typed again; keys the schema lacks are ignored (an older run's)."""
    hints = typing.get_type_hints(cls)

    def coerce(tp, v):
        if v is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is typing.Union:
            return coerce(args[0], v)
        if dataclasses.is_dataclass(tp):
            return from_plain(tp, v)
        if isinstance(tp, type) and issubclass(tp, Enum):
            return tp(v)
        return list(v) if typing.get_origin(tp) in (list, typing.List) else v

    return cls(**{f.name: coerce(hints[f.name], values[f.name]) for f in dataclasses.fields(cls) if f.name in values})


def load_config(run_dir: str | Path) -> Config:
    """A run directory's config.yaml as a typed `Config`."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise BnreproError(f"{run_dir} holds no config.yaml: give the directory of one run (a job of a sweep).")
    return from_plain(Config, yaml.safe_load(path.read_text()))


def final_weights(run_dir: str | Path) -> tuple[int, dict[str, Tensor]]:
    """The model state of the run's final step and that step: the newest checkpoint, which must be
    of the step its summary.json says the run ended at."""
    from bnrepro.training.checkpoint import CHECKPOINT_DIR, checkpoints, read_verified

    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    if summary.get("status") not in ("completed", "diverged") or not isinstance(summary.get("steps"), int):
        raise BnreproError(f"{run_dir} holds no finished run (its summary.json says status "
                           f"{summary.get('status', 'nothing')}): evaluate a run after it has completed.")
    found = checkpoints(run_dir / CHECKPOINT_DIR)
    if not found:
        raise BnreproError(f"{run_dir} holds no checkpoint ({CHECKPOINT_DIR}/step*.pt): train it with "
                           "trainer.checkpoint_every > 0 (configs/experiment/bn_shift.yaml does).")
    step, path = found[0]
    if step != summary["steps"]:
        raise BnreproError(f"{run_dir} ended at step {summary['steps']}, but its newest checkpoint is of step {step}: "
                           "it was trained before runs saved their final weights. Train it again to evaluate it.")
    return step, read_verified(path)["training"]["model"]


def load_model(run_dir: str | Path, cfg: Config, input_shape: tuple[int, ...], num_classes: int
               ) -> tuple[nn.Module, int]:
    """The run's network as the training path builds it (CPU, eval mode) with its final step's
    weights and BN statistics, and that step. `cfg` may differ from the run's own in what acts at
    inference only (bn.eval_weight)."""
    if cfg.seeds is not None:
        raise BnreproError("load_model reads a single run; a stack's member directory (seed=<s>/) holds no "
                           "checkpoint of its own.")
    step, weights = final_weights(run_dir)
    return network(cfg, weights, input_shape, num_classes), step


def network(cfg: Config, weights: dict[str, Tensor], input_shape: tuple[int, ...], num_classes: int,
            device: torch.device | str = "cpu") -> nn.Module:
    """One network of `cfg` (a single run's config) as the training path builds it, holding `weights` (a
    state dict: a checkpoint's, a best_val.pt's, a stacked member's `member_state_dict`), in eval mode."""
    # SyncBN differs from BN only in training, across ranks; torch's has no CPU kernel at all.
    single_process = dataclasses.replace(cfg, seeds=None, bn=dataclasses.replace(cfg.bn, sync=False))
    model = build_members(single_process, tuple(input_shape), num_classes, torch.device(device)).module
    model.load_state_dict(weights)
    return model.eval()


def evaluate(model: nn.Module, batches, amp: bool = False) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of `model` over `batches` ((x, y) pairs), as the training
    loop computes an evaluation (`SingleModel.evaluate`, with trainer.amp as `amp`); the model's
    mode is left as it was."""
    batches = list(batches)
    n = sum(len(y) for _, y in batches)
    loss, correct = SingleModel(model, amp).evaluate(batches)[0].tolist()
    return correct / n, loss / n


def split(x: Tensor, y: Tensor, batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """(x, y) as batches of `batch_size`, in order."""
    return list(zip(x.split(batch_size), y.split(batch_size)))
