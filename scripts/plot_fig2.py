"""Figure 2 of the paper from a fig2_* sweep: validation accuracy (the `val` split; sweeps made
before it existed: test) against training steps, on a log axis (the evaluations are log-spaced), for
every variant present (mean line and +/- 1 std band over seeds, n seeds in the legend), with the
reference level (the no-BN Inception's validation plateau minus bnrepro.analysis.fig3.TOLERANCE: the
paper's line is Inception's maximum) as a dotted line.

    python scripts/plot_fig2.py outputs/results/fig2_fashion_mnist --out results/fig2_fashion_mnist
    (writes fig2.png and fig2.pdf into --out, default the sweep directory)

Variants come in the paper's order, then any unknown ones. Reads metrics only (through
bnrepro.analysis.results); plots whatever exists: unfinished runs as far as they got, and a diverged
variant up to its last evaluation, "diverged" in the legend, and on top of every other curve an x
where each of its runs diverged (that step, at the run's last accuracy) with the steps written
beside it: a diverged Inception-x5 near chance would otherwise hide under Inception-Sigmoid. The threshold and
the run counts are the ones scripts/table_fig3.py reports.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import mean_band, plt, save
from bnrepro.analysis import fig3
from bnrepro.analysis.results import curve, diverged_at, is_diverged, load_metrics, load_runs, run_status
from bnrepro.paper import fig3_name, fig3_order


def legend_label(variant: str, counts) -> str:
    label = f"{fig3_name(variant)} (n={int(counts.sum())}"
    if is_diverged(counts):
        return label + ", diverged)"
    return label + (f", {int(counts['diverged'])} diverged)" if counts["diverged"] else ")")


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = load_metrics(sweep_dir)
    split = "val" if (metrics.split == "val").any() else "test"
    acc = curve(metrics, split, "accuracy")
    runs = load_runs(sweep_dir)
    counts = run_status(metrics, runs)
    logged = set(metrics.run[(metrics.name == "diverged") & (metrics.value == 1)])
    diverged = runs[(runs.status == "diverged") | runs.run.isin(logged)]
    acc_runs = metrics[(metrics.split == split) & (metrics.name == "accuracy")]
    stopped = diverged_at(metrics)
    marks = 0
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    for variant in fig3_order(acc.variant.unique()):
        rows = acc[acc.variant == variant].sort_values("step")
        mean_band(ax, rows, legend_label(variant, counts.loc[variant]), alpha=0.15)
        colour = ax.lines[-1].get_color()
        ends = []
        for run in diverged[diverged.variant == variant].run:  # each diverged run's last evaluation, on top
            last = acc_runs[acc_runs.run == run].sort_values("step").tail(1)
            if len(last):  # at the step it diverged (fig3.md's), else its last evaluation, at its last accuracy
                step = stopped.get(run, float(last.step.iloc[0]))
                ends.append((step, float(last.value.iloc[0])))
                ax.plot([last.step.iloc[0], step], [ends[-1][1]] * 2, ":", color=colour, zorder=9)
                ax.plot(*ends[-1], "x", color=colour, ms=10, mew=2.5, zorder=10)
        if ends:
            steps = ", ".join(f"{s:,.0f}" for s, _ in sorted(ends))
            ax.annotate(f"{fig3_name(variant)}: {len(ends)} runs diverged, at step {steps}", max(ends),
                        xytext=(8, 14 + 12 * marks), textcoords="offset points", fontsize=7, color=colour,
                        zorder=10, arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.6})
            marks += 1
    base = fig3.base_curve(fig3.curves(metrics, split))
    threshold = fig3.reference(base) if base is not None else math.nan
    if not math.isnan(threshold):
        ax.axhline(threshold, color="grey", linestyle=":",
                   label=f"reference: Inception's plateau - {100 * fig3.TOLERANCE:g} pt ({100 * threshold:.2f}%)")
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    name = "validation" if split == "val" else "test"
    # the protocol the runs were trained under (configs/experiment/<name>.yaml), so v1 and v2 are told apart
    protocol = ", ".join(map(str, metrics.experiment.dropna().unique())) if "experiment" in metrics else ""
    ax.set(xlabel="training steps", ylabel=f"{name} accuracy (split: {split})", xscale="log",
           title=f"Figure 2 at CPU scale: {data}, {name} accuracy" + (f"\n(experiment={protocol})" if protocol else ""))
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper")  # beside the axes: curves end bottom right
    return save(fig, out_dir / "fig2.png", out_dir / "fig2.pdf")


main = command(__doc__, plot, "directory for fig2.png and fig2.pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
