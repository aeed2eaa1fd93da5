"""Figure 1's sensitivity map from a fig1_sensitivity sweep: one figure, a row of heat maps per
momentum, initial weights (rows) x learning rate (columns) in each:
(a) BN's final validation-accuracy lead over no BN, in points; `*`: its 95% t interval over
    seeds excludes 0 (the paper's "ends higher" where positive);
(b) the speed-up to the threshold, no-BN steps / BN steps (log colour scale; `*`: the interval
    excludes 1; `≥`: no BN never got there, a bound);
(c, d) the no-BN drift of the last hidden layer's typical sigmoid input, relative (over its first
    15-85 spread) and absolute (input units), with BN's in brackets (log colour scales).
Definitions: bnrepro/analysis/sensitivity.py; the numbers behind every cell: scripts/report_fig1_sensitivity.py.

    python scripts/plot_fig1_sensitivity.py outputs/results/fig1_sensitivity_fashion_mnist \
        --out results/fig1_sensitivity_fashion_mnist
    (writes fig1_sensitivity.png and fig1_sensitivity.pdf into --out, default the sweep directory)

Reads metrics only (bnrepro.analysis.results via bnrepro.analysis.sensitivity).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from matplotlib import colors

from bnrepro.analysis import sensitivity as sens
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, readable, save


def text(c, panel: str) -> str:
    """One cell's annotation in `panel`."""
    if panel == "lead":
        star = "*" if c.higher in ("holds", "reversed") else ""
        return "n/a" if math.isnan(c.lead) else f"{c.lead:+.2f}{star}"
    if panel == "speedup":
        star = "*" if c.faster in ("holds", "reversed") else ""
        bound = "≥" if c.baseline_never and not c.bn_never else "≤" if c.bn_never and not c.baseline_never else ""
        if math.isnan(c.speedup):
            return "n/a"
        return f"{bound}{c.speedup:.2g}x{star}" if c.speedup < 100 else f"{bound}{c.speedup:,.0f}x{star}"
    unit = panel.split("_")[1]
    base, bn = c[f"drift_{unit}_baseline"], c[f"drift_{unit}_bn"]
    return "n/a" if math.isnan(base) else f"{readable(base)}\n({readable(bn)})"


def speedup_norm(v: np.ndarray) -> colors.Normalize:
    top = max(2.0, float(np.nanmax(np.maximum(v, 1 / v))))
    return colors.LogNorm(1.0, top) if np.nanmin(v) >= 1 else colors.LogNorm(1 / top, top)


LEAD_CAP = 3.0
PANELS = {  # column of sens.cells -> (title, colour map, norm from the values)
    # Colours saturate at +-LEAD_CAP points, so that one cell whose no-BN network never learned
    # (a lead of tens of points) does not wash out the ones of a point or two; the text is exact.
    "lead": ("(a) BN's final {split} lead (points; colours capped at +-%g)" % LEAD_CAP, "RdBu",
             lambda v: colors.TwoSlopeNorm(0.0, -min(LEAD_CAP, max(0.5, np.nanmax(np.abs(v)))),
                                           min(LEAD_CAP, max(0.5, np.nanmax(np.abs(v)))))),
    # From 1 (no speed-up) to the largest where BN is faster everywhere, so that the scale spans the
    # values shown; symmetric about 1 on a diverging map only where some cell has no BN faster.
    "speedup": ("(b) speed-up, no-BN / BN steps to {threshold:.0%}", "PuOr_r", lambda v: speedup_norm(v)),
    "drift_rel_baseline": ("(c) no-BN drift over its first spread (BN's)", "viridis",
                           lambda v: colors.LogNorm(np.nanmin(v), max(np.nanmax(v), np.nanmin(v) * 1.01))),
    "drift_abs_baseline": ("(d) no-BN drift in input units (BN's)", "viridis",
                           lambda v: colors.LogNorm(np.nanmin(v), max(np.nanmax(v), np.nanmin(v) * 1.01))),
}


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = sens.load(sweep_dir)
    runs = sens.per_run(metrics)
    table = sens.cells(metrics, runs)
    momenta = sorted(table["optim.momentum"].unique())
    split = sens.split_of(metrics)
    inits, lrs = sens.init_order(table.init), sorted(table["optim.lr"].unique())
    fig, axes = plt.subplots(len(momenta), len(PANELS), figsize=(4.2 * len(PANELS), 0.8 + 0.75 * len(inits) * len(momenta)
                                                                  + 0.9 * len(momenta)),
                             layout="constrained", squeeze=False)
    for j, (column, (title, cmap_name, norm_of)) in enumerate(PANELS.items()):
        values = table[column].to_numpy(float)
        values = values[np.isfinite(values) & ((values > 0) | (column == "lead"))]
        norm = norm_of(values) if len(values) else colors.Normalize(0, 1)
        if column == "speedup" and norm.vmin >= 1:
            cmap_name = "Oranges"  # one-sided: 1x white, faster darker
        cmap = plt.get_cmap(cmap_name).with_extremes(bad="lightgrey")
        for i, momentum in enumerate(momenta):
            ax = axes[i, j]
            cells = table[table["optim.momentum"] == momentum].set_index(["init", "optim.lr"])
            grid = np.full((len(inits), len(lrs)), np.nan)
            for (init, lr), c in cells.iterrows():
                r, k = inits.index(init), lrs.index(lr)
                grid[r, k] = c[column]
            shown = np.ma.masked_invalid(grid if column == "lead" else np.where(grid > 0, grid, np.nan))
            image = ax.imshow(shown, cmap=cmap, norm=norm, aspect="auto")
            for (init, lr), c in cells.iterrows():  # dark text on light cells, light on dark
                r, k = inits.index(init), lrs.index(lr)
                rgb = np.asarray(cmap(norm(shown[r, k])) if not np.ma.is_masked(shown[r, k]) else (0.8, 0.8, 0.8, 1))
                ink = "black" if rgb[:3] @ (0.299, 0.587, 0.114) > 0.5 else "white"
                ax.text(k, r, text(c, column), ha="center", va="center", fontsize=10, color=ink)
            ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
            ax.set_yticks(range(len(inits)), inits)
            ax.set(xlabel="learning rate" if i == len(momenta) - 1 else None,
                   ylabel=f"momentum {momentum:g}\ninitial weights (std)" if j == 0 else None)
            if i == 0:
                ax.set_title(title.format(split=split, threshold=sens.THRESHOLD), fontsize=11)
        fig.colorbar(image, ax=axes[:, j], shrink=0.8)
    data = ", ".join(map(str, runs.data.dropna().unique()))
    n = runs.groupby([*sens.CELL, "variant"]).size()
    seeds = f"n={n.min()}" if n.min() == n.max() else f"n={n.min()}-{n.max()}"
    fig.suptitle(f"Figure 1's claims over initial weights x learning rate x momentum: MLP on {data}, {split} split, "
                 f"{seeds} seeds per cell and arm; * = 95% interval excludes no effect", fontsize=14)
    return save(fig, out_dir / "fig1_sensitivity.png", out_dir / "fig1_sensitivity.pdf")


main = command(__doc__, plot, "directory for fig1_sensitivity.png and fig1_sensitivity.pdf (default SWEEP_DIR)",
               default_out=".")

if __name__ == "__main__":
    sys.exit(main())
