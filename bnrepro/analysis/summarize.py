"""Sweeps: one table of every job, however it ended.

    bnrepro-summarize SWEEP_DIR            # or: python scripts/summarize.py SWEEP_DIR

reads every job directory under SWEEP_DIR (each job's own summary.json, written however the job
ended) and writes SWEEP_DIR/summary.csv: one row per job with its status (completed, diverged,
failed with the error, interrupted, damaged = a summary.json that is not valid JSON (its path in
the error), running = no final summary yet and a process holds the job's lock, or interrupted
with the reason when none does (killed before it could write one); a stack's parent directory is not a job, its `seed=<s>/` members are), final and best metrics and wall time; it prints the same as a table.
During a multirun every job refreshes summary.csv as it ends (bnrepro.training.session.main), so the table is
there even when Hydra stops at the end of a sweep with a failed job.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from bnrepro import METRICS_FILE
from bnrepro.analysis.cli import command
from bnrepro.analysis.results import find_jobs, read_summary, run_info
from bnrepro.files import atomic_open
from bnrepro.training.rundir import unfinished_record

SUMMARY_CSV = "summary.csv"
COLUMNS = ["run", "variant", "seed", "experiment", "data", "status", "steps", "test_accuracy", "test_loss",
           "train_loss", "best_accuracy", "best_step", "wall_time_s", "error"]


def last_step(run_dir: Path) -> int | None:
    """The last step a run (still running, or killed) logged: the first field of metrics.csv's last line."""
    try:
        with open(run_dir / METRICS_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().splitlines()
        return int(lines[-1].split(b",", 1)[0]) if len(lines) > 1 else None
    except (OSError, ValueError):
        return None


def job_row(run_dir: Path, sweep_dir: Path) -> dict[str, object]:
    # No summary.json: running only while a process holds the job's lock (else killed, said so).
    summary = read_summary(run_dir) or unfinished_record(run_dir)
    final = summary.get("final") or {}
    row = {
        **run_info(run_dir, sweep_dir), "status": summary.get("status", "running"),
        "steps": summary.get("steps", last_step(run_dir)),
        "test_accuracy": final.get("test/accuracy"), "test_loss": final.get("test/loss"),
        "train_loss": final.get("train/loss"), "best_accuracy": summary.get("best_accuracy"),
        "best_step": summary.get("best_step"), "wall_time_s": summary.get("wall_time_s"),
        "error": summary.get("error"),
    }
    return {c: row.get(c) for c in COLUMNS}


def summarize(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job under `sweep_dir` (COLUMNS)."""
    root = Path(sweep_dir)
    return pd.DataFrame([job_row(d, root) for d in find_jobs(root)], columns=COLUMNS)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Atomically (bnrepro.files): parallel jobs may refresh it at once, and a reader must never
    see half a table."""
    with atomic_open(path, newline="") as f:
        frame.to_csv(f, index=False)


def refresh(sweep_dir: str | Path) -> None:
    """Rewrite SWEEP_DIR/summary.csv; never fails the job that calls it."""
    try:
        write_csv(summarize(sweep_dir), Path(sweep_dir) / SUMMARY_CSV)
    except Exception as err:  # noqa: BLE001 - a summary problem must not turn a finished job into a failure
        print(f"Could not refresh {Path(sweep_dir) / SUMMARY_CSV}: {type(err).__name__}: {err}", file=sys.stderr)


def table(frame: pd.DataFrame) -> str:
    counts = frame.status.value_counts()
    shown = frame.drop(columns=["experiment", "data"]).copy()
    shown["error"] = shown.error.fillna("").astype(str).str.split("\n").str[0].str.slice(0, 60)
    head = f"{len(frame)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    return head + "\n" + shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")


def write(sweep_dir: Path, out: Path | None) -> list[Path]:
    """Write the table of every job to `out` (default SWEEP_DIR/summary.csv) and print it."""
    frame = summarize(sweep_dir)
    if frame.empty:
        raise FileNotFoundError(f"no job directories (config.yaml, summary.json or {METRICS_FILE}) under {sweep_dir}.")
    out = out or sweep_dir / SUMMARY_CSV
    write_csv(frame, out)
    print(table(frame))
    return [out]


main = command(__doc__.split("\n\n")[0], write, f"the CSV to write (default: SWEEP_DIR/{SUMMARY_CSV})",
               prog="bnrepro-summarize")

if __name__ == "__main__":
    sys.exit(main())
