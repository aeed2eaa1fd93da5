"""Figure 2 of the paper from a fig2_* sweep: validation accuracy against training steps for
every variant (mean and +/- 1 std band over seeds), with the no-BN Inception's best accuracy as
a dotted line. Writes DIR/fig2.png and DIR/fig2.pdf (default DIR = the sweep directory).

    python scripts/plot_fig2.py outputs/results/fig2_fashion_mnist --out results/fig2_fashion_mnist

Reads metrics only; a diverged variant is drawn up to where it stopped and marked in the legend.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bnrepro.paper import fig3_name, fig3_order
from bnrepro.plots import mean_band, plt, save
from bnrepro.results import curve, load_metrics


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = load_metrics(sweep_dir)
    acc = curve(metrics, "test", "accuracy")
    status = metrics.drop_duplicates("run").groupby("variant").status.agg(lambda s: set(s))
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for variant in fig3_order(acc.variant.unique()):
        rows = acc[acc.variant == variant]
        name = fig3_name(variant)
        mark = " (diverged)" if "diverged" in status.get(variant, set()) else ""
        mean_band(ax, rows, f"{name}{mark} (n={int(rows['count'].max())})", alpha=0.15)
    base = acc[acc.variant == "inception"]
    if len(base):
        ax.axhline(base["mean"].max(), color="grey", linestyle=":", label="Inception's best")
    ax.set(xlabel="training steps", ylabel="validation accuracy", title=f"Figure 2: {metrics.data.iloc[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, out_dir / "fig2.png", out_dir / "fig2.pdf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="directory for fig2.png and fig2.pdf (default SWEEP_DIR)")
    args = parser.parse_args()
    for path in plot(args.sweep_dir, args.out or args.sweep_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
