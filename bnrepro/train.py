"""The training loop: SGD on cross-entropy, test accuracy every `eval_every` steps.

The hot path never reads a value back from the device: the train loss is summed on the device
and read once per `log_every` steps, which is also where divergence is detected. Evaluation
reads back two numbers per pass.

Divergence, the paper's word for Inception at 5x its learning rate (Sec. 4.2.2), shows up in two
ways, and both end a run as `diverged` (the sweep goes on):
- `nonfinite`: the loss became NaN or infinite ("parameters reached machine infinity"); a NaN
  anywhere in the window poisons the sum.
- `dead`: a too-large step pushed every ReLU of some layer below zero for every input, so the
  logits no longer depend on the input (the same row for every example of the batch) and no
  gradient reaches any weight but the classifier's bias: training cannot recover. Checked at two
  consecutive log steps, so momentum still carrying the weights cannot revive what we called dead.
  A sigmoid network at chance is not dead: its output still varies with the input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import islice

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from bnrepro import distributed
from bnrepro.bn import recompute_population_stats
from bnrepro.checkpoint import Checkpointer, TrainingState
from bnrepro.config import choice
from bnrepro.data import DataBundle
from bnrepro.data.augment import BatchAugment
from bnrepro.probes import ActivationProbe
from bnrepro.tracking import RunLogger


@dataclass
class FitResult:
    status: str  # completed | diverged
    steps: int
    final: dict[str, float] = field(default_factory=dict)
    best_accuracy: float = float("nan")
    best_step: int = 0
    drift: dict[str, dict[str, float]] = field(default_factory=dict)
    divergence: str | None = None  # nonfinite | dead, when status == diverged
    dead_checks: int = 0  # consecutive log steps so far at which the logits did not depend on the input


def input_independent(logits: torch.Tensor) -> torch.Tensor:
    """1.0 where every example of the batch got the same logits (to float precision), else 0.0, as a
    device tensor (read back with the loss, no extra sync). logits: (..., batch, classes), so a
    stacked (members, batch, classes) gives one flag per member. A batch of one proves nothing."""
    if logits.shape[-2] < 2:
        return torch.zeros(logits.shape[:-2], device=logits.device)
    spread = (logits.amax(-2) - logits.amin(-2)).amax(-1)
    return (spread <= 1e-6 * (1.0 + logits.abs().flatten(-2).amax(-1))).float()


def build_optimizer(model: nn.Module, cfg: DictConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with the variant's factors applied, and the step-wise exponential decay (stepped per step)."""
    if cfg.name != "sgd":
        raise ValueError(f"optim.name must be 'sgd', got {cfg.name!r}")
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr * cfg.lr_scale, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay * cfg.weight_decay_scale, nesterov=cfg.nesterov,
    )
    interval = cfg.lr_decay_every / cfg.lr_decay_speedup if cfg.lr_decay_every else 0
    decay = cfg.lr_decay
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: decay ** (step // interval) if interval else 1.0)
    return optimizer, schedule


def autocast(enabled: bool, device: torch.device):
    """bf16 autocast on CUDA when asked; BN layers keep float32 parameters and statistics."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, amp: bool = False) -> dict[str, float]:
    """Loss and accuracy on the held-out split, with the network in inference mode (Algorithm 2)."""
    was_training = model.training
    model.eval()
    loss_sum = correct = 0
    count = 0
    for x, y in data.test_batches():
        with autocast(amp, x.device):
            logits = model(x).float()
        loss_sum = loss_sum + F.cross_entropy(logits, y, reduction="sum")
        correct = correct + (logits.argmax(1) == y).sum()
        count += y.numel()
    model.train(was_training)
    return {"loss": float(loss_sum) / count, "accuracy": float(correct) / count}


def make_probe(model: nn.Module, data: DataBundle, cfg: DictConfig, log: RunLogger) -> ActivationProbe | None:
    """The Figure 1 probe on the first `cfg.batch_size` held-out examples, or None when off."""
    if cfg.every <= 0:
        return None
    x, _ = next(iter(data.test_batches()))
    probe = ActivationProbe(model, x[: cfg.batch_size], cfg.percentiles, cfg.unit, cfg.mode, cfg.norm_output)
    log.charts("activation percentiles", probe.charts())
    return probe


def fit(model: nn.Module, data: DataBundle, cfg: DictConfig, log: RunLogger,
        checkpoints: Checkpointer | None = None) -> FitResult:
    # Plain ints for the hot loop: each DictConfig attribute read costs ~50 us, a step ~1 ms.
    max_steps, log_every, eval_every = cfg.trainer.max_steps, cfg.trainer.log_every, cfg.trainer.eval_every
    probe_every = cfg.probe.every
    device = next(model.parameters()).device
    optimizer, schedule = build_optimizer(model, cfg.optim)
    batches = data.train_batches(cfg.seed)
    augment = BatchAugment.from_config(cfg.data.augment, cfg.seed, device)
    amp, channels_last = cfg.trainer.amp, cfg.trainer.channels_last
    # The probe hooks the plain module; training and evaluation may run a compiled twin of it.
    net = distributed.wrap(model)  # DDP under torchrun, `model` itself otherwise
    net = torch.compile(net) if cfg.trainer.compile else net
    # Algorithm 2 proper: before each evaluation, population statistics are recomputed over
    # fixed-size training batches drawn from their own stream, so training's order is untouched.
    population = choice(cfg.bn.population) == "average" and choice(cfg.bn.placement) != "none"
    population_batches = data.train_batches(cfg.seed + 1) if population else None

    def evaluate_and_log(step: int) -> dict[str, float]:
        if population:
            recompute_population_stats(model, islice(population_batches, cfg.bn.population_batches),
                                       cfg.bn.population_batches)
        metrics = evaluate(net, data, amp)
        log.log(step, "test", metrics)
        return metrics

    probe = make_probe(model, data, cfg.probe, log)

    def probe_and_log(step: int) -> None:
        log.log(step, "probe", probe(step))
        if cfg.probe.histogram_every and (len(probe.history) - 1) % cfg.probe.histogram_every == 0:
            log.histograms(step, "probe", probe.last_inputs)

    result = FitResult(status="completed", steps=0)
    loss_sum = torch.zeros((), device=device)
    window = 0
    state = TrainingState(model, optimizer, schedule, batches, augment, population_batches, probe, log, result)
    resumed = checkpoints.restore(state) if checkpoints else None
    if resumed:
        loss_sum.fill_(resumed["loss_sum"])
        window, result.steps = resumed["window"], resumed["step"]
    elif probe:
        probe_and_log(0)
    model.train()
    for step in range(resumed["step"] + 1 if resumed else 1, max_steps + 1):
        x, y = next(batches)
        if augment:
            x = augment(x)
        x, y = distributed.shard(x, y)  # this process's slice of the global batch
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(amp, device):
            logits = net(x).float()
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum += loss.detach()
        window += 1
        result.steps = step
        last = step == max_steps
        if step % log_every == 0 or last:
            # One read-back for the window: the loss and whether the logits ignored the input, averaged
            # over ranks so every rank takes the same decision (dead only when dead everywhere).
            total, dead = distributed.average(torch.stack([loss_sum, input_independent(logits.detach())])).tolist()
            train_loss = total / window
            loss_sum.zero_()
            window = 0
            result.dead_checks = result.dead_checks + 1 if dead == 1.0 else 0
            divergence = ("nonfinite" if not math.isfinite(train_loss) else "dead" if result.dead_checks >= 2
                          else None)
            if divergence:
                log.log(step, "train", {"loss": train_loss, "diverged": 1.0})
                result.status, result.divergence = "diverged", divergence
                break
            log.log(step, "train", {"loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                                    "epoch": batches.epoch})
        if step % eval_every == 0 or last:
            metrics = evaluate_and_log(step)
            if metrics["accuracy"] > result.best_accuracy or math.isnan(result.best_accuracy):
                result.best_accuracy, result.best_step = metrics["accuracy"], step
            log.log(step, "test", {"best_accuracy": result.best_accuracy})
        if probe and step % probe_every == 0:
            probe_and_log(step)
        if step % log_every == 0 or last:
            log.progress(step)
        if checkpoints:
            checkpoints.after_step(step, state, loss_sum, window)
    if probe:
        result.drift = probe.drift()
    result.final = {k: v for k, v in log.latest.items() if k in ("train/loss", "test/loss", "test/accuracy")}
    return result
