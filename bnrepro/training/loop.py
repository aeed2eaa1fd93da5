"""The training loop: SGD on cross-entropy, test (and val) accuracy at `eval_steps`, for one run
or for a stack of runs (bnrepro/training/members.py) alike.

The hot path never reads a value back from the device: the train loss is summed on the device
and read once per `log_every` steps, which is also where divergence is detected. Evaluation
reads back two numbers per member and pass. Every member has its own record (a `RunLogger`
on its own run directory) and its own `FitResult`; one member ending does not stop the others.

Divergence, the paper's word for Inception at 5x its learning rate (Sec. 4.2.2), shows up in three
ways, each of which ends a member as `diverged` (the sweep goes on):
- `nonfinite`: the loss became NaN or infinite ("parameters reached machine infinity"); a NaN
  anywhere in the window poisons the sum.
- `exploded`: the window's mean loss is above EXPLODED_LOSS and EXPLODED_FACTOR times the loss at
  step 1, finite but far past any loss a network that learns passes through (a BN network at lr 1e4
  sits at ~9,000, its accuracy near chance).
- `dead`: a too-large step pushed every ReLU of some layer below zero for every input, so the
  logits no longer depend on the input (the same row for every example of the batch) and no
  gradient reaches the layers below it (the first layer's is exactly 0): training cannot recover.
  Both are asked (`dead_now`): near-constant logits alone also fit a live network at a small
  initialization, which learns. Checked at two
  consecutive log steps, so momentum still carrying the weights cannot revive what we called dead.
  A sigmoid network at chance is not dead: its output still varies with the input.
A diverged member of a stack is no longer logged; its arithmetic goes on harmlessly (nothing
mixes members) until every member has ended.

With `trainer.stop_at_plateau` a run ends early, `stopped: plateau` in its summary, at the first
evaluation (from `trainer.plateau_min_steps` on) at which Figure 3's plateau rule holds for its own
validation curve (`stats.plateau_gain`, the same function the tables check it with), so the
reference trains exactly as long as the protocol asks. A member of a stack is checked on its own
curve too, so it stops at the step its single run stops at: from there on it is frozen (its
parameters and BN statistics are put back after every step, so neither SGD's momentum and weight
decay nor train-mode statistics move them) and no longer logged, while the others go on; the
stack ends when every member has ended or at `trainer.max_steps`.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import torch

from bnrepro.analysis.stats import PLATEAU_GAIN, plateau_gain
from bnrepro.data import DataBundle
from bnrepro.nn.bn_variants import BNSchedule
from bnrepro.schema import Config, choice, member_seeds
from bnrepro.tracking.landscape import GradientProbe
from bnrepro.tracking.probes import ActivationProbe
from bnrepro.training import distributed
from bnrepro.training.checkpoint import Checkpointer, TrainingState
from bnrepro.training.members import input_gradient, predict
from bnrepro.training.optim import build_optimizer


@dataclass
class FitResult:
    """How one member's training went."""

    status: str = "completed"  # completed | diverged
    steps: int = 0
    final: dict[str, float] = field(default_factory=dict)
    best_accuracy: float = float("nan")
    best_step: int = 0
    best_val_accuracy: float = float("nan")  # with data.val_size: what choices are made on
    best_val_step: int = 0
    drift: dict[str, dict[str, float]] = field(default_factory=dict)
    divergence: str | None = None  # nonfinite | exploded | dead, when status == diverged
    stopped: str | None = None  # plateau: ended before max_steps by trainer.stop_at_plateau
    val_curve: list = field(default_factory=list)  # [step, val accuracy] per evaluation: the plateau rule's input
    # trainer.keep_best_val: a copy of the member's state dict (its single run's names) at best_val_step; it
    # rides in the checkpoints, so a resumed run keeps the best of its own trajectory (bnrepro/training/final_eval.py)
    best_val_state: dict | None = None
    dead_checks: int = 0  # consecutive log steps so far at which the logits did not depend on the input
    first_loss: float = float("nan")  # the loss at step 1, before any update moved it: `exploded`'s yardstick

    @property
    def active(self) -> bool:
        """Not diverged: its record is good (a member stopped at its plateau included)."""
        return self.status == "completed"

    @property
    def training(self) -> bool:
        """Still being trained and logged: neither diverged nor stopped."""
        return self.active and self.stopped is None

    def record_best(self, split: str, accuracy: float, step: int) -> float:
        """The split's (test or val) best accuracy so far, counting `accuracy` at `step`."""
        prefix = "best_val" if split == "val" else "best"
        if accuracy > getattr(self, f"{prefix}_accuracy") or math.isnan(getattr(self, f"{prefix}_accuracy")):
            setattr(self, f"{prefix}_accuracy", accuracy)
            setattr(self, f"{prefix}_step", step)
        return getattr(self, f"{prefix}_accuracy")

    def state_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("final", "drift")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def input_independent(logits: torch.Tensor) -> torch.Tensor:
    """1.0 where every example of the batch got the same logits (to float precision), else 0.0, as a
    device tensor (read back with the loss, no extra sync). logits: (..., batch, classes), so a
    stacked (members, batch, classes) gives one flag per member. A batch of one proves nothing."""
    if logits.shape[-2] < 2:
        return torch.zeros(logits.shape[:-2], device=logits.device)
    spread = (logits.amax(-2) - logits.amin(-2)).amax(-1)
    return (spread <= 1e-6 * (1.0 + logits.abs().flatten(-2).amax(-1))).float()


def dead_now(members) -> torch.Tensor:
    """1.0 per member whose logits ignore the input and whose first layer got no gradient at all
    (exactly 0): a small but live network (a sigmoid MLP at init_std=0.003) has logits that vary
    by less than float precision notices, yet it learns; only a dead one gets no gradient."""
    return input_independent(members.last_logits) * (input_gradient(members) == 0).float()


# Cross-entropy averaged over a log window above 100 nats (the right class's probability below e^-100 on
# average) and above 10x the run's loss at step 1: a loss that blew up, not one that started high (a sigmoid
# net at init_std=10 starts saturated, at chance, and is not diverged). Chance is ln 10 = 2.30 here; no
# completed run in the committed sweeps logged above 2.46 (551 runs), while a BN network at lr 1e4 that has
# blown up sits at ~9,000 with its accuracy near chance.
EXPLODED_LOSS, EXPLODED_FACTOR = 100.0, 10.0


def divergence_of(loss: float, result: FitResult, dead: bool) -> str | None:
    """The one place that decides whether a member diverged at this log step (module docstring)."""
    result.dead_checks = result.dead_checks + 1 if dead else 0
    if not math.isfinite(loss):
        return "nonfinite"
    if loss > max(EXPLODED_LOSS, EXPLODED_FACTOR * result.first_loss):  # max(x, nan) is x: no step 1 seen
        return "exploded"
    return "dead" if result.dead_checks >= 2 else None


def eval_steps(max_steps: int, every: int, per_decade: int = 0, gap_max: int = 0) -> set[int]:
    """The steps evaluated at: every `every` steps, or with per_decade > 0 log-spaced from step
    `every` on (`every * 10 ** (k / per_decade)`, rounded) and, with gap_max > 0, every gap_max
    steps too; always the last step."""
    if per_decade <= 0:
        return {*range(every, max_steps + 1, every), max_steps}
    steps, k = {max_steps, *(range(gap_max, max_steps + 1, gap_max) if gap_max > 0 else ())}, 0
    while (s := round(every * 10 ** (k / per_decade))) <= max_steps:
        steps.add(s)
        k += 1
    return steps


def plateaued(result: FitResult) -> bool:
    """Whether one run's (or stacked member's) validation curve so far has plateaued (Figure 3's
    rule). Each member is judged on its own curve, so it stops where its single run does."""
    steps, accuracy = zip(*result.val_curve) if result.val_curve else ((), ())
    g = np.array(accuracy, float).reshape(1, -1)
    return bool(plateau_gain(np.array(steps, float), g) < PLATEAU_GAIN)  # NaN (too few evaluations): no


def layout(cfg: Config, probe: ActivationProbe | None, gradients: GradientProbe | None = None
           ) -> dict[str, dict[str, list]]:
    """The custom-scalars layout of a run: Figure 1(a)'s test accuracy, each layer's percentile
    band (`ActivationProbe.charts`) and the gradient probes' charts (`GradientProbe.charts`), in a
    category of the model's family, so that TensorBoard, which merges the categories of all runs by
    title, keeps the MLP's charts apart from an Inception's."""
    family = "Fig. 1: MLP" if cfg.model.name == "mlp" else f"Inception ({cfg.model.name})"
    accuracy = "Fig. 1(a): test accuracy" if cfg.model.name == "mlp" else "test accuracy"
    return {family: {accuracy: ["Multiline", ["test/accuracy"]], **(probe.charts() if probe else {}),
                     **(gradients.charts() if gradients else {})}}


def fit(members, data: DataBundle, cfg: Config, logs: list, checkpoints: Checkpointer | None = None
        ) -> tuple[list[FitResult], dict[str, float]]:
    """Train every member for `trainer.max_steps`, or until it diverges or (trainer.stop_at_plateau)
    its own validation curve plateaus; each member's records go to its own logger in `logs`.
    Returns each member's result and where the time went (seconds spent evaluating and probing)."""
    # Plain ints for the hot loop.
    t = cfg.trainer
    max_steps, log_every, probe_every = t.max_steps, t.log_every, cfg.probe.every
    evaluations = eval_steps(max_steps, t.eval_every, t.eval_per_decade, t.eval_gap_max)
    seeds = member_seeds(cfg)
    optimizer, schedule = build_optimizer(members.module, cfg.optim)
    batches = data.train_batches(cfg.seeds if cfg.seeds is not None else cfg.seed)
    # Algorithm 2 proper (average) and PreciseBN (precise): before each evaluation, population
    # statistics are recomputed over fixed-size training batches drawn from their own stream, so
    # training's order is untouched. Once FrozenBN has frozen them (bnrepro/nn/bn_variants.py) they
    # are what training normalizes with, so they are recomputed once at the freeze step, then kept.
    mode = choice(cfg.bn.population) if choice(cfg.bn.placement) != "none" else "ema"
    population = mode in ("average", "precise")
    population_batches = data.train_batches(cfg.seed + 1, augment=False) if population else None
    bn_schedule = BNSchedule(members.module, max_steps, cfg.bn.freeze_after, cfg.bn.renorm_rmax,
                             cfg.bn.renorm_dmax, cfg.bn.renorm_warmup)
    results = [FitResult() for _ in seeds]
    stop_at_plateau, plateau_from = t.stop_at_plateau, t.plateau_min_steps or max_steps // 2
    timing = {"eval_time_s": 0.0, "probe_time_s": 0.0}

    def recompute_population() -> None:
        if mode == "average":
            members.recompute_population(islice(population_batches, cfg.bn.population_batches),
                                         cfg.bn.population_batches)
        else:  # whole batches holding at least bn.precise_examples examples
            n = -(-cfg.bn.precise_examples // t.batch_size)
            members.recompute_precise(islice(population_batches, n), n)

    def evaluate_and_log(step: int) -> None:
        tic = time.perf_counter()
        if population and not bn_schedule.frozen_at(step):
            recompute_population()
        splits = [("val", data.val_batches, data.val_size)] if data.val_size else []
        for split, batches_of, size in [*splits, ("test", data.test_batches, data.test_size)]:
            totals = members.evaluate(batches_of()).tolist()
            for i, ((loss, correct), r, log) in enumerate(zip(totals, results, logs)):
                if not r.training:
                    continue
                accuracy = correct / size
                if split == "val":
                    r.val_curve.append([step, accuracy])
                log.log(step, split, {"loss": loss / size, "accuracy": accuracy,
                                      "best_accuracy": r.record_best(split, accuracy, step)})
                if split == "val" and t.keep_best_val and r.best_val_step == step:
                    # Protocol v2: the weights (and BN statistics) this evaluation saw, as its single run's.
                    r.best_val_state = members.member_state_dict(i)
        timing["eval_time_s"] += time.perf_counter() - tic

    probe = None
    if probe_every > 0:  # Figure 1's probe on the first `probe.batch_size` held-out examples
        x, _ = next(iter(data.test_batches()))
        p = cfg.probe
        probe = ActivationProbe(members, x[:p.batch_size], p.percentiles, p.unit, choice(p.mode), p.norm_output)
    # Santurkar et al.'s measurements (bnrepro/tracking/landscape.py) on the step's own batch, before
    # its update; they leave training exactly as it was, so a run with them trains as one without.
    gradients = None
    if cfg.probe.ics_every or cfg.probe.landscape_every:
        gradients = GradientProbe(members, cfg.probe.ics_every, cfg.probe.landscape_every, cfg.probe.landscape_steps)
    for log in logs:
        log.charts(layout(cfg, probe, gradients))

    def probe_and_log(step: int) -> None:
        tic = time.perf_counter()
        records = probe(step)
        probes = max(len(h) for h in probe.history)  # a member still training has them all
        histograms = cfg.probe.histogram_every and (probes - 1) % cfg.probe.histogram_every == 0
        for i, r in enumerate(results):
            if r.stopped:  # its record ends at its stop, as its single run's does
                probe.history[i].pop()
        for record, inputs, r, log in zip(records, probe.last_inputs, results, logs):
            if r.training:
                log.log(step, "probe", record)
                if histograms:
                    log.histograms(step, "probe", inputs)
        timing["probe_time_s"] += time.perf_counter() - tic

    def gradients_and_log(step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        tic = time.perf_counter()
        # The rate of this step's update: the SGD step whose effect the measurements are about.
        for split, record in gradients(step, x, y, optimizer.param_groups[0]["lr"]).items():
            if results[0].training:
                logs[0].log(step, split, record)
        timing["probe_time_s"] += time.perf_counter() - tic

    # A member stopped at its plateau keeps the parameters and statistics it stopped with: copies
    # of its slices, put back after every step (SGD's momentum and weight decay move a parameter
    # even with a zero gradient, and a train-mode forward pass moves the running statistics).
    frozen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def freeze(i: int) -> None:
        frozen[i] = [(t, t.clone()) for t in members.member_tensors(i)]

    loss_sum = torch.zeros(len(seeds), device=data.device)
    step_one = torch.full_like(loss_sum, float("nan"))  # each member's loss at step 1: what `exploded` measures against
    window = 0
    state = TrainingState(members.module, optimizer, schedule, batches, population_batches, probe, logs, results)
    resumed = checkpoints.restore(state) if checkpoints else None
    if resumed:
        loss_sum.copy_(torch.as_tensor(resumed["loss_sum"], dtype=loss_sum.dtype).view_as(loss_sum))
        window = resumed["window"]
        for i, r in enumerate(results):
            if r.stopped:  # checkpointed with the values it stopped with
                freeze(i)
    elif probe:
        probe_and_log(0)
    members.module.train()
    step = resumed["step"] if resumed else 0
    start = checked = step  # checked: the last step whose end `after_step` saw (its checkpoint, when due)
    while step < max_steps and any(r.training for r in results):
        step += 1
        x, y = next(batches)
        if population and step == bn_schedule.freeze_step + 1:
            recompute_population()  # FrozenBN freezes the population statistics bn.population asks for
        bn_schedule(step)
        if gradients and gradients.due(step):
            gradients_and_log(step, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss_sum += members.forward_backward(x, y)
        if step == 1:
            step_one.copy_(loss_sum)
        optimizer.step()
        schedule.step()
        if frozen:
            with torch.no_grad():
                for tensors in frozen.values():
                    for live, kept in tensors:
                        live.copy_(kept)
        window += 1
        last = step == max_steps
        if step % log_every == 0 or last:
            # One read-back for the window: the losses and whether the logits ignored the input,
            # averaged over ranks so every rank takes the same decision (dead only when dead everywhere).
            totals, dead, firsts = distributed.average(torch.stack([loss_sum, dead_now(members), step_one])).tolist()
            loss_sum.zero_()
            lr = optimizer.param_groups[0]["lr"]
            for total, is_dead, first, r, log in zip(totals, dead, firsts, results, logs):
                if not r.training:
                    continue
                r.steps = step
                if math.isnan(r.first_loss) and math.isfinite(first):
                    r.first_loss = first  # kept in the checkpoint with the rest of the result
                if divergence := divergence_of(total / window, r, is_dead == 1.0):
                    log.log(step, "train", {"loss": total / window, "diverged": 1.0})
                    r.status, r.divergence = "diverged", divergence
                else:
                    log.log(step, "train", {"loss": total / window, "lr": lr, "epoch": batches.epoch})
            window = 0
            if not any(r.training for r in results):
                break
        if step in evaluations:
            evaluate_and_log(step)
            if stop_at_plateau and step >= plateau_from:
                # Each member by its own curve; every rank must stop a member at the same step:
                # agreed on member by member, as a stop request is.
                stops = distributed.any_rank_each([r.training and plateaued(r) for r in results])
                for r, stop in zip(results, stops):
                    if stop:
                        r.stopped, r.steps = "plateau", step
                if not any(r.training for r in results):
                    logs[0].progress(step)
                    break
                for i, stop in enumerate(stops):
                    if stop:
                        freeze(i)
        if probe and step % probe_every == 0:
            probe_and_log(step)
        if step % log_every == 0 or last:
            logs[0].progress(step)
        if checkpoints:
            checkpoints.after_step(step, state, loss_sum, window)
            checked = step
    if (checkpoints and checkpoints.every and step != start and step >= checkpoints.every
            and (step % checkpoints.every or checked != step)):
        # The final weights of a run that checkpoints, when no periodic checkpoint holds them (a schedule
        # that is no multiple of checkpoint_every, an early end): what is evaluated after training
        # (bnrepro/training/posthoc.py). A run shorter than checkpoint_every keeps none, as it asked.
        checkpoints.save(step, state, loss_sum, window)
    if t.save_predictions and not t.final_test and any(r.active for r in results):
        # (with trainer.final_test, bnrepro/training/final_eval.py writes them on the whole test split)
        probs, targets = predict(members, data.test_batches())
        for p, r, log in zip(probs, results, logs):
            if r.active:
                log.predictions(p, targets)
    for i, (r, log) in enumerate(zip(results, logs)):
        if r.training:
            r.steps = step
        r.drift = probe.drift(i) if probe else {}
        r.final = {k: v for k, v in log.latest.items()
                   if k in ("train/loss", "test/loss", "test/accuracy", "val/loss", "val/accuracy")}
    return results, timing
