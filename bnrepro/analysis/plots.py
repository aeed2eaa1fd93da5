"""Small matplotlib helpers shared by the plot scripts (which read metrics and never train).

Import `plt` from here: it selects the file-only Agg backend first, so scripts run headless.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def mean_band(ax, rows: pd.DataFrame, label: str, alpha: float = 0.25, colour: str | None = None) -> None:
    """A `results.curve` frame as its mean line and a +/- 1 std band over seeds, in one colour
    (`colour`, else the axes' next)."""
    line, = ax.plot(rows.step, rows["mean"], label=label, color=colour)
    ax.fill_between(rows.step, rows["mean"] - rows["std"], rows["mean"] + rows["std"], alpha=alpha,
                    color=line.get_color())


def readable(x: float) -> str:
    """A number as a reader of a figure parses it: 3 significant figures below 1,000, else 2 with
    thousands separators (580,000, not 5.8e+05: an exponent is misread at a glance)."""
    if x != x:
        return "n/a"
    if abs(x) < 1000:
        return f"{x:.3g}"
    return f"{round(x, 2 - len(str(int(abs(x))))):,.0f}"


def save(fig, *paths: Path) -> list[Path]:
    """Write one figure to each path (the format follows the suffix), then free it."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        # No creation date in PDFs, so regenerating a figure from the same metrics changes no byte.
        fig.savefig(path, dpi=150, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(fig)
    return list(paths)



def to_tensorboard(sweep_dir: Path, images: list[Path]) -> Path:
    """Each PNG of `images` as an image in TensorBoard's Images tab, tagged by its file name, in an
    event file of `SWEEP_DIR/figures/` (which `tensorboard --logdir SWEEP_DIR` lists as the run
    `figures`, beside the sweep's runs). Written with tensorboard's own event writer: no torch."""
    from PIL import Image
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    out = Path(sweep_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(out))
    for path in images:
        with Image.open(path) as img:
            width, height = img.size
        image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4,  # RGBA
                                          encoded_image_string=path.read_bytes())
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=path.stem, image=image)])
        # dated by the figure's file (the Images tab shows the date; without one it reads 1 January 1970)
        writer.add_event(event_pb2.Event(summary=summary, step=0, wall_time=path.stat().st_mtime))
    writer.close()
    return out
