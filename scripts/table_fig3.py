"""Figure 3 of the paper from a fig2_* sweep: for each variant, the steps to reach the no-BN
Inception's best accuracy, the speed-up over Inception, and the best accuracy and its step,
beside the paper's numbers.

    python scripts/table_fig3.py outputs/results/fig2_fashion_mnist --out results/fig2_fashion_mnist
    (writes fig3.csv and fig3.md into --out; without --out, prints the Markdown)

Threshold: the maximum over steps of the `inception` variant's seed-mean validation accuracy
(the paper's 72.2%). Steps to threshold: the first step at which a variant's seed-mean curve is
>= the threshold ("never" if it is not; "diverged" if its runs diverged and none completed or is
still running). Speed-up: Inception's steps to threshold / the variant's. A seed-mean at a step
averages the seeds that reached that step, so unfinished runs count as far as they got.
A diverged variant says how (bnrepro/training/loop.py): "dead" (the logits stopped depending on the input)
or "nonfinite" (the loss overflowed). Reads the runs through bnrepro.analysis.results only (metrics.csv,
config.yaml, summary.json, provenance.json).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.sweeps import wall_times
from bnrepro.analysis.results import (BASE, STATUSES, curve, divergence_kinds, is_diverged, load_metrics, load_runs,
                                      provenance_lines, run_status, threshold_of)
from bnrepro.paper import FIG3, fig3_name, fig3_order

PAPER_WORDS = ("never", "diverged", "chance")
COLUMNS = ["variant", "name", *STATUSES, "outcome", "divergence", "threshold", "steps_to_threshold", "speedup",
           "best_accuracy", "best_step", "paper_steps_to_threshold", "paper_max_accuracy", "paper_speedup",
           "paper_note"]


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


def variant_row(variant: str, acc: pd.DataFrame, counts: pd.Series, threshold: float) -> dict[str, object]:
    acc = acc.sort_values("step")
    hit = acc[acc["mean"] >= threshold]
    best = acc.loc[acc["mean"].idxmax()] if acc["mean"].notna().any() else None
    outcome = ("diverged" if is_diverged(counts) else "no accuracy yet" if best is None
               else "no threshold" if math.isnan(threshold) else "reached" if len(hit) else "never")
    return {"variant": variant, "name": fig3_name(variant), **counts.astype(int).to_dict(), "outcome": outcome,
            "threshold": threshold, "steps_to_threshold": float(hit.step.iloc[0]) if outcome == "reached" else math.nan,
            "best_accuracy": math.nan if best is None else float(best["mean"]),
            "best_step": math.nan if best is None else float(best["step"]), **paper_numbers(variant)}


def table(sweep_dir: Path) -> pd.DataFrame:
    """One row per variant present, in the paper's order (then any others): COLUMNS."""
    metrics = load_metrics(sweep_dir)
    acc = curve(metrics, "test", "accuracy")
    runs = load_runs(sweep_dir)
    counts = run_status(metrics, runs)
    if counts.empty:
        raise ValueError(f"No run under {sweep_dir} names its variant in config.yaml.")
    threshold = threshold_of(acc)
    frame = pd.DataFrame([variant_row(v, acc[acc.variant == v], counts.loc[v], threshold)
                          for v in fig3_order(counts.index)])
    base = frame.steps_to_threshold[frame.variant == BASE]
    frame["speedup"] = (base.iloc[0] if len(base) else math.nan) / frame.steps_to_threshold
    frame["divergence"] = frame.variant.map(divergence_kinds(runs)).fillna("").where(frame.outcome == "diverged", "")
    return frame[COLUMNS]


def pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}%"


def markdown(sweep_dir: Path, frame: pd.DataFrame) -> str:
    data = ", ".join(map(str, load_runs(sweep_dir).data.dropna().unique())) or "unknown data set"
    threshold = float(frame.threshold.iloc[0])
    summed, elapsed = wall_times(sweep_dir)
    provenance = provenance_lines(sweep_dir) + [
        f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
        f"{summed / 60:.1f} min summed over runs."]
    totals = ", ".join(f"{int(frame[s].sum())} {s}" for s in STATUSES if frame[s].sum())
    lines = [f"# Figure 3 reproduced: {data}", "",
             f"Sweep: `{sweep_dir}`; data set: {data}; {int(frame[list(STATUSES)].sum().sum())} runs ({totals}).", "",
             "**Threshold missing: no `inception` (no-BN) accuracy in this sweep, so there are no steps to "
             "threshold or speed-ups; best accuracies only.**" if math.isnan(threshold) else
             f"Threshold: {pct(threshold)}, the no-BN Inception's best seed-mean validation accuracy (the paper's "
             "72.2%). Steps to threshold: the first step at which a variant's seed-mean accuracy reaches it; "
             "speed-up: Inception's steps / the variant's.", "",
             *provenance, *([""] if provenance else []),
             "| model | runs | steps to threshold | speed-up | best accuracy (step) | paper: steps to 72.2% "
             "| paper: max accuracy | paper: speed-up |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in frame.itertuples():
        runs = ", ".join(f"{getattr(r, s)} {s}" for s in STATUSES if getattr(r, s))
        steps = (f"{r.steps_to_threshold:,.0f}" if r.outcome == "reached" else
                 f"diverged ({r.divergence})" if r.outcome == "diverged" and r.divergence else r.outcome)
        speedup = "-" if math.isnan(r.speedup) else f"{r.speedup:.1f}x"
        best = "n/a" if math.isnan(r.best_accuracy) else f"{pct(r.best_accuracy)} ({r.best_step:,.0f})"
        paper = FIG3.get(r.variant, (r.name, "-", "-", "-"))[1:]
        lines.append(f"| {r.name} | {runs} | {steps} | {speedup} | {best} | {' | '.join(paper)} |")
    return "\n".join(lines) + "\n"


def write(sweep_dir: Path, out: Path | None) -> str | list[Path]:
    """The Markdown printed, or fig3.csv and fig3.md written into `out`."""
    frame = table(sweep_dir)
    text = markdown(sweep_dir, frame)
    return text if out is None else write_files(out, {"fig3.csv": frame, "fig3.md": text})


main = command(__doc__, write, "directory for fig3.csv and fig3.md (default: print the Markdown)")

if __name__ == "__main__":
    sys.exit(main())
