"""Figure 2 of the paper from a fig2_* sweep: validation accuracy against training steps for
every variant present (mean line and +/- 1 std band over seeds, n seeds in the legend), with the
no-BN Inception's best seed-mean accuracy as a dotted line, as in the paper.

    python scripts/plot_fig2.py outputs/results/fig2_fashion_mnist --out results/fig2_fashion_mnist
    (writes fig2.png and fig2.pdf into --out, default the sweep directory)

Variants come in the paper's order, then any unknown ones. Reads metrics only (through
bnrepro.analysis.results); plots whatever exists: unfinished runs as far as they got, and a diverged
variant up to where it stopped, marked with an x and "diverged" in the legend. The threshold and
the run counts are the ones scripts/table_fig3.py reports.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import mean_band, plt, save
from bnrepro.analysis.results import curve, is_diverged, load_metrics, load_runs, run_status, threshold_of
from bnrepro.paper import fig3_name, fig3_order


def legend_label(variant: str, counts) -> str:
    label = f"{fig3_name(variant)} (n={int(counts.sum())}"
    if is_diverged(counts):
        return label + ", diverged)"
    return label + (f", {int(counts['diverged'])} diverged)" if counts["diverged"] else ")")


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = load_metrics(sweep_dir)
    acc = curve(metrics, "test", "accuracy")
    counts = run_status(metrics, load_runs(sweep_dir))
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    for variant in fig3_order(acc.variant.unique()):
        rows = acc[acc.variant == variant].sort_values("step")
        mean_band(ax, rows, legend_label(variant, counts.loc[variant]), alpha=0.15)
        if is_diverged(counts.loc[variant]):  # where its last evaluation was, before the loss blew up
            ax.plot(rows.step.iloc[-1:], rows["mean"].iloc[-1:], "x", color=ax.lines[-1].get_color(), ms=9)
    threshold = threshold_of(acc)
    if not math.isnan(threshold):
        ax.axhline(threshold, color="grey", linestyle=":", label=f"Inception's best ({threshold:.4f})")
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    ax.set(xlabel="training steps", ylabel="validation accuracy", title=f"Figure 2 reproduced: {data}")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper")  # beside the axes: curves end bottom right
    return save(fig, out_dir / "fig2.png", out_dir / "fig2.pdf")


main = command(__doc__, plot, f"directory for fig2.png and fig2.pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
