"""Santurkar et al. 2018's Figure 4 at our scale, from a why_landscape sweep: one figure, per
variant over training, along the gradient at (0.5 .. 4) x the learning rate (Sec. 3.2):
(a) the loss there: the band from its smallest to its largest value, seed means ("variation");
(b) the largest change of the gradient ("gradient predictiveness", smaller is more predictive);
(c) the effective beta-smoothness, the largest gradient change per distance moved.
Lines: the seed mean; bands in (b, c): the seeds' min to max.

    python scripts/plot_why_landscape.py outputs/results/why_landscape_fashion_mnist \
        --out results/why_landscape_fashion_mnist     (writes why_landscape.png and .pdf)

Reads metrics only (bnrepro.analysis.why).
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis import why
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, save


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = why.load(sweep_dir)
    rows = metrics[metrics.split == "landscape"]
    wide = rows.pivot_table(index=["variant", "seed", "step"], columns="name", values="value").reset_index()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    for v in why.variants(wide):
        w = wide[wide.variant == v]
        mean = w.groupby("step").mean(numeric_only=True).reset_index()
        line, = axes[0].plot(mean.step, mean.loss, label=f"{why.NAMES.get(v, v)} (n={w.seed.nunique()})")
        axes[0].fill_between(mean.step, mean.loss_min, mean.loss_max, alpha=0.3, color=line.get_color())
        for ax, column in zip(axes[1:], ("grad_change_max", "beta")):
            g = w.groupby("step")[column].agg(["mean", "min", "max"]).reset_index()
            ax.plot(g.step, g["mean"], color=line.get_color())
            ax.fill_between(g.step, g["min"], g["max"], alpha=0.2, color=line.get_color())
    titles = ["(a) loss along the gradient (band: its range)", "(b) gradient predictiveness: max ||grad change||",
              "(c) effective beta-smoothness"]
    for ax, title in zip(axes, titles):
        ax.set(xlabel="training step", title=title, yscale="log")
    axes[0].legend()
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    steps = sorted({float(n.split("_x")[1]) for n in rows.name.unique() if n.startswith("loss_x")})
    fig.suptitle(f"The landscape along the gradient (Santurkar et al. 2018, Fig. 4): {why.model_label(metrics)} on {data}, steps of "
                 f"{', '.join(f'{k:g}' for k in steps)} x lr, {wide.seed.nunique()} seeds")
    return save(fig, out_dir / "why_landscape.png", out_dir / "why_landscape.pdf")


main = command(__doc__, plot, "directory for why_landscape.png and .pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
