"""Figure 3 of the paper from a fig2_* sweep, by the protocol of bnrepro.analysis.fig3: for each
variant, the steps to reach the reference level (the no-BN Inception's seed-mean *validation* plateau
minus fig3.TOLERANCE) and the speed-up over Inception, each with its 95% t interval over seeds
(bnrepro.analysis.stats); the same speed-up along a ladder of fixed validation accuracies (fig3.LADDER);
the plateau level, best validation accuracy and its step, the test accuracy there and at the end; whether
the plateau rule held; the paper's numbers beside ours.

    python scripts/table_fig3.py outputs/results/fig2_fashion_mnist --out results/fig2_fashion_mnist
    (writes fig3.csv (one row per variant), fig3_ladder.csv (one row per variant and level),
    fig3_seeds.csv (one row per run) and fig3.md into --out; without --out, prints the Markdown)

A variant whose runs all diverged reads `diverged (dead|nonfinite)` (bnrepro/training/loop.py);
one that never reaches the threshold reads `never`. Unfinished runs count as far as they got.
Reads the runs through bnrepro.analysis only (metrics.csv, config.yaml, summary.json, provenance.json).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import fig3, fulltest
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.results import (BASE, STATUSES, diverged_at, divergence_kinds, is_diverged, load_metrics,
                                      load_runs, provenance_lines, run_status)
from bnrepro.analysis.stats import crossing, interval, mean_curve, mean_interval
from bnrepro.analysis.sweeps import wall_times
from bnrepro.paper import FIG3, fig3_name, fig3_order

PAPER_WORDS = ("never", "diverged", "chance")
NO_BN = ("inception", "inception_sigmoid")  # the plateau rule is required of these
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


def ladder_lines(steps: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """The ladder as a Markdown table: a row per variant, a column per level, the speed-up in each cell."""
    if steps.empty:
        return []
    levels = steps.drop_duplicates("level").sort_values("reference", kind="stable")
    tols = levels.tolerance if "tolerance" in levels else [math.nan] * len(levels)
    head = [pct(l) + (" (reference)" if r else f" (plateau - {100 * t:.1f} pts)" if not math.isnan(t) else "")
            for l, r, t in zip(levels.level, levels.reference, tols)]
    lines = ["Speed-up over Inception at fixed validation accuracies (fig3_ladder.csv; Inception's steps to the "
             "level / the variant's, each on its seed-mean curve, [95% t interval]; `never`: the variant's seed-mean "
             "curve does not get there, `-`: Inception's does not):", "",
             "| model | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for variant, g in steps.groupby("variant", sort=False):
        cells = []
        for r in g.itertuples():
            if math.isnan(r.steps):
                cells.append("never")
            elif math.isnan(r.speedup):
                cells.append("-")
            else:
                cells.append(bracket(r.speedup, r.speedup_ci_low, r.speedup_ci_high, ".1f") + "x")
        lines.append(f"| {fig3_name(variant)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(sweep_dir: Path, frame: pd.DataFrame, steps: pd.DataFrame, seeds: pd.DataFrame) -> str:
    records = load_runs(sweep_dir)
    data = ", ".join(map(str, records.data.dropna().unique())) or "unknown data set"
    threshold = float(frame.threshold.iloc[0])
    summed, elapsed = wall_times(sweep_dir)
    provenance = provenance_lines(sweep_dir) + [
        f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
        f"{summed / 60:.1f} min summed over processes."]
    totals = ", ".join(f"{int(frame[s].sum())} {s}" for s in STATUSES if frame[s].sum())
    base = frame[frame.variant == BASE]
    plateau = ("" if base.empty or base.plateau_gain.isna().all() else
               f"Plateau rule (Inception's seed-mean best rises by < {100 * fig3.PLATEAU_GAIN:.1f} points over the last "
               f"{100 * fig3.PLATEAU_FRACTION:.0f}% of its steps): **{'held' if base.plateau_held.iloc[0] else 'NOT held'}** "
               f"(+{100 * base.plateau_gain.iloc[0]:.2f} points over steps "
               f"{(1 - fig3.PLATEAU_FRACTION) * base.last_step.iloc[0]:,.0f}-{base.last_step.iloc[0]:,.0f}).")
    if plateau:
        stopped = [v for v in frame.variant if (records.stopped[records.variant == v] == "plateau").any()]
        if BASE in stopped:
            plateau += " Inception stopped there, at the first evaluation where the rule held (trainer.stop_at_plateau)."
        if others := [fig3_name(v) for v in stopped if v != BASE]:
            names = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} and {others[-1]}"
            plateau += (f" So did {names}, each where the rule first held on its own seed-mean curve "
                        "(steps run: below).")
    tol = 100 * fig3.TOLERANCE
    lines = [f"# Figure 3 at CPU scale: {data}", "",
             f"Sweep: `{sweep_dir}`; data set: {data}; {int(frame[list(STATUSES)].sum().sum())} runs ({totals}).", "",
             "**Reference level missing: no `inception` (no-BN) accuracy in this sweep, so there are no steps to "
             "threshold or speed-ups; plateau levels only.**" if math.isnan(threshold) else
             f"Reference level: {pct(threshold)}, the no-BN Inception's seed-mean **validation** plateau "
             f"({pct(threshold + fig3.TOLERANCE)}: its mean over the last {100 * fig3.PLATEAU_FRACTION:.0f}% of its "
             f"steps) minus {tol:.1f} point{'s' if tol != 1 else ''} (the paper's threshold is Inception's maximum, "
             "72.2%; a maximum of a few noisy seed curves moves with every evaluation's noise). Steps to it: where a "
             "variant's seed-mean validation curve first reaches it, interpolated in log(step) between evaluations; "
             "speed-up: Inception's steps to it / the variant's; [95% t intervals over seeds] (bnrepro.analysis.stats: "
             "leave-one-seed-out jackknife, Inception's seeds left out too). A stopped run keeps its last accuracy, "
             "a diverged one counts at chance. Test accuracy is reported, never used to choose.", "",
             *([plateau, ""] if plateau else []),
             *provenance, "",
             "| model | runs | steps run | steps to reference | speed-up | val plateau [95%] | best val (step) | "
             "test there | final test | plateau gain, last 25% | paper: steps to 72.2% | paper: max accuracy | "
             "paper: speed-up |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in frame.itertuples():
        runs = ", ".join(f"{getattr(r, s)} {s}" for s in STATUSES if getattr(r, s))
        reached = r.outcome == "reached"
        steps_cell = (bracket(r.steps_to_threshold, r.steps_ci_low, r.steps_ci_high, ",.0f") if reached else
                      f"diverged ({r.divergence})" if r.outcome == "diverged" and r.divergence else r.outcome)
        speedup = "never" if r.outcome == "never" else (  # as the scorecard shows a speed-up of 0
            bracket(r.speedup, r.speedup_ci_low, r.speedup_ci_high, ".1f") + ("x" if reached else ""))
        level = ("n/a" if math.isnan(r.plateau_val_accuracy) else
                 bracket(100 * r.plateau_val_accuracy, 100 * r.plateau_ci_low, 100 * r.plateau_ci_high, ".2f") + "%")
        best = "n/a" if math.isnan(r.best_val_accuracy) else f"{pct(r.best_val_accuracy)} ({r.best_val_step:,.0f})"
        gain = "-" if math.isnan(r.plateau_gain) else (
            f"+{100 * r.plateau_gain:.2f} pts ({'held' if r.plateau_held else 'not held'})")
        paper = FIG3.get(r.variant, (r.name, "-", "-", "-"))[1:]
        last = "-" if math.isnan(r.last_step) else f"{r.last_step:,.0f}"
        lines.append(f"| {r.name} | {runs} | {last} | {steps_cell} | {speedup} | {level} | {best} | "
                     f"{pct(r.test_at_best_val)} | {pct(r.final_test_accuracy)} | {gain} | {' | '.join(paper)} |")
    lines += ["", *ladder_lines(steps, frame),
              "Per seed (fig3_seeds.csv): each run's own steps to the reference level, its plateau and best validation "
              "accuracy (step).", "",
              "| model | seed | steps to reference | val plateau | best val (step) | test there | final test |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in seeds.itertuples():
        at = r.last_step if math.isnan(r.diverged_step) else r.diverged_step
        status = f"diverged ({r.divergence}) at {at:,.0f}" if r.status == "diverged" else (
            "never" if math.isnan(r.steps_to_threshold) else f"{r.steps_to_threshold:,.0f}")
        best = "n/a" if math.isnan(r.best_val_accuracy) else f"{pct(r.best_val_accuracy)} ({r.best_val_step:,.0f})"
        lines.append(f"| {fig3_name(r.variant)} | {r.seed} | {status} | {pct(r.plateau_val_accuracy)} | {best} | "
                     f"{pct(r.test_at_best_val)} | {pct(r.final_test_accuracy)} |")
    return "\n".join([*lines, *full_test_lines(frame, seeds)]) + "\n"


def full_test_lines(frame: pd.DataFrame, seeds: pd.DataFrame) -> list[str]:
    """Protocol v2's whole test split (bnrepro.analysis.fulltest): per variant the seed-mean test accuracy of
    the final model and of each run's best-validation model, then per run; nothing for a sweep without them."""
    if "full_test_size" not in seeds:
        return []
    size = seeds.full_test_size.dropna()
    lines = ["", f"Whole test split ({size.max():,.0f} images; protocol v2, trainer.final_test): test accuracy of each "
             "run's final model and of its best-validation model (best_val.pt, chosen on the validation split), "
             "seed mean [95% t interval over seeds] (fig3_seeds.csv per run).", "",
             "| model | final model | best-validation model |", "| --- | --- | --- |"]
    for variant in frame.variant:
        g = seeds[seeds.variant == variant]
        lines.append(f"| {fig3_name(variant)} | {fulltest.cell(g.final_full_test_accuracy)} | "
                     f"{fulltest.cell(g.best_val_full_test_accuracy)} |")
    lines += ["", "| model | seed | final model | best-validation model (step) |", "| --- | --- | --- | --- |"]
    for r in seeds.itertuples():
        step = "" if math.isnan(r.best_val_full_step) else f" ({r.best_val_full_step:,.0f})"
        lines.append(f"| {fig3_name(r.variant)} | {r.seed} | {fulltest.one(r.final_full_test_accuracy)} | "
                     f"{fulltest.one(r.best_val_full_test_accuracy)}{step} |")
    return lines


def write(sweep_dir: Path, out: Path | None, v2: bool = False) -> str | list[Path]:
    """The Markdown printed, or fig3.csv, fig3_seeds.csv and fig3.md written into `out`. `v2`: protocol v2's
    reading (configs/experiment/fig2_v2_fashion_mnist.yaml): the ladder also at fig3.V2_RELATIVE."""
    frame, steps, seeds = tables(sweep_dir, fig3.V2_RELATIVE if v2 else ())
    text = markdown(sweep_dir, frame, steps, seeds)
    return text if out is None else write_files(out, {"fig3.csv": frame, "fig3_ladder.csv": steps,
                                                      "fig3_seeds.csv": seeds, "fig3.md": text})


main = command(__doc__, write, "directory for fig3.csv, fig3_ladder.csv, fig3_seeds.csv and fig3.md "
                              "(default: print the Markdown)",
               options=[(("--v2",), {"action": "store_true",
                                     "help": "protocol v2 (issue 31): the ladder also at Inception's plateau minus "
                                             "0.3 and 0.5 points"})])

if __name__ == "__main__":
    sys.exit(main())
