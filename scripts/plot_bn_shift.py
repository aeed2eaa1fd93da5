"""BN's statistics under a distribution shift, from a bn_shift sweep whose runs hold shift.csv
(scripts/eval_shift.py): one figure, per corruption a panel of test error against severity (0: the
clean test split), with the training population statistics and with statistics recomputed on the
corrupted images (Wu & Johnson 2021, Sec. 5): the seed mean, bars its 95% t interval.

    python scripts/plot_bn_shift.py outputs/results/bn_shift_fashion_mnist --out results/bn_shift_fashion_mnist
    (writes bn_shift.png and .pdf)

Reads the runs' shift.csv only (bnrepro.analysis.bn_statistics).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bnrepro.analysis import bn_statistics as bns
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, save

STATISTICS = {"train": "training statistics", "target": "recomputed on the corrupted images"}


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    shift = bns.load_shift(sweep_dir)
    t = bns.shift_table(shift).replace([float("inf"), -float("inf")], float("nan"))  # unbounded: no bar
    kinds = [k for k in dict.fromkeys(t.corruption) if k != "none"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 4), sharey=True, layout="constrained",
                             squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for stats, words in STATISTICS.items():
            # the clean split is every corruption's severity 0, so each line starts where the network is
            r = pd.concat([t[t.corruption == "none"], t[t.corruption == kind]])
            r = r[r.statistics == stats].sort_values("severity")
            ax.errorbar(r.severity, r.error, yerr=[r.error - r.lo, r.hi - r.error], marker="o", capsize=3, label=words)
        ax.set(title=kind.replace("_", " "), xlabel="severity (0: clean)", xticks=sorted(t.severity.unique()))
    axes[0][0].set_ylabel("test error (%)")
    axes[0][0].legend(fontsize=8)
    data, model = (", ".join(map(str, shift[k].dropna().unique())) for k in ("data", "model.name"))
    fig.suptitle(f"BN's statistics under corruption: {model} on {data}, {shift.run.nunique()} runs "
                 "(mean, 95% t interval)")
    return save(fig, out_dir / "bn_shift.png", out_dir / "bn_shift.pdf")


main = command(__doc__, plot, "directory for bn_shift.png and .pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
