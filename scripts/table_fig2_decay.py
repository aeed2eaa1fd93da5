"""Figure 3's question at a slower decay: do BN-x5 and BN-x30 reach the no-BN Inception's reference
level (its validation plateau minus fig3.TOLERANCE) when their rate decays 3x (or 2x) faster than Inception's instead of the
paper's 6x? (At 6x, by our 2,667 steps the rate is at 0.2% of its start and BN-x30 never gets there:
results/fig2_fashion_mnist/fig3.md.) An ablation beside the paper's protocol, not a change to it:
the threshold, Inception's steps and the 6x rows are read from the Figure 3 sweep (--base), by
bnrepro.analysis.fig3's protocol (validation split, log-interpolated crossings, 95% t intervals over
seeds, Inception's seeds left out too).

    python scripts/table_fig2_decay.py outputs/results/fig2_decay_fashion_mnist \
        --base outputs/results/fig2_fashion_mnist --out results/fig2_decay_fashion_mnist
    (writes decay.csv (one row per variant and decay), decay_seeds.csv (one row per run) and
    decay.md into --out; without --out, prints the Markdown)
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bnrepro.analysis import fig3
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.fig3_table import bracket, pct, variant_row  # Figure 3's rows, by the same code
from bnrepro.analysis.results import BASE, load_metrics, load_runs, provenance_lines, run_status
from bnrepro.analysis.sweeps import wall_times
from bnrepro.paper import fig3_name

KEY = "optim.lr_decay_speedup"
VARIANTS = ("bn_x5", "bn_x30")
COLUMNS = ["threshold", "outcome", "steps_to_threshold", "steps_ci_low", "steps_ci_high", "speedup", "speedup_ci_low",
           "speedup_ci_high", "best_val_accuracy", "best_val_step", "test_at_best_val", "final_test_accuracy",
           "last_step", "plateau_gain"]  # of fig3_table.variant_row's


def labelled(frame: pd.DataFrame, where: Path, ablated: bool) -> pd.DataFrame:
    """The rows (metrics or runs) of `VARIANTS`; an ablation's variants named with their decay
    speedup ("bn_x30@3"), the Figure 3 sweep's kept as they are, so that their rows and intervals
    are fig3.md's own."""
    frame = frame[frame.variant.isin(VARIANTS)]
    if frame.empty or frame[KEY].isna().any():
        raise FileNotFoundError(f"No BN-x5 or BN-x30 run with {KEY} in its config.yaml under {where}.")
    if not ablated:
        return frame
    return frame.assign(variant=frame.variant + "@" + frame[KEY].map(lambda k: f"{float(k):g}"))


def both(load, sweep_dir: Path, base: Path) -> pd.DataFrame:
    """`load`'s rows (load_metrics or load_runs): the Figure 3 sweep's Inception and BN-x5/x30, and the ablation's."""
    reference = load(base, keys=(KEY,))
    return pd.concat([reference[reference.variant == BASE], labelled(reference, base, False),
                      labelled(load(sweep_dir, keys=(KEY,)), sweep_dir, True)], ignore_index=True)


def or_outcome(row, text: str) -> str:
    return text if row.outcome == "reached" else row.outcome


def tables(sweep_dir: Path, base: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics, runs = both(load_metrics, sweep_dir, base), both(load_runs, sweep_dir, base)
    val, test = fig3.curves(metrics), fig3.curves(metrics, "test")
    if BASE not in val:
        raise FileNotFoundError(f"No no-BN Inception (variant={BASE}) with a validation curve under {base}.")
    decay = runs.groupby("variant")[KEY].first().astype(float)
    counts = run_status(metrics, runs)
    inception = fig3.base_curve(val)
    inception_steps = fig3.steps_to(inception, None)([inception[1]])
    rows = []
    for label in (v for v in val if v != BASE):
        variant, row = label.split("@")[0], variant_row(label, val, test, counts.loc[label])
        rows.append({"variant": variant, "name": fig3_name(variant), "decay_speedup": decay[label],
                     "sweep": str(sweep_dir if "@" in label else base), "seeds": len(val[label][2]),
                     "inception_steps": inception_steps, **{k: row[k] for k in COLUMNS}})
    order = lambda c: c.map(VARIANTS.index) if c.name == "variant" else -c if c.name == "decay_speedup" else c  # noqa: E731
    frame = pd.DataFrame(rows).sort_values(["variant", "decay_speedup"], key=order, ignore_index=True)
    seeds = fig3.per_seed(metrics[metrics.variant != BASE], float(frame.threshold.iloc[0]))
    seeds = seeds.assign(decay_speedup=seeds.variant.map(decay), variant=seeds.variant.str.split("@").str[0],
                         seed=seeds.run.str.extract(r"seed=(\d+)$", expand=False).astype(float))
    seeds = seeds.sort_values(["variant", "decay_speedup", "seed"], key=order)
    return frame, seeds[["variant", "decay_speedup", "seed", "steps_to_threshold", "best_val_accuracy", "best_val_step",
                         "test_at_best_val", "final_test_accuracy", "last_step", "run"]]


def markdown(sweep_dir: Path, base: Path, frame: pd.DataFrame, seeds: pd.DataFrame) -> str:
    summed, elapsed = wall_times(sweep_dir)
    threshold, inception_steps = frame.threshold.iloc[0], frame.inception_steps.iloc[0]
    lines = ["# BN-x5 and BN-x30 at a slower learning-rate decay (an ablation of Figure 3)", "",
             f"Sweep: `{sweep_dir}`; reference level, Inception and the 6x rows: `{base}`.", "",
             f"Reference level: {pct(threshold)}, the no-BN Inception's seed-mean validation plateau minus "
             f"{100 * fig3.TOLERANCE:.1f} point (as in fig3.md), reached at step {inception_steps:,.0f}. Decay: the rate is multiplied by 0.9 every 250 / k steps for k x "
             "faster than Inception (the paper's k = 6), each run's budget the schedule's 16,000 / k steps. "
             "Steps to the reference and speed-up as in fig3.md, [95% t intervals over seeds]. "
             "Test accuracy is reported, never used to choose.", "",
             *provenance_lines(sweep_dir),
             f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
             f"{summed / 60:.1f} min summed over processes.", "",
             "| model | decay | seeds | steps run | steps to reference | speed-up | best val (step) | test there "
             "| final test | plateau gain, last 25% |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in frame.itertuples():
        lines.append(f"| {r.name} | {r.decay_speedup:g}x{' (paper)' if r.decay_speedup == 6 else ''} | {r.seeds} "
                     f"| {r.last_step:,.0f} | {or_outcome(r, bracket(r.steps_to_threshold, r.steps_ci_low, r.steps_ci_high, ',.0f'))} "
                     f"| {or_outcome(r, bracket(r.speedup, r.speedup_ci_low, r.speedup_ci_high, '.1f') + 'x')} "
                     f"| {pct(r.best_val_accuracy)} ({r.best_val_step:,.0f}) | {pct(r.test_at_best_val)} "
                     f"| {pct(r.final_test_accuracy)} | +{100 * r.plateau_gain:.2f} pts |")
    lines += ["", "Per seed (decay_seeds.csv):", "",
              "| model | decay | seed | steps to reference | best val (step) | test there | final test |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in seeds.itertuples():
        reached = "never" if math.isnan(r.steps_to_threshold) else f"{r.steps_to_threshold:,.0f}"
        lines.append(f"| {fig3_name(r.variant)} | {r.decay_speedup:g}x | {r.seed:.0f} | {reached} "
                     f"| {pct(r.best_val_accuracy)} ({r.best_val_step:,.0f}) | {pct(r.test_at_best_val)} "
                     f"| {pct(r.final_test_accuracy)} |")
    return "\n".join(lines) + "\n"


def write(sweep_dir: Path, out: Path | None, base: Path) -> str | list[Path]:
    frame, seeds = tables(sweep_dir, base)
    text = markdown(sweep_dir, base, frame, seeds)
    return text if out is None else write_files(out, {"decay.csv": frame, "decay_seeds.csv": seeds, "decay.md": text})


main = command(__doc__, write, "directory for decay.csv, decay_seeds.csv and decay.md (default: print the Markdown)",
               options=[(("--base",), {"type": Path, "required": True,
                                       "help": "the Figure 3 sweep: its Inception gives the threshold, its 6x runs a row"})])

if __name__ == "__main__":
    sys.exit(main())
