"""Figure 3's protocol as functions of the run data (configs/experiment/fig2_fashion_mnist.yaml's
header states it; scripts/table_fig3.py and scripts/scorecard.py both read it from here).

- Every choice is read from the validation split (`val/accuracy`); test accuracy is reported.
- Threshold: the maximum of the no-BN Inception's seed-mean validation curve (the paper's 72.2%);
  Inception's own steps: where that maximum is first reached.
- Steps to threshold: where a variant's seed-mean validation curve first reaches the threshold,
  interpolated in log(step) between evaluations (`stats.crossing`); speed-up: Inception's steps /
  the variant's. Both with 95% bootstrap intervals over seeds, Inception's seeds resampled too
  (so the threshold's own uncertainty is in every interval).
- Plateau rule (`stats.plateau_gain`): the seed-mean curve's best rises by less than PLATEAU_GAIN
  over the last PLATEAU_FRACTION of the run's steps; checked and reported for every variant,
  required of the no-BN Inception (and Inception-Sigmoid) whose maximum the others are measured
  against. Those train until it holds (`trainer.stop_at_plateau`, bnrepro/training/loop.py).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnrepro.analysis.results import BASE
# The plateau rule lives in stats, because the trainer stops by it too; the tables read it from here.
from bnrepro.analysis.stats import PLATEAU_FRACTION, PLATEAU_GAIN, plateau_gain  # noqa: F401
from bnrepro.analysis.stats import crossing, mean_curve

SPLIT = "val"  # what the protocol chooses on


def curves(metrics: pd.DataFrame, split: str = SPLIT, name: str = "accuracy"
           ) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per variant: its evaluation steps, a seeds x steps matrix of the metric (NaN after a run
    stopped), and the runs (rows) in order. Only the steps the variant was evaluated at."""
    rows = metrics[(metrics.split == split) & (metrics.name == name)]
    out = {}
    for variant, g in rows.groupby("variant"):
        wide = g.pivot_table(index="run", columns="step", values="value").sort_index(axis=1)
        out[variant] = (wide.columns.to_numpy(float), wide.to_numpy(float), list(wide.index))
    return out


def best_of(steps: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """The seed-mean curve's maximum and the first step it is reached at (NaN, NaN if empty)."""
    mean = mean_curve(g)
    if not np.isfinite(mean).any():
        return math.nan, math.nan
    i = int(np.nanargmax(mean))
    return float(mean[i]), float(steps[i])


def steps_to(base: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]):
    """The statistic `stats.bootstrap` resamples: [Inception's seeds, a variant's seeds] -> the
    variant's steps to Inception's seed-mean best (NaN: never)."""
    def stat(g: list[np.ndarray]) -> float:
        threshold, _ = best_of(base[0], g[0])
        return crossing(other[0], mean_curve(g[1]), threshold)
    return stat


def speedup(base: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]):
    """[Inception's seeds, a variant's seeds] -> Inception's steps to its best / the variant's
    (NaN where the variant never gets there)."""
    def stat(g: list[np.ndarray]) -> float:
        threshold, base_steps = best_of(base[0], g[0])
        return base_steps / crossing(other[0], mean_curve(g[1]), threshold)
    return stat


def value_at(steps: np.ndarray, g: np.ndarray, step: float) -> float:
    """The seed-mean curve at an evaluated step (NaN if it was not evaluated there)."""
    hit = np.flatnonzero(steps == step)
    return float(mean_curve(g)[hit[0]]) if len(hit) else math.nan


def per_seed(metrics: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per run: its own steps to `threshold` on the validation split (NaN: never), its best
    validation accuracy and step, its test accuracy at that step, its final test accuracy."""
    val, test = curves(metrics, SPLIT), curves(metrics, "test")
    rows = []
    for variant, (steps, g, runs) in val.items():
        t_steps, t, t_runs = test.get(variant, (np.empty(0), np.empty((0, 0)), []))
        for i, run in enumerate(runs):
            curve = g[i]
            ok = np.isfinite(curve)
            best_i = int(np.nanargmax(curve)) if ok.any() else None
            j = t_runs.index(run) if run in t_runs else None
            tc = t[j] if j is not None else np.full(len(t_steps), math.nan)
            t_ok = np.isfinite(tc)
            best_step = float(steps[best_i]) if best_i is not None else math.nan
            rows.append({"variant": variant, "run": run,
                         "steps_to_threshold": crossing(steps, curve, threshold),
                         "best_val_accuracy": float(curve[best_i]) if best_i is not None else math.nan,
                         "best_val_step": best_step,
                         "test_at_best_val": float(tc[t_steps == best_step][0]) if (t_steps == best_step).any() else math.nan,
                         "final_test_accuracy": float(tc[t_ok][-1]) if t_ok.any() else math.nan,
                         "last_step": float(steps[ok][-1]) if ok.any() else math.nan})
    return pd.DataFrame(rows)


def base_curve(c: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Inception's (steps, seeds x steps) of a `curves` result, None without it."""
    return c[BASE][:2] if BASE in c else None
