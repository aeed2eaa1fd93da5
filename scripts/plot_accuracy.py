"""Test accuracy against training steps for every variant of a sweep (mean and a +/- 1 std
band over seeds). Reads the runs' metrics.csv files only; works on a sweep still running.

    python scripts/plot_accuracy.py outputs/sweeps/<time> --out accuracy.png
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import mean_band, plt, save
from bnrepro.analysis.results import curve, load_metrics


def plot(sweep_dir: Path, out: Path, title: str | None = None) -> list[Path]:
    acc = curve(load_metrics(sweep_dir), "test", "accuracy")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    for variant, rows in acc.groupby("variant"):
        mean_band(ax, rows, f"{variant} (n={int(rows['count'].max())})")
    ax.set(xlabel="training steps", ylabel="test accuracy", title=title or sweep_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, out)


main = command(__doc__, plot, "output file (.png or .pdf); default SWEEP_DIR/test_accuracy.png",
               default_out="test_accuracy.png",
               options=[(("--title",), {"help": "the figure's title (default: the sweep directory's name)"})])

if __name__ == "__main__":
    sys.exit(main())
