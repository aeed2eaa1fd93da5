"""The normalization family against the batch size, from a norm_batchsize sweep:
(a) test accuracy against training examples seen, per norm, at the smallest (solid) and the
    largest (dashed) batch size (mean and +/- 1 std band over seeds);
(b) final test accuracy against batch size, per norm (mean +/- 1 std band, every seed a dot);
(c) the final quantile skew ((p85 - p50) - (p50 - p15)) / (p85 - p15) of the last layer's
    normalization output (typical unit, probe batch), per norm and batch size.

    python scripts/plot_norms.py outputs/results/norm_batchsize_fashion_mnist --out results/norm_batchsize_fashion_mnist
    (writes norms.png and norms.pdf into --out, default the sweep directory)

Reads metrics only (bnrepro.analysis.results via bnrepro.analysis.sweeps); plots whatever exists.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import plt, save
from bnrepro.analysis.results import curve
from bnrepro.analysis.sweeps import NORM_NAMES, NORM_ORDER, finals, load

BY = ("bn.norm", "trainer.batch_size")


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = load(sweep_dir)
    acc = curve(metrics, "test", "accuracy", BY)
    acc["examples"] = acc.step * acc["trainer.batch_size"]
    runs = finals(metrics)
    norms = [n for n in NORM_ORDER if n in set(acc["bn.norm"])]
    sizes = sorted(acc["trainer.batch_size"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for i, norm in enumerate(norms):
        colour, name = f"C{i}", NORM_NAMES.get(norm, norm)
        for size, style in zip(sorted({sizes[0], sizes[-1]}), ("-", "--")):
            rows = acc[(acc["bn.norm"] == norm) & (acc["trainer.batch_size"] == size)].sort_values("step")
            axes[0].plot(rows.examples, rows["mean"], style, color=colour, label=f"{name}, batch {size}")
            axes[0].fill_between(rows.examples, rows["mean"] - rows["std"], rows["mean"] + rows["std"],
                                 color=colour, alpha=0.15)
        r = runs[runs["bn.norm"] == norm]
        stats = r.groupby("trainer.batch_size").final.agg(["mean", "std", "count"]).fillna({"std": 0.0})
        axes[1].plot(stats.index, stats["mean"], "-o", color=colour, label=f"{name} (n={int(stats['count'].max())})")
        axes[1].fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                             color=colour, alpha=0.15)
        axes[1].plot(r["trainer.batch_size"], r.final, ".", color=colour, alpha=0.5)
        skew = r.groupby("trainer.batch_size").skew_norm_unit.mean()
        if skew.notna().any():
            axes[2].plot(skew.index, skew.values, "-o", color=colour, label=name)
    axes[0].set(title="(a) test accuracy", xlabel="training examples seen", ylabel="accuracy")
    axes[1].set(title="(b) final test accuracy, mean ± std over seeds", xlabel="batch size", ylabel="accuracy")
    axes[2].set(title="(c) quantile skew of the last layer's norm output", xlabel="batch size",
                ylabel="(p85 + p15 - 2 p50) / (p85 - p15)")
    for ax in axes[1:]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    model = ", ".join(map(str, metrics["model.name"].dropna().unique()))
    fig.suptitle(f"Normalization against batch size: {model} on {data}, same examples seen at every batch size")
    return save(fig, out_dir / "norms.png", out_dir / "norms.pdf")


main = command(__doc__, plot, f"directory for norms.png and norms.pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
