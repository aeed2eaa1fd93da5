"""Figure 4's ensemble from the runs' saved predictions (trainer.save_predictions: each final
model's class probabilities on the test split, test_probs.csv). No torch, no training.

`members(dirs, variant)` finds the completed runs of `variant` under the sweep directories;
`correct(members)` gives a test examples x (ensemble, member 1, ..., member n) matrix of 0/1, the
ensemble being the average of the members' class probabilities (Sec. 4.2.3: "averaged class
probabilities"), which scripts/table_fig4.py and scripts/scorecard.py summarize.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis.results import load_runs
from bnrepro import PREDICTIONS_FILE


def members(sweep_dirs: list[Path], variant: str = "bn_x30") -> pd.DataFrame:
    """The completed runs of `variant` that saved predictions: run (its directory), sweep, seed,
    experiment, dropout; in the order of the sweeps given, then by seed."""
    frames = []
    for sweep in sweep_dirs:
        runs = load_runs(sweep, ("model.dropout",))
        runs = runs[(runs.variant == variant) & (runs.status == "completed")].copy()
        runs["path"] = [Path(sweep) / r for r in runs.run]
        runs = runs[[(p / PREDICTIONS_FILE).is_file() for p in runs.path]]
        frames.append(runs.assign(sweep=str(sweep)).sort_values("seed"))
    found = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if found.empty:
        raise FileNotFoundError(f"No completed {variant} run with {PREDICTIONS_FILE} under "
                                f"{', '.join(map(str, sweep_dirs))}: train them with trainer.save_predictions=true.")
    return found


def correct(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(examples x (1 + members) 0/1 matrix: the ensemble's column first, then each member's;
    the labels). Every member must have been evaluated on the same test examples."""
    probs, labels = [], None
    for path in runs.path:
        frame = pd.read_csv(Path(path) / PREDICTIONS_FILE)
        if labels is not None and not np.array_equal(labels, frame.label.to_numpy()):
            raise ValueError(f"{path / PREDICTIONS_FILE} holds other test examples than {runs.path.iloc[0]}'s: "
                             "the members of an ensemble must share data.test_size.")
        labels = frame.label.to_numpy()
        probs.append(frame.drop(columns="label").to_numpy(float))
    stack = np.stack(probs)  # members x examples x classes
    ensemble = stack.mean(0).argmax(1) == labels
    singles = stack.argmax(2) == labels
    return np.column_stack([ensemble, singles.T]).astype(float), labels


def ensemble_gain(c: list[np.ndarray]) -> float:
    """[correct matrix] -> the ensemble's test error minus its best member's (points; < 0: the
    ensemble is better). The statistic `stats.interval` reads over test examples (rows)."""
    errors = 100 * (1 - c[0].mean(0))
    return float(errors[0] - errors[1:].min())
