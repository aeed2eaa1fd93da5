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
        runs = runs.loc[[(p / PREDICTIONS_FILE).is_file() for p in runs.path]]  # .loc: an empty list selects rows
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


# --- Protocol v2's Figure 4 (issue 31; configs/experiment/fig2_v2_fashion_mnist.yaml) ---------------------------
# Members: the reporting runs of the val-best accelerated recipe (bnrepro.analysis.selection), their final models'
# probabilities on the whole test split (test_probs.csv with trainer.final_test). The single member it is compared
# with is chosen on VALIDATION (the final model with the highest validation accuracy, full_test.json), not on
# test, and BN-Baseline's val-chosen run stands beside it.

def val_chosen(runs: pd.DataFrame) -> int:
    """The position in `runs` of the member whose final model has the highest validation accuracy (its
    full_test.json; the first on a tie). Raises where no run has one (trained before protocol v2)."""
    from bnrepro.analysis import fulltest

    scores = [((fulltest.read(p) or {}).get("final") or {}).get("val_accuracy", np.nan) for p in runs.path]
    if np.all(np.isnan(scores)):
        raise FileNotFoundError(f"No full_test.json among {', '.join(map(str, runs.path))}: the runs predate protocol "
                                "v2 (trainer.final_test), so no member can be chosen on validation.")
    return int(np.nanargmax(scores))


def probabilities(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(members x examples x classes, labels) from the runs' test_probs.csv, checked to share examples."""
    probs, labels = [], None
    for path in runs.path:
        frame = pd.read_csv(Path(path) / PREDICTIONS_FILE)
        if labels is not None and not np.array_equal(labels, frame.label.to_numpy()):
            raise ValueError(f"{Path(path) / PREDICTIONS_FILE} holds other test examples than {runs.path.iloc[0]}'s.")
        labels = frame.label.to_numpy()
        probs.append(frame.drop(columns="label").to_numpy(float))
    return np.stack(probs), labels


def v2_table(sweep_dir: Path, recipe: str, baseline: str = "bn_baseline") -> tuple[pd.DataFrame, np.ndarray, int]:
    """Rows (model, kind, seed, test_error, val_accuracy) for every member, the ensemble, the val-chosen
    member and BN-Baseline's runs and val-chosen run; and the 0/1 matrix [ensemble, val-chosen member,
    BN-Baseline's val-chosen run] over the test examples, for the intervals (`ensemble_gain`)."""
    from bnrepro.analysis import fulltest

    runs, base = members([sweep_dir], recipe), members([sweep_dir], baseline)
    stack, labels = probabilities(runs)
    base_stack, base_labels = probabilities(base)
    if not np.array_equal(labels, base_labels):
        raise ValueError(f"{recipe} and {baseline} were evaluated on other test examples.")
    singles, ensemble = stack.argmax(2) == labels, stack.mean(0).argmax(1) == labels
    i, j = val_chosen(runs), val_chosen(base)
    val = [((fulltest.read(p) or {}).get("final") or {}).get("val_accuracy", np.nan) for p in runs.path]
    base_val = [((fulltest.read(p) or {}).get("final") or {}).get("val_accuracy", np.nan) for p in base.path]
    base_singles = base_stack.argmax(2) == labels
    rows = [{"model": f"{recipe} seed {r.seed}", "kind": "member", "seed": r.seed,
             "test_error": 100 * (1 - singles[n].mean()), "val_accuracy": val[n]} for n, r in enumerate(runs.itertuples())]
    rows += [{"model": f"{baseline} seed {r.seed}", "kind": "baseline", "seed": r.seed,
              "test_error": 100 * (1 - base_singles[n].mean()), "val_accuracy": base_val[n]}
             for n, r in enumerate(base.itertuples())]
    rows += [{"model": f"ensemble of the {len(runs)} {recipe} runs", "kind": "ensemble",
              "test_error": 100 * (1 - ensemble.mean())},
             {"model": f"{recipe} chosen on validation (seed {runs.seed.iloc[i]})", "kind": "val_chosen",
              "seed": runs.seed.iloc[i], "test_error": 100 * (1 - singles[i].mean()), "val_accuracy": val[i]},
             {"model": f"{baseline} chosen on validation (seed {base.seed.iloc[j]})", "kind": "baseline_val_chosen",
              "seed": base.seed.iloc[j], "test_error": 100 * (1 - base_singles[j].mean()), "val_accuracy": base_val[j]}]
    c = np.column_stack([ensemble, singles[i], base_singles[j]]).astype(float)
    return pd.DataFrame(rows), c, len(labels)
