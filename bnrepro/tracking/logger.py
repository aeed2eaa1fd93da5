"""Where a run's numbers go: a tidy metrics file, TensorBoard, and the terminal.

Every number is logged once, through `RunLogger.log`, and lands in three places:
- `metrics.csv`, long form (step, split, name, value), appended and flushed as the run goes so
  plots can read a sweep that is still running;
- TensorBoard scalars tagged `split/name` (e.g. `test/accuracy`), in the run directory itself,
  so `tensorboard --logdir SWEEP_DIR` names each run by its directory (its overrides);
- the progress display: a tqdm bar on a terminal, a few plain lines otherwise, nothing under CI.
With trainer.save_predictions, the final model's test-set class probabilities go to test_probs.csv.
"""
from __future__ import annotations

import csv
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.tensorboard import SummaryWriter

from bnrepro import METRICS_COLUMNS, METRICS_FILE, PREDICTIONS_FILE  # noqa: F401 (re-exported)
from bnrepro.files import atomic_open, write_atomic
from bnrepro.schema import choice
from bnrepro.tracking.hparams import curated, experiment_summary, session_end_summary, session_start_summary

# The HParams table shows the latest value of these scalar tags for each run (final/...: written
# once, at the end, to TensorBoard only).
HPARAM_METRICS = ("test/accuracy", "test/best_accuracy", "test/loss", "train/loss")
# With a validation split, what the protocol chooses on (README, Validation and test).
VAL_METRICS = ("val/accuracy", "val/best_accuracy", "val/loss")



def quiet_writer_threads() -> None:
    """Keep TensorBoard's writer thread from printing its own traceback when a write of it fails
    because the disk is full (or the like): the thread keeps the error, the main thread raises it
    at its next TensorBoard call, and the run reports it as one paragraph (bnrepro.files.unwritable).
    Any other error of any thread keeps its traceback."""
    from bnrepro.files import unwritable

    previous = threading.excepthook
    if getattr(previous, "bnrepro", False):
        return

    def hook(args) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError)
                and unwritable(args.exc_value)):
            previous(args)
    hook.bnrepro = True
    threading.excepthook = hook


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the header and the rows of steps <= last_step, atomically; a torn last line goes too."""
    with open(path, newline="") as src, atomic_open(path, "w", newline="") as dst:
        dst.write(src.readline())
        for line in src:
            step = line.split(",", 1)[0]
            if line.endswith("\n") and step.isdigit() and int(step) <= last_step:
                dst.write(line)


def intact_through(path: Path) -> int | None:
    """The last step whose rows `path` (a metrics.csv) surely holds whole when its last line is torn
    (a crash mid-write, a cut copy); None when it is not torn (or absent). A resumed run must start
    from a checkpoint no later than this, or the torn row's step is never written again."""
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return None
    last = lines[-1]  # after the final newline: b"" when the file ends whole
    if not last:
        return None
    step, sep, _ = last.partition(b",")
    if sep and step.isdigit():
        return int(step) - 1
    # The step itself is cut: the row is of the previous whole row's step or later.
    previous = [int(s) for s in (line.partition(b",")[0] for line in lines[1:-1]) if s.isdigit()]
    return previous[-1] - 1 if previous else -1


def wait_for_a_later_second(run_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second it
    was opened: a resumed run's file must sort after the earlier attempt's for its purge to apply."""
    seconds = [int(p.name.split(".")[3]) for p in run_dir.glob("events.out.tfevents.*")
               if p.name.split(".")[3].isdigit()]
    while seconds and time.time() < max(seconds) + 1:
        time.sleep(0.05)


def flatten(cfg: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}, with values TensorBoard's HParams accepts."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:  # None, lists, enums
            out[name] = choice(value)
    return out


def diverged_line(step: int, loss: float, run_dir: Path) -> str:
    """What the console says on the step a run diverges (the loop's three faces, training/loop.py)."""
    why = (f"the loss became {loss}" if not math.isfinite(loss) else
           f"the loss exploded to {loss:,.0f}" if loss > 100.0 else  # loop's EXPLODED_LOSS (a dead net's is ~2.3)
           "dead: every example got the same logits and the first layer no gradient at all")
    return f"{run_dir}: diverged at step {step:,} ({why}); the run stops here and is recorded as diverged."


def progress_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    if os.environ.get("CI"):
        return "none"
    return "bar" if sys.stderr.isatty() else "lines"


class RunLogger:
    """Logs one run's scalars to metrics.csv, TensorBoard and the progress display.

    Several of them log the members of a stacked run (one per member's run directory); only one
    of those shows progress. A process that must not write (a DDP rank > 0) uses `QuietLogger`."""

    def __init__(self, out_dir: Path, hparam_dict: dict[str, Any], max_steps: int, progress: str = "auto",
                 name: str | None = None, resume_step: int = 0, swept: Sequence[str] = (),
                 domains: Mapping[str, Sequence[Any]] | None = None, metrics: Sequence[str] = (),
                 table: bool = True):
        self.out_dir = Path(out_dir)
        self.name = name or self.out_dir.name
        self.max_steps = max_steps
        self.mode = progress_mode(progress)
        self.latest: dict[str, float] = {}
        self._start = time.perf_counter()
        self._last_line = 0
        # A resumed run (resume_step > 0) keeps the rows up to its checkpoint and appends; TensorBoard
        # drops the earlier attempt's events after that step (purge_step).
        append = bool(resume_step) and (self.out_dir / METRICS_FILE).exists()
        if append:
            truncate_metrics(self.out_dir / METRICS_FILE, resume_step)
        self._file = open(self.out_dir / METRICS_FILE, "a" if append else "w", newline="")
        self._csv = csv.writer(self._file)
        if not append:
            self._csv.writerow(METRICS_COLUMNS)
        if resume_step:
            wait_for_a_later_second(self.out_dir)
        self.tb = SummaryWriter(log_dir=str(self.out_dir), purge_step=resume_step + 1 if resume_step else None)
        # HParams (bnrepro/tracking/hparams.py), in this run's own writer (add_hparams() would open
        # a second, timestamp-named sub-run): the experiment and the session's start now, its end
        # with the true status at `end` (TensorBoard keeps the first of each it reads).
        # `table`: a single run's own table of every curated key. A sweep's run writes none: TensorBoard
        # takes the first table it finds, in no set order, so the sweep's one table, of what differs
        # between its runs, is written beside them after every job (tracking/replay.py). Its session
        # holds every curated key, so that any column that table lists has its value.
        shown = curated(hparam_dict, swept)
        if table:
            self.tb.file_writer.add_summary(experiment_summary(shown, [*HPARAM_METRICS, *metrics], swept, domains))
        self.tb.file_writer.add_summary(session_start_summary(shown))
        self.status: str | None = None
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=max_steps, desc=self.name, unit="step", dynamic_ncols=True, leave=True)

    def log(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            value = float(value)
            self._csv.writerow((step, split, name, value))
            self.tb.add_scalar(f"{split}/{name}", value, step)
            self.latest[f"{split}/{name}"] = value
        self._file.flush()
        if split == "train" and metrics.get("diverged"):  # the loop's one decision (training/loop.py)
            self.say(diverged_line(step, float(metrics.get("loss", float("nan"))), self.out_dir))

    def say(self, line: str) -> None:
        """One line on stderr whatever the progress mode (a bar is kept intact below it)."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def charts(self, layout: Mapping[str, Mapping[str, list]]) -> None:
        """A custom-scalars layout, {category: {chart title: ["Multiline", [tags]] or ["Margin",
        [value, lower, upper]]}}; TensorBoard merges the categories of all runs by title."""
        self.tb.add_custom_scalars({cat: dict(charts) for cat, charts in layout.items()})

    def final(self, step: int, metrics: Mapping[str, float]) -> None:
        """Numbers known at the end (drift statistics) for the HParams table: TensorBoard only."""
        for tag, value in metrics.items():
            self.tb.add_scalar(tag, float(value), step)

    def predictions(self, probs, targets) -> None:
        """The final model's class probabilities on the test split, one row per example:
        test_probs.csv (label, p0, p1, ...), written whole or not at all."""
        rows = torch.cat([targets.view(-1, 1).to(probs), probs], 1).tolist()
        lines = ["label," + ",".join(f"p{c}" for c in range(probs.shape[1]))]
        lines += [f"{int(row[0])}," + ",".join(f"{v:.5f}" for v in row[1:]) for row in rows]
        write_atomic(self.out_dir / PREDICTIONS_FILE, "\n".join(lines) + "\n")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """A Text tab entry (Markdown): the run's summary.json and provenance.json."""
        self.tb.add_text(tag, text, step)

    def end(self, status: str) -> None:
        """The session's end in the HParams tab: `status` is summary.json's (completed, diverged,
        failed, interrupted); written once."""
        if self.status is None:
            self.status = status
            if (summary := session_end_summary(status)) is not None:  # interrupted: none (hparams.py)
                self.tb.file_writer.add_summary(summary)

    def histograms(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        for name, tensor in values.items():
            self.tb.add_histogram(f"{split}/{name}", tensor, step)

    def progress(self, step: int) -> None:
        """Called at each logging point; cheap, never syncs the device."""
        elapsed = time.perf_counter() - self._start
        rate = step / elapsed if elapsed > 0 else 0.0
        # Before the first evaluation there is no accuracy yet: said so, never `nan` (which reads
        # as a diverged run).
        numbers = "  ".join(f"{label} {self.latest[tag]:.4f}" for label, tag in
                            (("loss", "train/loss"), ("test acc", "test/accuracy")) if tag in self.latest)
        numbers = numbers if "test/accuracy" in self.latest else f"{numbers}  (no evaluation yet)".lstrip()
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(f"{rate:,.0f} steps/s  {numbers}", refresh=False)
        elif self.mode == "lines" and (step - self._last_line >= max(1, self.max_steps // 10) or step == self.max_steps):
            self._last_line = step
            print(f"[{self.name}] step {step:>7,}/{self.max_steps:,}  {rate:,.0f} steps/s  {numbers}",
                  file=sys.stderr, flush=True)

    def sync(self) -> None:
        """Everything logged so far on disk (before a checkpoint vouches for it)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self.tb.flush()

    def close(self, status: str | None = None) -> None:
        """Ends the session (`end`) unless it was ended: with `status`, else completed."""
        if self._bar is not None:
            self._bar.close()
        self.end(status or "completed")
        self.tb.close()
        self._file.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close("interrupted" if issubclass(exc_type, (KeyboardInterrupt, SystemExit)) else "failed")


class QuietLogger:
    """RunLogger's interface for processes that must not write (DDP ranks > 0): remembers the
    latest values, writes nothing."""

    def __init__(self, *args, **kwargs):
        self.latest: dict[str, float] = {}

    def log(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        self.latest.update({f"{split}/{k}": float(v) for k, v in metrics.items()})

    def charts(self, *args: Any) -> None: ...
    def histograms(self, *args: Any) -> None: ...
    def final(self, *args: Any) -> None: ...
    def text(self, *args: Any) -> None: ...
    def predictions(self, *args: Any) -> None: ...
    def end(self, *args: Any) -> None: ...
    def progress(self, *args: Any) -> None: ...
    def sync(self) -> None: ...
    def close(self, *args: Any) -> None: ...

    def __enter__(self) -> "QuietLogger":
        return self

    def __exit__(self, *exc) -> None: ...
