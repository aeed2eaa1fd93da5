"""The normalization family against the batch size, from a norm_batchsize sweep:
(a) test accuracy against training examples seen, per norm (colour) and batch size (line style,
    solid for the largest), seed means;
(b) final test accuracy against batch size, per norm (mean +/- 1 std error bars over seeds, the
    norms side by side at each batch size, every seed a dot);
(c) the final quantile skew ((p85 - p50) - (p50 - p15)) / (p85 - p15) of the last layer's
    normalization output (typical unit, probe batch), per norm and batch size (mean +/- 1 std);
    left out where the sweep ran without probes (norm_batchsize_conv).
Batch sizes are discrete settings: (b) and (c) draw points with error bars, no bands between them.

    python scripts/plot_norms.py outputs/results/norm_batchsize_fashion_mnist --out results/norm_batchsize_fashion_mnist
    (writes norms.png and norms.pdf into --out, default the sweep directory)

Reads metrics only (bnrepro.analysis.results via bnrepro.analysis.sweeps); plots whatever exists.
"""
from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.lines import Line2D

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
    skewed = "skew_norm_unit" in runs and runs.skew_norm_unit.notna().any()
    fig, axes = plt.subplots(1, 3 if skewed else 2, figsize=(15 if skewed else 10, 4.2), layout="constrained")
    styles = dict(zip(reversed(sizes), ("-", "--", "-.", ":", (0, (1, 3)), (0, (5, 5)))))
    for i, norm in enumerate(norms):
        colour, name = f"C{i}", NORM_NAMES.get(norm, norm)
        for size in sizes:
            rows = acc[(acc["bn.norm"] == norm) & (acc["trainer.batch_size"] == size)].sort_values("step")
            if len(rows):
                axes[0].plot(rows.examples, rows["mean"], linestyle=styles.get(size, "-"), color=colour, lw=1.2)
        shift = 2 ** (0.08 * (i - (len(norms) - 1) / 2))  # side by side on the log axis, not on top of each other
        r = runs[runs["bn.norm"] == norm]
        stats = r.groupby("trainer.batch_size").final.agg(["mean", "std", "count"]).fillna({"std": 0.0})
        axes[1].errorbar(stats.index * shift, stats["mean"], yerr=stats["std"], fmt="o", color=colour, capsize=3,
                         label=f"{name} (n={int(stats['count'].max())})")
        axes[1].plot(r["trainer.batch_size"] * shift, r.final, ".", color=colour, alpha=0.4)
        skew = r.groupby("trainer.batch_size").skew_norm_unit.agg(["mean", "std"]).fillna({"std": 0.0}) if skewed else None
        if skewed and skew["mean"].notna().any():
            axes[2].errorbar(skew.index * shift, skew["mean"], yerr=skew["std"], fmt="o", color=colour, capsize=3,
                             label=f"{name} (n={int(r.skew_norm_unit.notna().groupby(r['trainer.batch_size']).sum().max())})")
    # Two short keys, colour = norm and line style = batch size, instead of one entry per pair (16)
    n = acc.groupby(list(BY))["count"].max()
    norm_key = [Line2D([], [], color=f"C{i}", label=f"{NORM_NAMES.get(m, m)} (n={int(n[m].min())})")
                for i, m in enumerate(norms)]
    size_key = [Line2D([], [], color="black", linestyle=styles.get(s, "-"), label=f"batch {s}") for s in sizes]
    axes[0].add_artist(axes[0].legend(handles=norm_key, fontsize=8, loc="center right", title="norm (colour)",
                                      title_fontsize=8))
    axes[0].legend(handles=size_key, fontsize=8, loc="center", title="line style", title_fontsize=8)
    axes[0].set(title="(a) test accuracy, mean over seeds", xlabel="training examples seen", ylabel="accuracy")
    axes[1].set(title="(b) final test accuracy, mean ± std over seeds", xlabel="batch size", ylabel="accuracy")
    if skewed:
        axes[2].set(title="(c) skew of the last layer's norm output, mean ± std", xlabel="batch size",
                    ylabel="(p85 + p15 - 2 p50) / (p85 - p15)")
    for ax in axes[1:]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        ax.legend(fontsize=8)
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    model = ", ".join(map(str, metrics["model.name"].dropna().unique()))
    fig.suptitle(f"Normalization against batch size: {model} on {data}, same examples seen at every batch size")
    return save(fig, out_dir / "norms.png", out_dir / "norms.pdf")


main = command(__doc__, plot, "directory for norms.png and norms.pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
