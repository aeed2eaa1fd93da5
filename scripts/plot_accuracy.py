"""Test accuracy against training steps for every variant of a sweep (mean and a +/- 1 std
band over seeds). Reads the runs' metrics.csv files only; works on a sweep still running.

    python scripts/plot_accuracy.py outputs/demo --out outputs/demo/test_accuracy.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bnrepro.results import curve, load_metrics  # noqa: E402


def plot(sweep_dir: Path, out: Path, title: str | None = None) -> Path:
    acc = curve(load_metrics(sweep_dir), "test", "accuracy")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    for variant, rows in acc.groupby("variant"):
        seeds = int(rows["count"].max())
        ax.plot(rows.step, rows["mean"], label=f"{variant} ({seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(rows.step, rows["mean"] - rows["std"], rows["mean"] + rows["std"], alpha=0.25)
    ax.set_xlabel("training steps")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or sweep_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="output file (.png or .pdf); default SWEEP_DIR/test_accuracy.png")
    parser.add_argument("--title")
    args = parser.parse_args()
    out = plot(args.sweep_dir, args.out or args.sweep_dir / "test_accuracy.png", args.title)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
