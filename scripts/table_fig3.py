"""Figure 3 of the paper from a fig2_* sweep: for each variant, the steps to reach the no-BN
Inception's best accuracy, the best accuracy and its step, and the speed-up over Inception,
beside the paper's numbers. Writes DIR/fig3.csv and DIR/fig3.md (or prints the Markdown).

    python scripts/table_fig3.py outputs/results/fig2_fashion_mnist --out results/fig2_fashion_mnist

The threshold is the maximum of Inception's seed-mean accuracy curve; each variant's steps are
the first step where its seed-mean curve reaches it. Reads metrics.csv, summary.json and
provenance.json only; diverged and unfinished runs are counted and reported, not dropped.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from bnrepro.paper import FIG3, fig3_order
from bnrepro.results import curve, load_metrics, load_runs, provenance_lines

def table(sweep_dir: Path) -> tuple[pd.DataFrame, float]:
    acc = curve(load_metrics(sweep_dir), "test", "accuracy")
    runs = load_runs(sweep_dir)
    base = acc[acc.variant == "inception"]
    threshold = float(base["mean"].max()) if len(base) else math.nan
    rows = []
    for variant in fig3_order(runs.variant):
        c = acc[acc.variant == variant].sort_values("step")
        status = runs[runs.variant == variant].status.value_counts()
        reached = c[c["mean"] >= threshold]
        best = c.loc[c["mean"].idxmax()] if len(c) else None
        name, paper_steps, paper_max, paper_speedup = FIG3.get(variant, (variant, "", "", ""))
        rows.append({
            "variant": variant, "name": name,
            "completed": int(status.get("completed", 0)), "diverged": int(status.get("diverged", 0)),
            "running": int(status.get("running", 0)), "failed": int(status.get("failed", 0)),
            "steps_to_threshold": float(reached.step.iloc[0]) if len(reached) else math.nan,
            "best_accuracy": float(best["mean"]) if best is not None else math.nan,
            "best_step": float(best["step"]) if best is not None else math.nan,
            "paper_steps": paper_steps, "paper_max_accuracy": paper_max, "paper_speedup": paper_speedup,
        })
    frame = pd.DataFrame(rows)
    base_steps = frame.loc[frame.variant == "inception", "steps_to_threshold"]
    frame["speedup"] = (float(base_steps.iloc[0]) if len(base_steps) else math.nan) / frame.steps_to_threshold
    return frame, threshold


def markdown(sweep_dir: Path, frame: pd.DataFrame, threshold: float) -> str:
    data = load_runs(sweep_dir).data.dropna().unique()
    lines = [f"# Figure 3 reproduced: {', '.join(map(str, data))}", "",
             f"Sweep: `{sweep_dir}`; threshold = the no-BN Inception's best seed-mean accuracy: "
             + (f"{threshold:.4f}." if not math.isnan(threshold) else "**missing: no `inception` runs in this sweep**."),
             "", *provenance_lines(sweep_dir), ""]
    lines += ["| model | runs | steps to threshold | speed-up | best accuracy (step) | paper: steps to 72.2% | "
              "paper: max accuracy | paper: speed-up |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in frame.itertuples():
        runs = f"{r.completed} ok" + "".join(f", {n} {k}" for k, n in
                                            (("diverged", r.diverged), ("running", r.running), ("failed", r.failed)) if n)
        if r.diverged and not r.completed:
            steps, speedup = "diverged", "-"
        else:
            steps = "never" if math.isnan(r.steps_to_threshold) else f"{r.steps_to_threshold:,.0f}"
            speedup = "-" if math.isnan(r.speedup) else f"{r.speedup:.1f}x"
        best = "n/a" if math.isnan(r.best_accuracy) else f"{r.best_accuracy:.4f} ({r.best_step:,.0f})"
        lines.append(f"| {r.name} | {runs} | {steps} | {speedup} | {best} | {r.paper_steps} | {r.paper_max_accuracy} | "
                     f"{r.paper_speedup} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="directory for fig3.csv and fig3.md (default: print the Markdown)")
    args = parser.parse_args()
    frame, threshold = table(args.sweep_dir)
    text = markdown(args.sweep_dir, frame, threshold)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out / "fig3.csv", index=False)
        (args.out / "fig3.md").write_text(text)
        print(f"wrote {args.out / 'fig3.csv'} and {args.out / 'fig3.md'}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
