"""Issue 18's experiments (configs/experiment/bn_statistics.yaml, bn_shift.yaml) as functions of run
data; scripts/plot_bn_statistics.py, plot_bn_shift.py, report_bn_statistics.py and the scorecard read them here.

bn_statistics, per run (`per_run`): its method (which population estimate, FrozenBN tail, Batch
Renorm, group norm, inference example weighing), its normalization batch (bn.ghost_batch; null =
the whole SGD batch; NaN for group norm, which pools no examples), and its final (last evaluation)
val and test accuracy and error. `table`: method x normalization batch, seed-mean val error with
its 95% t interval (bnrepro.analysis.stats), test beside it. A diverged run counts at chance (CHANCE): its last
accuracy is not a final one, and leaving it out would hide what small batches do.

A run that scripts/eval_statistics.py evaluated after training (statistics.csv: the EMA run under
Algorithm 2, PreciseBN and example weighing; bnrepro/training/inference.py) adds one run per row
group to `load`'s metrics, `<run>/<statistics>[=alpha]`, configured as a run of that choice: the
same network at the same step, so everything below reads it like a trained run. `weighing_choice`
picks each normalization batch's alpha on val (bn_statistics_conv's claim reads test there).

bn_shift, from each run's shift.csv (scripts/eval_shift.py; `load_shift`): per corruption and
severity the error with the training statistics and with statistics recomputed on the target
(`shift_table`), and per run the claim's number (`shift_gap`).

`claims(experiment, data)`: the specs that the report and scorecard.row turn into rows, as
bnrepro.analysis.why.claims. Intervals and verdicts: bnrepro.analysis.stats, as everywhere.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import fig3
from bnrepro.analysis.results import find_runs, load_metrics, run_info
from bnrepro.analysis.stats import mean_interval

KEYS = ("bn.norm", "bn.population", "bn.momentum", "bn.freeze_after", "bn.ghost_batch", "bn.eval_weight",
        "trainer.batch_size", "model.name")
CHANCE = 90.0  # points of error (10 classes): a diverged run counts as a network that did not learn
SHIFT_FILE = "shift.csv"
STATISTICS_FILE = "statistics.csv"  # scripts/eval_statistics.py
INFERENCE = ("average", "precise", "weighing")  # its choices besides the EMA the run trained with
# The methods the claims compare (labels as `method` writes them), and the plot's order.
EMA, AVERAGE, PRECISE, FROZEN = "EMA m=0.1", "Algorithm 2 average", "PreciseBN", "PreciseBN + FrozenBN tail"
RENORM, GROUP = "Batch Renorm", "group norm"
WEIGHING = "EMA m=0.1, weighing alpha="  # + the alpha (`method`)
ORDER = ("EMA m=0.01", EMA, "EMA m=0.3", AVERAGE, PRECISE, FROZEN, RENORM, GROUP)
SMALL, LARGE = 2, 128  # the header's ghost batches, for the claims' text before any run exists


def load(sweep_dir: Path) -> pd.DataFrame:
    metrics = load_metrics(sweep_dir, KEYS)
    return pd.concat([metrics, *inference_runs(Path(sweep_dir), metrics)], ignore_index=True)


def inference_runs(root: Path, metrics: pd.DataFrame) -> list[pd.DataFrame]:
    """Each statistics.csv under `root` as metrics rows of one run per (statistics, alpha): the run's
    own columns, bn.population / bn.eval_weight set to the choice; `ema` is the run itself."""
    frames = []
    for d in find_runs(root):
        if not (d / STATISTICS_FILE).is_file():
            continue
        run = str(d.relative_to(root)) if d != root else d.name
        own = metrics[metrics.run == run].iloc[0]
        table = pd.read_csv(d / STATISTICS_FILE)
        for (stats, alpha), rows in table[table.statistics.isin(INFERENCE)].groupby(["statistics", "alpha"], sort=False):
            config = {"bn.population": "ema" if stats == "weighing" else stats, "bn.eval_weight": float(alpha)}
            name = f"{run}/{stats}" + (f"={alpha:g}" if stats == "weighing" else "")
            long = rows.assign(name="accuracy", value=rows.accuracy)[["step", "split", "name", "value"]]
            frames.append(long.assign(**{**own.drop(["step", "split", "name", "value"]).to_dict(),
                                         **config, "run": name}))
    return frames


def method(row) -> str:
    """A run's method label from its bn.* config columns (a mapping or a frame row)."""
    norm = row["bn.norm"]
    if norm not in ("batch", "renorm"):
        return {"group": GROUP, "layer": "layer norm", "none": "no norm"}.get(norm, str(norm))
    m = row["bn.momentum"]
    ema = "EMA cumulative" if m is None or pd.isna(m) else f"EMA m={m:g}"
    base = {"ema": ema, "average": AVERAGE, "precise": PRECISE}.get(row["bn.population"], str(row["bn.population"]))
    if norm == "renorm":  # the header's renorm keeps an EMA at 0.1; anything else is named
        base = RENORM if base == EMA else f"{RENORM} ({base})"
    freeze = row["bn.freeze_after"]
    if freeze is not None and not pd.isna(freeze) and freeze < 1:
        base += " + FrozenBN tail"
    alpha = row["bn.eval_weight"]
    return base + (f", weighing alpha={alpha:g}" if alpha else "")


def inference_run_names(runs: pd.DataFrame) -> list[str]:
    """The runs `inference_runs` made (evaluated after training, not trained)."""
    return [r for r in runs.run if "/" in r and r.rsplit("/", 1)[1].split("=")[0] in INFERENCE]


def norm_batch(row) -> float:
    """The examples that share BN's statistics: the ghost batch, else the SGD batch; NaN for norms
    without batch statistics."""
    if row["bn.norm"] not in ("batch", "renorm"):
        return math.nan
    ghost = row["bn.ghost_batch"]
    return float(row["trainer.batch_size"] if ghost is None or pd.isna(ghost) else ghost)


def per_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: run, method, batch, seed, status, divergence, steps, final and final_test
    (last val and test accuracy), error and test_error (100 - accuracy, in points; CHANCE where the
    run diverged), and the KEYS columns."""
    rows = []
    for run, m in metrics.groupby("run", sort=True):
        first = m.iloc[0]
        acc = {s: m[(m.split == s) & (m.name == "accuracy")].sort_values("step").value for s in ("val", "test")}
        final = {s: float(a.iloc[-1]) if len(a) else math.nan for s, a in acc.items()}
        diverged = first.status == "diverged"
        rows.append({"run": run, "method": method(first), "batch": norm_batch(first),
                     **{k: first[k] for k in ("seed", "data", "status", "divergence", *KEYS)},
                     "steps": int(m.step.max()), "final": final["val"], "final_test": final["test"],
                     "error": CHANCE if diverged else 100 * (1 - final["val"]),
                     "test_error": CHANCE if diverged else 100 * (1 - final["test"])})
    return pd.DataFrame(rows)


def methods(runs: pd.DataFrame) -> list[str]:
    """The sweep's methods in ORDER (others after, by name)."""
    found = set(runs.method)
    return [m for m in ORDER if m in found] + sorted(found - set(ORDER))


def errors(runs: pd.DataFrame, label: str, batch: float | None = None, column: str = "error") -> np.ndarray:
    """Per-seed errors (points) of one method, at one normalization batch (None: every run of the
    method, for group norm); runs without an evaluation left out."""
    r = runs[runs.method == label]
    if batch is not None:
        r = r[r.batch == batch]
    return r[column].dropna().to_numpy(float)


def weighing_choice(runs: pd.DataFrame, batch: float) -> tuple[str, float]:
    """At one normalization batch, the example-weighing method (EMA m=0.1 weighed by alpha) whose
    seed-mean val error is lowest, and its alpha; ("", nan) without weighing runs there."""
    r = runs[runs.method.str.startswith(WEIGHING) & (runs.batch == batch)]
    if not len(r):
        return "", math.nan
    label = r.groupby("method").error.mean().idxmin()
    return label, float(label.removeprefix(WEIGHING))


def mean_ci(key: str, values: np.ndarray) -> tuple[float, float, float]:
    """The seed mean and its t interval (stats.mean_interval); `key` names the cell, for readers of the code."""
    return tuple(mean_interval(values))


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method and normalization batch (NaN: group norm): runs, diverged, the seed-mean val error
    with its 95% interval (error, lo, hi) and the seed-mean test error."""
    out = []
    for label in methods(runs):
        r = runs[runs.method == label]
        for batch in sorted(r.batch.unique()) if r.batch.notna().any() else [math.nan]:
            b = r[r.batch == batch] if not math.isnan(batch) else r
            err = b.error.dropna().to_numpy(float)
            out.append({"method": label, "batch": batch, "runs": len(b),
                        "diverged": int((b.status == "diverged").sum()),
                        **dict(zip(("error", "lo", "hi"), mean_ci(f"table/{label}/{batch}", err))),
                        "test_error": float(b.test_error.mean())})
    return pd.DataFrame(out, columns=["method", "batch", "runs", "diverged", "error", "lo", "hi", "test_error"])


# -- bn_shift -----------------------------------------------------------------------------------------
def load_shift(sweep_dir: Path, required: bool = True) -> pd.DataFrame | None:
    """Every run's shift.csv (corruption, severity, statistics, accuracy, loss, step) with its run,
    seed, data, model.name and status, and error = 100 - accuracy (points). Without any shift.csv: an error
    naming the command that writes them, or None when not `required` (the scorecard: `not run`)."""
    root = Path(sweep_dir)
    frames = [pd.read_csv(d / SHIFT_FILE).drop(columns="seed", errors="ignore")
              .assign(**{k: v for k, v in run_info(d, root, ("model.name",)).items() if k != "divergence"})
              for d in find_runs(root) if (d / SHIFT_FILE).is_file()]
    if not frames:
        if not required:
            return None
        raise FileNotFoundError(f"No run under {root} holds {SHIFT_FILE}: run scripts/eval_shift.py RUN_DIR on "
                                "each run first (make bn_shift does).")
    shift = pd.concat(frames, ignore_index=True)
    return shift.assign(error=100 * (1 - shift.accuracy))


def shift_table(shift: pd.DataFrame) -> pd.DataFrame:
    """Per corruption (`none`: the clean test split, severity 0), severity and statistics (train |
    target): runs and the seed-mean error with its 95% interval (error, lo, hi)."""
    out = []
    for (kind, severity, stats), g in shift.groupby(["corruption", "severity", "statistics"], sort=False):
        ci = mean_ci(f"shift/{kind}/{severity}/{stats}", g.error.to_numpy(float))
        out.append({"corruption": kind, "severity": int(severity), "statistics": stats, "runs": len(g),
                    **dict(zip(("error", "lo", "hi"), ci))})
    return pd.DataFrame(out)


def shift_gap(shift: pd.DataFrame) -> pd.DataFrame:
    """Per run: at its highest severity, the mean over corruptions of train-statistics error minus
    target-statistics error (points; > 0: recomputing on the target helps)."""
    top = shift[(shift.corruption != "none") & (shift.severity == shift.severity.max())]
    wide = top.pivot_table(index=["run", "seed", "corruption"], columns="statistics", values="error").reset_index()
    wide["gap"] = wide["train"] - wide["target"]
    return wide.groupby(["run", "seed"], as_index=False).gap.mean()


# -- the claims (the scorecard's rows and the report's claims table) -----------------------------------
def _mean_diff(g: list[np.ndarray]) -> float:
    return float(g[0].mean() - g[1].mean())


def claims(experiment: str, data: pd.DataFrame | None) -> list[dict]:
    """The experiment's claims, each a dict of claim, text, paper, statistic, side, reference,
    groups (one array of per-seed values per side; empty without runs) and stat (of the groups).
    `data`: bn_statistics' metrics (`load`), bn_shift's shift table (`load_shift`), or None."""
    from bnrepro.paper import BN_STATS_ANCHORS as A

    have = data is not None

    def spec(claim, text, paper, statistic, groups, stat=_mean_diff, arms=()):
        return {"claim": claim, "text": text, "paper": paper, "statistic": statistic, "side": ">",
                "reference": 0.0, "groups": groups if have else [], "stat": stat,
                "plateau": plateau(*arms) if arms else ""}

    if experiment == "bn_shift":
        gaps = shift_gap(data).gap.to_numpy(float) if have else np.empty(0)
        return [spec("bn_shift_target_stats_help", "statistics recomputed on the corrupted images lower the error",
                     A["target_stats_help"], "test error at the highest severity, training - target statistics, "
                     "mean over corruptions (points)", [gaps],
                     lambda g: float(g[0].mean()))]
    if experiment not in ("bn_statistics", "bn_statistics_conv"):
        raise ValueError(f"unknown experiment {experiment!r}: one of bn_statistics, bn_statistics_conv, bn_shift")
    runs = per_run(data) if have else pd.DataFrame(columns=["method", "batch", "error", "test_error"])
    batches = runs.batch.dropna()
    small, large = (batches.min(), batches.max()) if len(batches) else (SMALL, LARGE)

    def plateau(*arms: tuple[str, float | None]) -> str:
        """fig3.plateau_note on the trained runs of each (method, batch) a claim compares (a method read
        after training, PreciseBN on the conv net, has no curve: its network's EMA arm stands for it)."""
        if not have or not arms:
            return ""
        pick = lambda m, b: runs.run[(runs.method == m) & ((runs.batch == b) if b is not None else True)]  # noqa: E731
        return fig3.plateau_note(data, {m + (f" at {b:g}" if b is not None else ""): data.run.isin(pick(m, b))
                                        for m, b in arms})
    at = lambda label, b=small: errors(runs, label, b)  # noqa: E731
    stat = "final val error at normalization batch {b:g}, {a} - {c} (points)"
    specs = [
        spec("bn_statistics_small_batch_hurts", f"BN ({EMA}) has a higher error at batch {small:g} than at {large:g}",
             A["small_batch_hurts"], f"final val error, {EMA}, batch {small:g} - batch {large:g} (points)",
             [at(EMA), at(EMA, large)], arms=((EMA, small), (EMA, large))),
        spec("bn_statistics_precise_beats_ema_small", f"at batch {small:g} PreciseBN's error is below the EMA's",
             A["precise_beats_ema"], stat.format(b=small, a=EMA, c=PRECISE), [at(EMA), at(PRECISE)],
             arms=((EMA, small), (PRECISE, small))),
        spec("bn_statistics_gn_flat", f"at batch {small:g} group norm's error is below BN's",
             A["gn_flat"], f"final val error, BN ({EMA}) at batch {small:g} - group norm (points)",
             [at(EMA), errors(runs, GROUP)], arms=((EMA, small), (GROUP, None))),
        spec("bn_statistics_renorm_helps_small", f"at batch {small:g} Batch Renorm's error is below BN's",
             A["renorm_helps"], stat.format(b=small, a=EMA, c=RENORM), [at(EMA), at(RENORM)],
             arms=((EMA, small), (RENORM, small))),
    ]
    if experiment == "bn_statistics" and small == 2:  # the MLP at batch 2: +-1 by arithmetic (claims.MLP_BATCH_2)
        from bnrepro.analysis.claims import MLP_BATCH_2
        for c in specs:
            if c["claim"] != "bn_statistics_precise_beats_ema_small":
                c["illustration"] = MLP_BATCH_2
    if experiment == "bn_statistics":
        return specs + [
            spec("bn_statistics_frozen_tail_helps_small", f"at batch {small:g} a FrozenBN tail lowers PreciseBN's error",
                 A["frozen_tail_helps"], stat.format(b=small, a=PRECISE, c=FROZEN), [at(PRECISE), at(FROZEN)],
                 arms=((PRECISE, small), (FROZEN, small)))]
    # The conv twin: no FrozenBN arm; example weighing, its alpha chosen on val, read on test.
    label, alpha = weighing_choice(runs, small) if have else ("", math.nan)
    chosen = f"alpha={alpha:g}" if label else "the alpha chosen on val"
    weighing = spec("bn_statistics_weighing_helps_small",
                    f"at batch {small:g} example weighing (alpha chosen on val) lowers BN's test error",
                    A["weighing_helps"], f"final test error at normalization batch {small:g}, {EMA} - weighing at "
                    f"{chosen} (points)", [errors(runs, EMA, small, "test_error"), errors(runs, label, small, "test_error")],
                    arms=((EMA, small),))
    return [{**c, "claim": experiment + c["claim"][len("bn_statistics"):]} for c in [*specs, weighing]]
