"""Figure 1's sensitivity map (configs/experiment/fig1_sensitivity.yaml) as functions of the run
data; scripts/plot_fig1_sensitivity.py and scripts/report_fig1_sensitivity.py both read it here.

A cell is one (initial weights, learning rate, momentum) point, its no-BN (`baseline`) and BN
(`bn`) runs the seeds of one stack each. Per cell, on the validation split (what choices are read
from; test accuracy is reported beside it), with 95% t intervals over seeds (bnrepro.analysis.stats, a diverged run's accuracy at chance):
- lead: BN's seed-mean final accuracy minus no-BN's (the last evaluation), in points; the paper's
  "higher" (Fig. 1a) holds where the interval lies above 0, is reversed where it lies below.
- speed-up: no-BN's steps / BN's steps to THRESHOLD x the higher of the two seed-mean final
  accuracies, each the first crossing of the seed-mean curve, interpolated in log(step)
  (stats.crossing). The higher final, not no-BN's: a no-BN network still at chance would set a
  threshold of ~0.1 that both pass at the first evaluation. A curve that never gets there counts
  its last evaluated step (the ratio is then a bound; `*_never` says so). "Faster" holds where
  the interval lies above 1.
- drift of the last hidden layer's typical sigmoid input (Fig. 1b, c): `movement`, the distance
  its 15/50/85th percentiles travel over the probes (mean over the percentiles; input units), and
  `rel_movement`, the same over the first probe's 15-85 spread (bnrepro.tracking.probes.
  drift_statistics' definitions, in numpy). Relative alone flatters a no-BN layer that starts with
  a tiny spread (small initial weights), so "stable inputs" holds where BN's drift is smaller
  in both units: the intervals of no-BN / BN above 1.
Diverged runs are counted per cell and left out of its statistics.

`choose_default` is the rule that set fig1_mnist's defaults from this map (issue 15), written in
configs/experiment/fig1_sensitivity.yaml before the sweep ran.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis.results import last_layer, load_metrics
from bnrepro.analysis.stats import crossing, interval, mean_curve

KEYS = ("model.init_std", "model.init", "optim.lr", "optim.momentum", "trainer.max_steps")
CELL = ["init", "optim.lr", "optim.momentum"]
VARIANTS = ("baseline", "bn")
CHANCE = 0.1  # 10 classes: a diverged run's accuracy
THRESHOLD = 0.9
TIE = 0.3  # points: a choice's tie, about the width of a cell's interval over 5 seeds
INIT_NAMES = {"lecun": "1/sqrt(fan_in)", "auto": "torch default", "he": "sqrt(2/fan_in)",
              "glorot": "sqrt(2/(fan_in+fan_out))"}
CLAIMS = {"faster": "BN reaches the threshold in fewer steps",
          "higher": "BN's final validation accuracy is higher",
          "stable": "BN's last-layer sigmoid input drifts less, in relative and absolute units"}


def init_label(init_std, init) -> str:
    """A cell's initial weights: the Gaussian's std ("0.01"), else model.init's name."""
    if init_std is not None and not (isinstance(init_std, float) and math.isnan(init_std)):
        return f"{float(init_std):g}"
    return INIT_NAMES.get(str(init), str(init))


def init_order(labels) -> list[str]:
    """Fixed stds in increasing order, then the named inits."""
    return sorted(set(labels), key=lambda label: (0, float(label), "") if _is_std(label) else (1, 0.0, label))


def load(sweep_dir: Path) -> pd.DataFrame:
    """A sweep's metrics with the KEYS columns and `init`, a cell's initial-weights label."""
    metrics = load_metrics(sweep_dir, KEYS)
    metrics["init"] = [init_label(s, i) for s, i in zip(metrics["model.init_std"], metrics["model.init"])]
    return metrics


def split_of(metrics: pd.DataFrame) -> str:
    return "val" if (metrics.split == "val").any() else "test"


def drift(probes: pd.DataFrame, layer: str) -> dict[str, float]:
    """One run's drift of `layer`'s typical unit from its probe rows (split "probe")."""
    rows = probes[probes.name.str.startswith(f"{layer}/unit_p")]
    return drift_of(rows.pivot_table(index="step", columns="name", values="value").sort_index())


def drifts(probes: pd.DataFrame, layers: list[str]) -> dict[str, dict[str, float]]:
    """drift(probes, layer) for each layer, from one pivot of the run's unit percentiles."""
    rows = probes[probes.name.str.contains("/unit_p", regex=False)]
    wide = rows.pivot_table(index="step", columns="name", values="value").sort_index()
    # each layer's columns, at the steps that layer was probed (what its own pivot would hold)
    return {layer: drift_of(wide[[c for c in wide.columns if c.startswith(f"{layer}/unit_p")]].dropna(how="all"))
            for layer in layers}


def drift_of(wide: pd.DataFrame) -> dict[str, float]:
    nan = dict.fromkeys(("movement", "rel_movement", "median_shift", "spread_ratio"), math.nan)
    if len(wide) < 2:
        return nan
    cols = sorted(wide.columns, key=lambda c: float(c.rpartition("_p")[2]))
    p = wide[cols].to_numpy(float)
    spread, median = p[:, -1] - p[:, 0], p[:, len(cols) // 2]
    movement = float(np.abs(np.diff(p, axis=0)).sum(axis=0).mean())
    return {"movement": movement, "rel_movement": movement / spread[0], "median_shift": float(median[-1] - median[0]),
            "spread_ratio": float(spread[-1] / spread[0])}


def per_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its cell, variant, seed, status, final val and test accuracy, and drift."""
    split, layer = split_of(metrics), last_layer(metrics)
    rows = []
    for run, m in metrics.groupby("run", sort=True):
        final = {s: m[(m.split == s) & (m.name == "accuracy")].sort_values("step").value for s in (split, "test")}
        rows.append({"run": run, **{k: m[k].iloc[0] for k in [*CELL, "variant", "seed", "status", "data"]},
                     "steps": int(m.step.max()), "split": split,
                     "final": float(final[split].iloc[-1]) if len(final[split]) else math.nan,
                     "final_test": float(final["test"].iloc[-1]) if len(final["test"]) else math.nan,
                     **(drift(m[m.split == "probe"], layer) if layer else {}), "layer": layer or ""})
    return pd.DataFrame(rows)


def curves(metrics: pd.DataFrame, runs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation steps and a runs x steps matrix of accuracy on the choosing split."""
    rows = metrics[(metrics.split == split_of(metrics)) & (metrics.name == "accuracy") & metrics.run.isin(runs)]
    wide = rows.pivot_table(index="run", columns="step", values="value").sort_index(axis=1).reindex(runs)
    return wide.columns.to_numpy(float), wide.to_numpy(float)


def last_finite(curve: np.ndarray) -> float:
    finite = curve[np.isfinite(curve)]
    return float(finite[-1]) if len(finite) else math.nan


def steps_to(steps: np.ndarray, curve: np.ndarray, threshold: float) -> tuple[float, bool]:
    """(the crossing step, whether it never got there); never: the last evaluated step."""
    hit = crossing(steps, curve, threshold)
    if math.isnan(hit):
        seen = steps[np.isfinite(curve)]
        return (float(seen[-1]) if len(seen) else math.nan), True
    return hit, False


def threshold_of(base: np.ndarray, bn: np.ndarray) -> float:
    """THRESHOLD x the higher of the two seed-mean curves' final values."""
    return THRESHOLD * max(last_finite(mean_curve(base)), last_finite(mean_curve(bn)))


def speedup_stat(steps: np.ndarray):
    def stat(g: list[np.ndarray]) -> float:
        base, bn = mean_curve(g[0]), mean_curve(g[1])
        threshold = threshold_of(g[0], g[1])
        return steps_to(steps, base, threshold)[0] / steps_to(steps, bn, threshold)[0]
    return stat


def verdict(lo: float, hi: float, null: float) -> str:
    """"holds" where the interval lies above `null`, "reversed" below it, else "unresolved"."""
    if math.isnan(lo) or math.isnan(hi):
        return "n/a"
    return "holds" if lo > null else "reversed" if hi < null else "unresolved"


def cell_row(key: tuple, runs: pd.DataFrame, metrics: pd.DataFrame) -> dict[str, object]:
    row: dict[str, object] = dict(zip(CELL, key))
    ok = {}
    for v in VARIANTS:
        r = runs[runs.variant == v]
        row[f"seeds_{v}"], row[f"diverged_{v}"] = len(r), int((r.status == "diverged").sum())
        ok[v] = r[r.status != "diverged"].sort_values("seed")
        row[f"final_{v}"] = float(ok[v].final.mean()) if len(ok[v]) else math.nan
        row[f"final_test_{v}"] = float(ok[v].final_test.mean()) if len(ok[v]) else math.nan
    base, bn = ok["baseline"], ok["bn"]
    # The lead counts a diverged run at chance (stats.DIVERGED_RULE); the curves below use the others,
    # and the table counts what they leave out (diverged_*).
    at_chance = {v: np.where(r.status == "diverged", CHANCE, r.final.to_numpy(float)) * 100
                 for v, r in ((v, runs[runs.variant == v].sort_values("seed")) for v in VARIANTS)}
    groups = [at_chance["baseline"], at_chance["bn"]]
    row["lead"], row["lead_lo"], row["lead_hi"] = interval(groups, lambda g: g[1].mean() - g[0].mean())
    steps, g = curves(metrics, [*base.run, *bn.run])  # one set of steps for both (NaN where a run has none)
    g_base, g_bn = g[:len(base)], g[len(base):]
    if len(base) and len(bn):
        threshold = threshold_of(g_base, g_bn)
        (s_base, never_base), (s_bn, never_bn) = (steps_to(steps, mean_curve(g), threshold) for g in (g_base, g_bn))
        sp = interval([g_base, g_bn], speedup_stat(steps), log=True)
    else:  # a variant missing: nothing to compare
        threshold, s_base, s_bn, never_base, never_bn, sp = math.nan, math.nan, math.nan, False, False, (math.nan,) * 3
    row.update(threshold=threshold, steps_baseline=s_base, steps_bn=s_bn, baseline_never=never_base,
               bn_never=never_bn)
    row["speedup"], row["speedup_lo"], row["speedup_hi"] = sp
    for unit, col in (("rel", "rel_movement"), ("abs", "movement")):
        g = [base[col].dropna().to_numpy(float), bn[col].dropna().to_numpy(float)] if col in runs else []
        row[f"drift_{unit}_baseline"] = float(g[0].mean()) if g and len(g[0]) else math.nan
        row[f"drift_{unit}_bn"] = float(g[1].mean()) if g and len(g[1]) else math.nan
        r = interval(g, lambda x: x[0].mean() / x[1].mean(), log=True) if g else (math.nan,) * 3
        row[f"drift_{unit}_ratio"], row[f"drift_{unit}_ratio_lo"], row[f"drift_{unit}_ratio_hi"] = r
    row["higher"] = verdict(row["lead_lo"], row["lead_hi"], 0.0)
    row["faster"] = verdict(row["speedup_lo"], row["speedup_hi"], 1.0)
    rel = verdict(row["drift_rel_ratio_lo"], row["drift_rel_ratio_hi"], 1.0)
    ab = verdict(row["drift_abs_ratio_lo"], row["drift_abs_ratio_hi"], 1.0)
    row["stable"] = (rel if rel == ab else "relative only" if rel == "holds" else "absolute only" if ab == "holds"
                     else "unresolved" if "n/a" not in (rel, ab) else "n/a")
    return row


def accuracy_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The choosing split's accuracy rows alone: `curves` reads these hundreds of times, and comparing the
    strings of the whole frame each time cost most of a report's run time."""
    return metrics[(metrics.split == split_of(metrics)) & (metrics.name == "accuracy")]


def cells(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (CELL columns, then seeds, finals, lead, threshold, steps, speed-up,
    drift in both units, and the verdicts `faster`, `higher`, `stable`), in grid order."""
    metrics = accuracy_rows(metrics)
    rows = [cell_row(key, r, metrics) for key, r in runs.groupby(CELL, sort=False)]
    out = pd.DataFrame(rows)
    out["order"] = out.init.map({label: i for i, label in enumerate(init_order(out.init))})
    return out.sort_values(["optim.momentum", "order", "optim.lr"]).drop(columns="order").reset_index(drop=True)


def seed_steps(metrics: pd.DataFrame, runs: pd.DataFrame, table: pd.DataFrame) -> list[float]:
    """Each run's own steps to its cell's threshold (NaN: never), for the per-seed table."""
    metrics = accuracy_rows(metrics)
    thresholds = table.set_index(CELL).threshold
    out = []
    for _, r in runs.iterrows():
        steps, g = curves(metrics, [r.run])
        hit, never = steps_to(steps, g[0], thresholds.get(tuple(r[CELL]), math.nan))
        out.append(math.nan if never else hit)
    return out


def grid(table: pd.DataFrame, column: str, momentum: float) -> pd.DataFrame:
    """`column` of one momentum's cells as an init (rows, grid order) x learning rate table."""
    rows = table[table["optim.momentum"] == momentum]
    wide = rows.pivot(index="init", columns="optim.lr", values=column)
    return wide.reindex(init_order(wide.index)).sort_index(axis=1)


def choose_default(table: pd.DataFrame) -> pd.Series:
    """fig1_mnist's default cell: among the cells with a fixed Gaussian std (the paper's "small
    random Gaussian values"; a fan-in-scaled init is not what it says) in which no seed of either
    variant diverged, the one whose no-BN network ends highest on the choosing split, so that BN is
    measured against a baseline at its best. Cells within TIE points of the best tie; a tie goes to
    plain SGD (momentum 0, the paper's "SGD"), then the smaller std ("small"), then the smaller rate."""
    fixed = table[[_is_std(label) for label in table.init]]
    ok = fixed[(fixed.diverged_baseline == 0) & (fixed.diverged_bn == 0) & fixed.final_baseline.notna()]
    if ok.empty:
        raise ValueError("no cell with a fixed std and no diverged seed: the rule has nothing to choose from")
    best = ok.final_baseline.max()
    tied = ok[ok.final_baseline >= best - TIE / 100].assign(std=lambda t: t.init.astype(float))
    return tied.sort_values(["optim.momentum", "std", "optim.lr"]).iloc[0]


def _is_std(label: str) -> bool:
    try:
        float(label)
        return True
    except ValueError:
        return False
