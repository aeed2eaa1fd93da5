"""Figure 1 of the paper from a fig1_mnist sweep: (a) test accuracy vs steps with and without BN
(mean and +/- 1 std over seeds); (b, c) the 15th/50th/85th percentiles of the typical last
hidden layer unit's sigmoid input, without and with BN (mean over seeds, band = +/- 1 std).

    python scripts/plot_fig1.py outputs/sweeps/<time> --out results/fig1_fashion_mnist
    (writes fig1.png and fig1.pdf into --out, default the sweep directory)

Reads the runs' metrics.csv only; plots whatever exists (a sweep still running, diverged runs).
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import mean_band, plt, save
from bnrepro.analysis.results import curve, last_layer, load_metrics

LABELS = {"baseline": "Without BN", "bn": "With BN"}


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = load_metrics(sweep_dir)
    acc = curve(metrics, "test", "accuracy")
    probes = metrics[metrics.split == "probe"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    for variant, rows in acc.groupby("variant"):
        mean_band(axes[0], rows, f"{LABELS.get(variant, variant)} (n={int(rows['count'].max())})")
    axes[0].set(title="(a) test accuracy", xlabel="training steps", ylabel="accuracy")
    axes[0].legend()
    if not probes.empty:
        layer = last_layer(probes)
        for ax, variant, tag in ((axes[1], "baseline", "(b)"), (axes[2], "bn", "(c)")):
            ax.set(title=f"{tag} {LABELS[variant]}: {layer} typical unit", xlabel="training steps",
                   ylabel="sigmoid input")
            for name in sorted(n for n in probes.name.unique() if n.startswith(f"{layer}/unit_p")):
                rows = curve(probes[probes.variant == variant], "probe", name)
                if rows.empty:
                    continue
                mean_band(ax, rows, name.split("_")[-1].replace("p", "") + "th pct", alpha=0.2)
            ax.legend(fontsize=8)
        lims = [ax.get_ylim() for ax in axes[1:]]
        for ax in axes[1:]:  # same scale, as in the paper, so the drift is comparable by eye
            ax.set_ylim(min(lo for lo, _ in lims), max(hi for _, hi in lims))
    for ax in axes:
        ax.grid(alpha=0.3)
    return save(fig, out_dir / "fig1.png", out_dir / "fig1.pdf")


main = command(__doc__, plot, "directory for fig1.png and fig1.pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
