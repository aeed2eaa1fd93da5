"""Santurkar et al. 2018's Figure 2 at our scale, from a why_noisy_bn sweep: one figure,
(a) validation accuracy over training per variant (no BN, noise without BN, BN, noisy BN; the seed
    mean, its band the seeds' min to max);
(b) how far each layer's typical unit's 15/50/85th percentiles travel over training, relative to
    their first 15-85 spread (bnrepro.analysis.sensitivity.drift), per variant and layer (seed mean,
    bars the seeds' min to max): the distributions' (in)stability the paper's histograms show.

    python scripts/plot_why_noisy_bn.py outputs/results/why_noisy_bn_fashion_mnist \
        --out results/why_noisy_bn_fashion_mnist     (writes why_noisy_bn.png and .pdf)

Reads metrics only (bnrepro.analysis.why).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bnrepro.analysis import why
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, save
from bnrepro.analysis.results import curve


def accuracy_panel(ax, metrics, names) -> None:
    acc = curve(metrics[metrics.status != "diverged"], "val", "accuracy")
    lo_hi = (metrics[(metrics.split == "val") & (metrics.name == "accuracy")]
             .groupby(["variant", "step"]).value.agg(["min", "max"]).reset_index())
    for v in names:
        c, b = acc[acc.variant == v], lo_hi[lo_hi.variant == v]
        ax.plot(c.step, 100 * c["mean"], label=f"{why.NAMES.get(v, v)} (n={int(c['count'].max()) if len(c) else 0})")
        ax.fill_between(b.step, 100 * b["min"], 100 * b["max"], alpha=0.2)
    ax.set(xlabel="training step", ylabel="validation accuracy (%)", title="(a) accuracy (seed mean, min-max band)")
    top = acc["mean"].max() * 100
    # at most 25 points below the best, but never cutting off a line (the small Inception's no-BN + noise ~13%)
    ax.set_ylim(max(0.0, min(top - 25, acc["mean"].min() * 100 - 2)), top + 2)
    ax.legend()


def drift_panel(ax, runs, names) -> None:
    layer_cols = [c for c in runs.columns if c.endswith("/rel_movement")]
    width = 0.8 / max(1, len(names))
    for i, v in enumerate(names):
        r = runs[runs.variant == v]
        mean = np.array([r[c].mean() for c in layer_cols])
        err = np.array([[m - r[c].min(), r[c].max() - m] for c, m in zip(layer_cols, mean)]).T
        ax.bar(np.arange(len(layer_cols)) + (i - (len(names) - 1) / 2) * width, mean, width, yerr=err, capsize=2,
               label=why.NAMES.get(v, v))
    ax.set_xticks(range(len(layer_cols)), [c.split("/")[0] for c in layer_cols])
    ax.set_yscale("log")
    ax.set(ylabel="percentile travel / first 15-85 spread", title="(b) drift of each layer's typical unit")
    ax.legend(fontsize=8)


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = why.load(sweep_dir)
    runs = why.per_run(metrics)
    names = why.variants(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    accuracy_panel(axes[0], metrics, names)
    drift_panel(axes[1], runs, names)
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    fig.suptitle(f"Noisy BN (Santurkar et al. 2018, Fig. 2): {why.model_label(metrics)} on {data}, {runs.seed.nunique()} seeds")
    return save(fig, out_dir / "why_noisy_bn.png", out_dir / "why_noisy_bn.pdf")


main = command(__doc__, plot, "directory for why_noisy_bn.png and .pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
