"""Protocol v2's whole-test-split numbers (issue 31) as the tables read them: each run's full_test.json
(bnrepro/training/final_eval.py, trainer.final_test): the final model and the best-validation model
(best_val.pt) on the whole test split, not the data.test_size subsample evaluated during training.

Runs from before protocol v2 have no such file: their cells read NA_BEFORE_V2, and a sweep none of
whose runs has one adds no column at all, so the committed v1 tables regenerate byte for byte.
No torch, no Hydra.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bnrepro import FULL_TEST_FILE
from bnrepro.analysis.stats import mean_interval

NA_BEFORE_V2 = "n/a (before protocol v2)"
MODELS = ("final", "best_val")


def read(run_dir: str | Path) -> dict | None:
    """A run's full_test.json, None where it has none (or an unreadable one)."""
    path = Path(run_dir) / FULL_TEST_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None


def per_run(sweep_dir: str | Path, runs: pd.Series) -> pd.DataFrame:
    """One row per run (its directory relative to the sweep): full_test_size and, per model, its test and
    validation accuracy and step (NaN where the run has no full_test.json or kept no best-val model)."""
    rows = []
    for run in runs:
        record = read(Path(sweep_dir) / run) or {}
        row = {"run": run, "full_test_size": record.get("test_size", math.nan)}
        for model in MODELS:
            entry = record.get(model) or {}
            for key in ("test_accuracy", "val_accuracy", "step"):
                row[f"{model}_full_{key}"] = entry.get(key, math.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "full_test_size",
                                       *(f"{m}_full_{k}" for m in MODELS for k in ("test_accuracy", "val_accuracy", "step"))])


def present(frame: pd.DataFrame) -> bool:
    """Whether any run of `per_run`'s frame has whole-test-split numbers."""
    return bool(frame.full_test_size.notna().any()) if len(frame) else False


def cell(values) -> str:
    """A group's seed-mean accuracy [95% t interval] in percent; NA_BEFORE_V2 where no run has one."""
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return NA_BEFORE_V2
    e = mean_interval(values.to_numpy())
    if len(values) < 2 or math.isnan(e.lo):
        return f"{100 * e.value:.2f}% (1 seed)"
    return f"{100 * e.value:.2f} [{100 * e.lo:.2f}, {100 * e.hi:.2f}]%"


def one(value: float) -> str:
    return NA_BEFORE_V2 if value is None or math.isnan(value) else f"{100 * value:.2f}%"
