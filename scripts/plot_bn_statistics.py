"""BN's statistics against the normalization batch, from a bn_statistics sweep: one figure, the
final validation error (last evaluation; a diverged run at chance) against the number of examples
that share BN's statistics (the ghost batch, log2 axis), one line per method (EMA at three momenta,
Algorithm 2's average, PreciseBN, PreciseBN with a FrozenBN tail, Batch Renorm): the seed mean,
bars and band its 95% t interval. Group norm pools no examples, so it is a flat line
(band: its interval) across the axis: the batch-free reference of Wu & He 2018, Fig. 1.

    python scripts/plot_bn_statistics.py outputs/results/bn_statistics_fashion_mnist \
        --out results/bn_statistics_fashion_mnist     (writes bn_statistics.png and .pdf)

Reads metrics only (bnrepro.analysis.bn_statistics).
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis import bn_statistics as bns
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, save


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = bns.load(sweep_dir)
    runs = bns.per_run(metrics)
    t = bns.table(runs).replace([float("inf"), -float("inf")], float("nan"))  # unbounded (one seed): no bar
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for i, label in enumerate(bns.methods(runs)):
        r, color = t[t.method == label], f"C{i % 10}"
        if r.batch.isna().all():  # no batch statistics: the same network at every batch size
            ax.axhline(r.error.iloc[0], color=color, ls="--", lw=1.5, label=f"{label} (no batch statistics)")
            ax.axhspan(r.lo.iloc[0], r.hi.iloc[0], color=color, alpha=0.12)
            continue
        r = r.sort_values("batch")
        ax.errorbar(r.batch, r.error, yerr=[r.error - r.lo, r.hi - r.error], color=color, marker="o", ms=4,
                    capsize=3, label=label)
        ax.fill_between(r.batch, r.lo, r.hi, color=color, alpha=0.12)
    batches = sorted(t.batch.dropna().unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [f"{b:g}" for b in batches])
    ax.set(xlabel="normalization batch (examples per ghost batch; SGD batch fixed)",
           ylabel="final validation error (%)")
    ax.legend(fontsize=8)
    data, model = (", ".join(map(str, metrics[k].dropna().unique())) for k in ("data", "model.name"))
    fig.suptitle(f"BN's statistics vs normalization batch: {model} on {data}, {runs.seed.nunique()} seeds\n"
                 "(mean, 95% t interval)")
    return save(fig, out_dir / "bn_statistics.png", out_dir / "bn_statistics.pdf")


main = command(__doc__, plot, "directory for bn_statistics.png and .pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
