"""Small matplotlib helpers shared by the plot scripts (which read metrics and never train).

Import `plt` from here: it selects the file-only Agg backend first, so scripts run headless.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def mean_band(ax, rows: pd.DataFrame, label: str, alpha: float = 0.25) -> None:
    """A `results.curve` frame as its mean line and a +/- 1 std band over seeds."""
    ax.plot(rows.step, rows["mean"], label=label)
    ax.fill_between(rows.step, rows["mean"] - rows["std"], rows["mean"] + rows["std"], alpha=alpha)


def save(fig, *paths: Path) -> list[Path]:
    """Write one figure to each path (the format follows the suffix), then free it."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        # No creation date in PDFs, so regenerating a figure from the same metrics changes no byte.
        fig.savefig(path, dpi=150, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(fig)
    return list(paths)

