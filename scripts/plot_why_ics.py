"""Santurkar et al. 2018's Figure 3 at our scale, from a why_ics sweep: one figure, per variant
over training, the network's gradient-based internal covariate shift (Def. 2.1) averaged over its
layers but the first (which has no earlier layer):
(a) ||G - G'|| / ||G||, the change of a layer's gradient when the layers before it take their
    step, relative to the gradient (scale-free: BN changes the gradient's scale);
(b) 1 - cos(G, G'), 0 where the earlier layers' step leaves the gradient's direction alone;
(c) ||G - G'||, as the paper plots it.
Lines: the seed mean; bands: the seeds' min to max.

    python scripts/plot_why_ics.py outputs/results/why_ics_fashion_mnist --out results/why_ics_fashion_mnist
    (writes why_ics.png and .pdf)

Reads metrics only (bnrepro.analysis.why).
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis import why
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, save

PANELS = {"rel_diff": "(a) ||G - G'|| / ||G||", "one_minus_cos": "(b) 1 - cos(G, G')", "l2_diff": "(c) ||G - G'||"}


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = why.load(sweep_dir)
    net = why.ics_network(why.ics_steps(metrics))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(13, 4), layout="constrained")
    for ax, (column, title) in zip(axes, PANELS.items()):
        for v in why.variants(net):
            g = net[net.variant == v].groupby("step")[column].agg(["mean", "min", "max"]).reset_index()
            ax.plot(g.step, g["mean"], label=f"{why.NAMES.get(v, v)} (n={net.seed[net.variant == v].nunique()})")
            ax.fill_between(g.step, g["min"], g["max"], alpha=0.2)
        ax.set(xlabel="training step", title=title, yscale="log")
    axes[0].legend()
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    fig.suptitle(f"Gradient-based ICS (Santurkar et al. 2018, Fig. 3): {why.model_label(metrics)} on {data}, mean over layers 2.., "
                 f"{net.seed.nunique()} seeds")
    return save(fig, out_dir / "why_ics.png", out_dir / "why_ics.pdf")


main = command(__doc__, plot, "directory for why_ics.png and .pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
