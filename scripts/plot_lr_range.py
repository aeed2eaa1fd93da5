"""Bjorck et al. 2018's learning-rate argument at our scale, from an lr_range sweep: one figure,
(a) final validation accuracy against the learning rate, with and without BN (seed mean, bars the
    seeds' min to max over the runs that trained; an x at the bottom for each diverged run);
(b) at initialization, the relative loss L(w0 - eta g) / L(w0) after one step of size eta = the
    run's rate along the gradient (one point per seed and rate; the line through the seed medians).

    python scripts/plot_lr_range.py outputs/results/lr_range_fashion_mnist --out results/lr_range_fashion_mnist
    (writes lr_range.png and .pdf)

Reads metrics only (bnrepro.analysis.why).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bnrepro.analysis import why
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, save


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = why.load(sweep_dir)
    runs = why.per_run(metrics)
    rel = why.initial_rel_loss(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for v in why.variants(runs):
        rates, g = why.rate_matrix(runs, v)
        trained = np.isfinite(g).any(axis=0)
        mean = np.array([np.nanmean(c) if t else np.nan for c, t in zip(g.T, trained)])
        lo = np.array([np.nanmin(c) if t else np.nan for c, t in zip(g.T, trained)])
        hi = np.array([np.nanmax(c) if t else np.nan for c, t in zip(g.T, trained)])
        seeds = g.shape[0]  # seeds per rate, diverged ones (NaN) included: they are the x marks
        line = axes[0].errorbar(rates, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3,
                                label=f"{why.NAMES.get(v, v)} (n={seeds} per rate)")
        color = line[0].get_color()
        dead = [(r, n) for r, n in zip(rates, np.isnan(g).sum(axis=0)) if n]
        for r, n in dead:
            axes[0].scatter([r] * n, [10.0 + 1.5 * i for i in range(n)], marker="x", color=color)
        r = rel[rel.variant == v]
        axes[1].scatter(r["optim.lr"], r.rel_loss, color=color, s=12, label=why.NAMES.get(v, v))
        med = r.groupby("optim.lr").rel_loss.median()
        axes[1].plot(med.index, med.values, color=color)
    axes[0].set(xscale="log", xlabel="learning rate", ylabel="final validation accuracy (%)", ylim=(0, 100),
                title="(a) final accuracy (x: a diverged run)")
    axes[1].axhline(1.0, color="grey", lw=0.8, ls=":")
    axes[1].set(xscale="log", yscale="log", xlabel="step size eta (= the run's lr)",
                ylabel="L(w0 - eta g) / L(w0)", title="(b) relative loss after one step, at initialization")
    axes[0].legend()
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    fig.suptitle(f"Learning-rate range (Bjorck et al. 2018): {why.model_label(metrics)} on {data}, {runs.seed.nunique()} seeds per rate")
    return save(fig, out_dir / "lr_range.png", out_dir / "lr_range.pdf")


main = command(__doc__, plot, "directory for lr_range.png and .pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
