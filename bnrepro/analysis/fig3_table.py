"""Figure 3's tables as data (scripts/table_fig3.py renders them; scripts/table_fig2_decay.py reads the same
rows for its ablation): per variant, the steps to the reference level and the speed-up over Inception with
95% t intervals (bnrepro.analysis.stats), the plateau, best validation accuracy and test accuracy there and
at the end, whether the plateau rule held, and the paper's numbers; the speed-up along the ladder of levels
(fig3.LADDER, and protocol v2's rungs relative to Inception's plateau); one row per run. No torch, no Hydra.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import fig3, fulltest
from bnrepro.analysis.results import (BASE, STATUSES, diverged_at, divergence_kinds, is_diverged, load_metrics,
                                      load_runs, run_status)
from bnrepro.analysis.stats import crossing, interval, mean_curve, mean_interval
from bnrepro.paper import FIG3, fig3_name, fig3_order

PAPER_WORDS = ("never", "diverged", "chance")
COLUMNS = ["variant", "name", *STATUSES, "outcome", "divergence", "split", "threshold", "steps_to_threshold",
           "steps_ci_low", "steps_ci_high", "speedup", "speedup_ci_low", "speedup_ci_high", "plateau_val_accuracy",
           "plateau_ci_low", "plateau_ci_high", "best_val_accuracy",
           "best_val_step", "near_best_step", "test_at_best_val", "final_test_accuracy", "last_step", "plateau_gain",
           "plateau_held",
           "paper_steps_to_threshold", "paper_max_accuracy", "paper_speedup", "paper_note"]


def paper_numbers(variant: str) -> dict[str, float | str]:
    """bnrepro.paper.FIG3's strings as numbers (accuracy as a fraction, like ours); its words in paper_note."""
    def number(text: str, scale: float = 1.0) -> float:
        try:
            return float(text.rstrip("%x")) * scale
        except ValueError:
            return math.nan

    _, steps, best, speedup = FIG3.get(variant, (variant, "", "", ""))
    return {"paper_steps_to_threshold": number(steps), "paper_max_accuracy": number(best, 0.01),
            "paper_speedup": number(speedup), "paper_note": next((w for w in (steps, best) if w in PAPER_WORDS), "")}


def variant_row(variant: str, val: dict, test: dict, counts: pd.Series) -> dict[str, object]:
    steps, g, _ = val.get(variant, (np.empty(0), np.empty((0, 0)), []))
    base = fig3.base_curve(val)
    threshold = fig3.reference(base) if base else math.nan
    best, best_step = fig3.best_of(steps, g)
    plateau = mean_interval(fig3.seed_plateaus(steps, g)) if len(steps) else mean_interval([])
    t_steps, t, _ = test.get(variant, (np.empty(0), np.empty((0, 0)), []))
    t_mean = mean_curve(t)
    row = {"variant": variant, "name": fig3_name(variant), **counts.astype(int).to_dict(), "split": fig3.SPLIT,
           "threshold": threshold, **dict(zip(("plateau_val_accuracy", "plateau_ci_low", "plateau_ci_high"), plateau)),
           "best_val_accuracy": best, "best_val_step": best_step,
           # On a plateau the step of the maximum is nearly arbitrary: where the curve came within the
           # plateau tolerance of it says when the plateau began.
           "near_best_step": crossing(steps, mean_curve(g), best - fig3.PLATEAU_GAIN) if len(steps) else math.nan,
           "test_at_best_val": fig3.value_at(t_steps, t, best_step),
           "final_test_accuracy": float(t_mean[np.isfinite(t_mean)][-1]) if np.isfinite(t_mean).any() else math.nan,
           "last_step": float(steps[np.isfinite(mean_curve(g))][-1]) if len(steps) else math.nan,
           "plateau_gain": fig3.plateau_gain(steps, g), **paper_numbers(variant)}
    row["plateau_held"] = bool(row["plateau_gain"] < fig3.PLATEAU_GAIN) if not math.isnan(row["plateau_gain"]) else None
    nan3 = (math.nan,) * 3
    if base is None or not len(steps):
        s, sp = nan3, nan3
    elif variant == BASE:  # its own seeds set both the level and the steps
        s, sp = interval([g], fig3.steps_to(base, None), log=True), (1.0, 1.0, 1.0)
    else:
        s = interval([base[1], g], fig3.steps_to(base, (steps, g)), log=True)
        sp = interval([base[1], g], fig3.speedup(base, (steps, g)), log=True)
    row.update(zip(("steps_to_threshold", "steps_ci_low", "steps_ci_high"), s))
    row.update(zip(("speedup", "speedup_ci_low", "speedup_ci_high"), sp))
    row["outcome"] = ("diverged" if is_diverged(counts) else "no accuracy yet" if math.isnan(best)
                      else "no threshold" if math.isnan(threshold) else
                      "never" if math.isnan(row["steps_to_threshold"]) else "reached")
    if row["outcome"] != "reached":  # a diverged variant's early accuracy is no speed-up
        row.update(dict.fromkeys(("steps_to_threshold", "steps_ci_low", "steps_ci_high", "speedup", "speedup_ci_low",
                                  "speedup_ci_high"), math.nan))
    return row


def ladder(val: dict, order: list[str], relative: tuple[float, ...] = ()) -> pd.DataFrame:
    """Per variant and level (fig3.LADDER's fixed accuracies, then Inception's plateau minus each `relative`
    tolerance (protocol v2), then the reference level): the steps to it and the speed-up over Inception at
    it, with intervals; NaN where the variant (or Inception) never gets there."""
    base = fig3.base_curve(val)
    rows = []
    for variant in (v for v in order if v in val and base is not None):
        steps, g, _ = val[variant]
        for level, tol in (*((l, None) for l in fig3.LADDER), *((None, t) for t in relative), (None, fig3.TOLERANCE)):
            at = fig3.plateau_of(*base) - tol if level is None else level
            if variant == BASE:
                s, sp = interval([g], fig3.steps_to(base, None, level, tol), log=True), (1.0, 1.0, 1.0)
            else:
                s = interval([base[1], g], fig3.steps_to(base, (steps, g), level, tol), log=True)
                sp = interval([base[1], g], fig3.speedup(base, (steps, g), level, tol), log=True)
            rows.append({"variant": variant, "level": at, "reference": tol == fig3.TOLERANCE,
                         **dict(zip(("steps", "steps_ci_low", "steps_ci_high"), s)),
                         **dict(zip(("speedup", "speedup_ci_low", "speedup_ci_high"), sp)),
                         **({"tolerance": tol if level is None else math.nan} if relative else {})})
    return pd.DataFrame(rows, columns=["variant", "level", "reference", "steps", "steps_ci_low", "steps_ci_high",
                                       "speedup", "speedup_ci_low", "speedup_ci_high",
                                       *(["tolerance"] if relative else [])])


def tables(sweep_dir: Path, relative: tuple[float, ...] = ()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One row per variant present, in the paper's order (COLUMNS), one per variant and ladder level (with
    the `relative` rungs of protocol v2), and one row per run (with protocol v2's whole-test-split columns
    where any run has them: bnrepro.analysis.fulltest)."""
    metrics = load_metrics(sweep_dir)
    runs = load_runs(sweep_dir)
    counts = run_status(metrics, runs)
    if counts.empty:
        raise ValueError(f"No run under {sweep_dir} names its variant in config.yaml.")
    val, test = fig3.curves(metrics, fig3.SPLIT), fig3.curves(metrics, "test")
    frame = pd.DataFrame([variant_row(v, val, test, counts.loc[v]) for v in fig3_order(counts.index)])
    kinds = frame.variant.map(divergence_kinds(runs)).astype(object)  # all-NaN without a divergence
    frame["divergence"] = kinds.where(kinds.notna(), "").where(frame.outcome == "diverged", "")
    seeds = fig3.per_seed(metrics, float(frame.threshold.iloc[0]))
    logged = set(metrics.run[(metrics.name == "diverged") & (metrics.value == 1)])  # as run_status counts them
    runs = runs.assign(status=runs.status.mask(runs.run.isin(logged), "diverged"))
    seeds = seeds.merge(runs[["run", "seed", "status", "divergence"]], on="run", how="left")
    seeds["diverged_step"] = seeds.run.map(diverged_at(metrics))  # fig2.png marks the same step
    order = {v: i for i, v in enumerate(frame.variant)}
    seeds = seeds.sort_values(["variant", "seed"], key=lambda c: c.map(order) if c.name == "variant" else c)
    steps = ladder(val, [v for v in frame.variant if v in frame.variant[frame.outcome != "diverged"].tolist()],
                   relative)
    full = fulltest.per_run(sweep_dir, seeds.run)
    extra = list(full.columns[1:]) if fulltest.present(full) else []
    seeds = seeds.merge(full, on="run", how="left") if extra else seeds
    return frame[COLUMNS], steps, seeds[["variant", "seed", "status", "divergence", "steps_to_threshold",
                                         "plateau_val_accuracy", "best_val_accuracy", "best_val_step", "test_at_best_val",
                                         "final_test_accuracy", "last_step", "diverged_step", *extra,
                                         "run"]]


def pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def bracket(value: float, lo: float, hi: float, fmt: str) -> str:
    """value [lo, hi]; `unbounded` where the seeds cannot bound it (one seed, or a never among the left-out)."""
    if math.isnan(value):
        return "-"
    if math.isnan(lo):
        return f"{value:{fmt}}"
    if math.isinf(lo) or math.isinf(hi):
        return f"{value:{fmt}} [unbounded]"
    return f"{value:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"
