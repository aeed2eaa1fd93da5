"""Test accuracy against training steps for every variant of a sweep (mean and a +/- 1 std
band over seeds). Reads the runs' metrics.csv files only; works on a sweep still running.

    python scripts/plot_accuracy.py outputs/sweeps/<time> --out accuracy.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="output file (.png or .pdf); default SWEEP_DIR/test_accuracy.png")
    parser.add_argument("--title")
    args = parser.parse_args()
    for path in plot(args.sweep_dir, args.out or args.sweep_dir / "test_accuracy.png", args.title):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
