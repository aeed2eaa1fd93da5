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

import pandas as pd

from bnrepro.analysis import fig3, fulltest
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.fig3_table import bracket, pct, tables
from bnrepro.analysis.results import BASE, STATUSES, load_runs, provenance_lines
from bnrepro.analysis.sweeps import wall_times
from bnrepro.paper import FIG3, fig3_name

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
