"""`seeds=[0,1,2,3,4]`: a seed sweep of a small model trained in one process as one stacked model.

    python experiments/train.py experiment=fig1_mnist data=fashion_mnist variant=bn 'seeds=[0,1,2,3,4]'

Each seed gets an ordinary run directory, `<run dir>/seed=<s>/`, holding what a single run
with `seed=<s>` writes (config.yaml with that seed, provenance.json, metrics.csv, TensorBoard
events, summary.json), so plots, reports and TensorBoard read them unchanged. Each member sees
exactly its single run's initialization (the same `build_model` after the same seeding), batch
order (the same epoch permutations) and probe batch; the numbers agree with the single runs up
to float rounding (tests/test_stacked.py). What the stacked path does not cover raises a
BnreproError naming the option (see `check_supported`).
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bnrepro import summarize
from bnrepro.config import choice, validate
from bnrepro.data import tensors
from bnrepro.data.tensors import EpochBatches
from bnrepro.errors import BnreproError
from bnrepro.models import build_model
from bnrepro.probes import ActivationProbe, drift_statistics, typical_unit
from bnrepro.run import ending, new_summary, provenance, resolve_device, seed_everything, times
from bnrepro.stacked import StackedMLP
from bnrepro.tracking import RunLogger, flatten, write_json_atomic
from bnrepro.train import build_optimizer, input_independent


def check_supported(cfg: DictConfig) -> None:
    """The stacked path covers the MLP on resident data; anything else is one clear error."""
    seeds = list(cfg.seeds)
    problems = []
    if not seeds or len(set(seeds)) != len(seeds):
        problems.append(f"seeds={seeds} must be a non-empty list of distinct seeds")
    if cfg.model.name != "mlp":
        problems.append(f"model={cfg.model.name} (only model=mlp is stacked; run conv nets one seed at a time)")
    if choice(cfg.data.name) == "imagenet_subset":
        problems.append("data=imagenet_subset (only data sets held whole on the device are stacked)")
    if choice(cfg.bn.placement) == "after":
        problems.append("bn.placement=after (stacked: none or before)")
    if choice(cfg.bn.norm) != "batch" and choice(cfg.bn.placement) != "none":
        problems.append(f"bn.norm={choice(cfg.bn.norm)} (stacked: batch normalization only)")
    if choice(cfg.bn.population) != "ema":
        problems.append("bn.population=average (stacked: ema)")
    aug = cfg.data.augment
    if aug.crop_padding or aug.flip or aug.jitter:
        problems.append("data.augment (stacked: no augmentation)")
    for knob in ("compile", "amp", "channels_last"):
        if cfg.trainer[knob]:
            problems.append(f"trainer.{knob}=true (the stacked MLP is its own fast path; use trainer=faithful)")
    if problems:
        raise BnreproError("The stacked seed path (seeds=[...]) does not support: " + "; ".join(problems)
                           + ". Drop `seeds` and sweep `seed=0,1,...` with -m instead, or change those options.")


def member_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The config of the single run this member reproduces: `seed` set, `seeds` unset."""
    member = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    member.seed, member.seeds = seed, None
    return member


class IndexBatches(EpochBatches):
    """One seed's training batches as index tensors, in exactly `tensors.TensorBatches`'s order."""

    def __init__(self, size: int, batch_size: int, seed: int, reshuffle: bool, device: torch.device):
        super().__init__(size, batch_size, seed, reshuffle)
        self.device = device

    def _epoch_batches(self, indices):
        return iter(indices.to(self.device).split(self.batch_size))


class StackedBatches:
    """Every member's next batch, gathered from the resident training split: (S, N, in), (S, N).

    The gather writes into the same buffer each step (a step's batch is dead by the next step)."""

    def __init__(self, splits: tensors.Splits, batch_size: int, seeds: list[int], reshuffle: bool):
        self.x, self.y = splits.x_train.flatten(1), splits.y_train
        self.members = [IndexBatches(len(self.y), batch_size, s, reshuffle, self.y.device) for s in seeds]
        self.buffer = self.x.new_empty(len(seeds) * batch_size, self.x.size(1))
        self.shape = (len(seeds), batch_size)

    def __next__(self):
        index = torch.cat([next(b) for b in self.members])
        x = torch.index_select(self.x, 0, index, out=self.buffer)
        return x.view(*self.shape, -1), self.y[index].view(self.shape)

    @property
    def epoch(self) -> int:
        return self.members[0].epoch


class StackedProbe:
    """`probes.ActivationProbe` for every member at once: same batch, units, percentiles, records."""

    def __init__(self, model: StackedMLP, batch: torch.Tensor, cfg: DictConfig, layers: list[str]):
        self.model, self.batch, self.q, self.layers = model, batch.flatten(1), tuple(cfg.percentiles), layers
        self.train_stats = cfg.mode == "train"
        self.fixed_unit, self.units = cfg.unit, None
        self.histories: list[list[dict[str, float]]] = [[] for _ in range(model.size)]
        self.last_inputs: list[torch.Tensor] = []

    def __call__(self) -> list[dict[str, float]]:
        zs = self.last_inputs = self.model.pre_activations(self.batch, self.train_stats)[0]
        if self.units is None:  # chosen once per member at the first probe, as ActivationProbe does
            self.units = [[self.fixed_unit if self.fixed_unit is not None else typical_unit(z[i]) for z in zs]
                          for i in range(self.model.size)]
        keys, values = [], []
        for j, (name, z) in enumerate(zip(self.layers, zs)):
            unit = torch.tensor([u[j] for u in self.units], device=z.device)
            unit_values = z.gather(2, unit.view(-1, 1, 1).expand(-1, z.size(1), 1)).flatten(1)
            for kind, v in (("unit", unit_values), ("all", z.flatten(1))):
                keys += [f"{name}/{kind}_p{p:g}" for p in self.q]
                values.append(percentiles_rows(v.float(), self.q))
        table = torch.cat(values, 1).tolist()  # (S, keys): one device sync per probe
        records = [dict(zip(keys, row)) for row in table]
        for history, record in zip(self.histories, records):
            history.append(record)
        return records

    def drift(self, i: int) -> dict[str, dict[str, float]]:
        history = self.histories[i]
        return drift_statistics({k: [r[k] for r in history] for k in history[0]}) if history else {}


def percentiles_rows(values: torch.Tensor, q) -> torch.Tensor:
    """`probes.percentiles` of each row of a (S, n) tensor, in one call: (S, len(q))."""
    qs = torch.tensor([p / 100 for p in q], dtype=values.dtype, device=values.device)
    return torch.quantile(values, qs, dim=1).T


def run_stacked(cfg: DictConfig, out_dir: str | Path) -> list[dict[str, object]]:
    """Train every seed of `cfg.seeds` at once; write and return one summary per member."""
    out, start = Path(out_dir), time.perf_counter()
    check_supported(cfg)
    validate(cfg)
    seeds = list(cfg.seeds)
    configs = [member_config(cfg, s) for s in seeds]
    dirs = [out / f"seed={s}" for s in seeds]
    summaries = [{**new_summary(cfg, s), "stacked_seeds": seeds} for s in seeds]
    try:
        for c, d in zip(configs, dirs):
            d.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(c, d / "config.yaml", resolve=True)
        if threads := cfg.trainer.threads or summarize.threads_per_job():  # as run.run does
            torch.set_num_threads(threads)
        device = resolve_device(cfg.trainer.device)
        for c, d in zip(configs, dirs):
            write_json_atomic(d / "provenance.json", {**provenance(c, device), "stacked_seeds": seeds})
        splits = tensors.load(cfg.data, device)
        if len(splits.y_train) < cfg.trainer.batch_size:
            raise BnreproError(f"trainer.batch_size={cfg.trainer.batch_size} exceeds the {len(splits.y_train)} "
                               f"training examples of {choice(cfg.data.name)}; choose a smaller batch size.")
        models = []
        for c in configs:  # each member initialized exactly as its single run (run.run) is
            seed_everything(c.seed, cfg.trainer.deterministic)
            models.append(build_model(c, tuple(splits.x_train.shape[1:]), splits.num_classes).to(device))
        model = StackedMLP(models)
        with contextlib.ExitStack() as stack:
            logs = [stack.enter_context(RunLogger(d, flatten(OmegaConf.to_container(c)), cfg.trainer.max_steps,
                                                  cfg.trainer.progress if i == 0 else "none",
                                                  f"{cfg.variant} seeds={','.join(map(str, seeds))}"))
                    for i, (c, d) in enumerate(zip(configs, dirs))]
            train_start = time.perf_counter()
            results, timing = fit_stacked(model, models[0], splits, cfg, logs)
            train_time = time.perf_counter() - train_start
        model_steps = sum(r["steps"] for r in results)
        for summary, result in zip(summaries, results):
            summary.update(result, train_time_s=round(train_time, 3),
                           steps_per_s=round(result["steps"] / train_time, 1), data_source=splits.source,
                           stacked={"model_steps_per_s": round(model_steps / train_time, 1),
                                    **{k: round(v, 3) for k, v in timing.items()}})
    except BaseException as err:
        for summary in summaries:
            summary.update(ending(err))
        raise
    finally:
        stamps = times(start)  # one process for every member: the same times, counted once
        for summary, d in zip(summaries, dirs):
            if d.is_dir():
                write_json_atomic(d / "summary.json", {**summary, **stamps})
    return summaries


def fit_stacked(model: StackedMLP, template: torch.nn.Module, splits: tensors.Splits, cfg: DictConfig,
                logs: list[RunLogger]) -> tuple[list[dict[str, object]], dict[str, float]]:
    """`train.fit` for every member at once: the same schedule, the same records in the same order.

    A member that diverges (a non-finite loss, or logits that stopped depending on the input at two
    consecutive log points: `train.input_independent`) is recorded as diverged at that log point, as
    a single run is, and is no longer logged; its arithmetic goes on harmlessly (nothing mixes members).
    Returns each member's result (status, steps, final, best, drift) and where the time went.
    """
    t = cfg.trainer
    max_steps, log_every, eval_every, probe_every = t.max_steps, t.log_every, t.eval_every, cfg.probe.every
    size = model.size
    optimizer, schedule = build_optimizer(model, cfg.optim)
    batches = StackedBatches(splits, t.batch_size, [int(c) for c in cfg.seeds], cfg.data.reshuffle)
    results = [{"status": "completed", "divergence": None, "steps": 0, "best_accuracy": math.nan, "best_step": 0}
               for _ in range(size)]
    dead_checks = [0] * size
    active = list(range(size))
    timing = {"eval_time_s": 0.0, "probe_time_s": 0.0}
    x_test, y_test = splits.x_test, splits.y_test
    probe = None
    if probe_every > 0:
        batch = x_test[:min(cfg.probe.batch_size, t.eval_batch_size)]
        probe = StackedProbe(model, batch, cfg.probe, list(template.probe_points()))
        charts = ActivationProbe(template, batch, cfg.probe.percentiles).charts()

    def probe_and_log(step: int) -> None:
        tic = time.perf_counter()
        records = probe()
        every = cfg.probe.histogram_every
        for i in active:
            logs[i].log(step, "probe", records[i])
            if every and (len(probe.histories[i]) - 1) % every == 0:
                logs[i].histograms(step, "probe", {n: z[i] for n, z in zip(probe.layers, probe.last_inputs)})
        timing["probe_time_s"] += time.perf_counter() - tic

    def evaluate_and_log(step: int) -> None:
        tic = time.perf_counter()
        totals = model.evaluate(x_test, y_test, t.eval_batch_size).tolist()
        for i in active:
            loss, correct = totals[i]
            accuracy, r = correct / len(y_test), results[i]
            logs[i].log(step, "test", {"loss": loss / len(y_test), "accuracy": accuracy})
            if accuracy > r["best_accuracy"] or math.isnan(r["best_accuracy"]):
                r["best_accuracy"], r["best_step"] = accuracy, step
            logs[i].log(step, "test", {"best_accuracy": r["best_accuracy"]})
        timing["eval_time_s"] += time.perf_counter() - tic

    if probe:
        for log in logs:
            log.charts("activation percentiles", charts)
        probe_and_log(0)
    loss_sum = torch.zeros(size, device=x_test.device)
    window = 0
    for step in range(1, max_steps + 1):
        x, y = next(batches)
        loss = model.forward_backward(x, y)
        optimizer.step()
        schedule.step()
        loss_sum += loss
        window += 1
        last = step == max_steps
        if step % log_every == 0 or last:
            losses, dead = torch.stack([loss_sum / window, input_independent(model.last_logits)]).tolist()
            loss_sum.zero_()
            window = 0
            lr = optimizer.param_groups[0]["lr"]
            for i in list(active):
                results[i]["steps"] = step
                dead_checks[i] = dead_checks[i] + 1 if dead[i] == 1.0 else 0
                divergence = ("nonfinite" if not math.isfinite(losses[i]) else "dead" if dead_checks[i] >= 2
                              else None)
                if divergence:
                    logs[i].log(step, "train", {"loss": losses[i], "diverged": 1.0})
                    results[i]["status"], results[i]["divergence"] = "diverged", divergence
                    active.remove(i)
                else:
                    logs[i].log(step, "train", {"loss": losses[i], "lr": lr, "epoch": batches.epoch})
            if not active:
                break
        if step % eval_every == 0 or last:
            evaluate_and_log(step)
        if probe and step % probe_every == 0:
            probe_and_log(step)
        if step % log_every == 0 or last:
            logs[0].progress(step)  # the one progress display (run_stacked)
    for i, (r, log) in enumerate(zip(results, logs)):
        r["drift"] = probe.drift(i) if probe else {}
        r["final"] = {k: v for k, v in log.latest.items() if k in ("train/loss", "test/loss", "test/accuracy")}
    return results, timing
