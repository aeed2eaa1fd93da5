"""Figure 4 of the paper at this scale: single BN-x30 networks against their ensemble (the average
of their class probabilities), test error, from the runs' saved predictions (bnrepro.analysis.ensemble).

    python scripts/table_fig4.py outputs/results/fig4_fashion_mnist --members outputs/results/fig2_fashion_mnist \
        --out results/fig4_fashion_mnist
    (writes fig4.csv, one row per member and one per ensemble, and fig4.md; without --out, prints it)

Members: the completed `bn_x30` runs of --members (make fig2's) and of SWEEP_DIR (make fig4's).
The gain's 95% interval is a t interval over test examples (bnrepro.analysis.stats: the jackknife's
standard error, n = the test examples), every model judged on
the same examples. No member is chosen on the test split: the best single member is
named only as the comparison the paper makes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.ensemble import correct, ensemble_gain, members
from bnrepro.analysis.results import provenance_lines
from bnrepro.analysis.stats import interval
from bnrepro.analysis.sweeps import wall_times
from bnrepro.paper import FIG4_ENSEMBLE


def table(sweep_dir: Path, others: list[Path]) -> tuple[pd.DataFrame, tuple[float, float, float], int]:
    runs = members([*others, sweep_dir])
    c, labels = correct(runs)
    rows = [{"model": f"BN-x30 seed {r.seed} (dropout {r['model.dropout']:g})", "kind": "single", "seed": r.seed,
             "experiment": r.experiment, "test_error": 100 * (1 - c[:, i + 1].mean()), "run": str(r.path)}
            for i, (_, r) in enumerate(runs.iterrows())]
    first = runs.sweep == str(others[0]) if others else runs.sweep == str(sweep_dir)
    if others and first.sum() and (~first).sum():
        part, _ = correct(runs[first])
        rows.append({"model": f"ensemble of the {int(first.sum())} from {Path(others[0]).name}", "kind": "ensemble",
                     "test_error": 100 * (1 - part[:, 0].mean())})
    rows.append({"model": f"ensemble of all {len(runs)}", "kind": "ensemble", "test_error": 100 * (1 - c[:, 0].mean())})
    return pd.DataFrame(rows), tuple(interval([c], ensemble_gain)), len(labels)


def markdown(sweep_dir: Path, others: list[Path], frame: pd.DataFrame, gain, examples: int) -> str:
    singles = frame[frame.kind == "single"]
    _, elapsed = wall_times(sweep_dir)
    lines = ["# Figure 4 at CPU scale: an ensemble of BN-x30 networks", "",
             f"Members: {len(singles)} BN-x30 runs ({', '.join(f'`{d}`' for d in [*others, sweep_dir])}); "
             f"test split: {examples:,} examples; ensemble: their class probabilities averaged.", "",
             *provenance_lines(sweep_dir),
             f"Wall time of {sweep_dir.name}: {elapsed / 60:.1f} min (the members from other sweeps: their own reports).",
             "", "| model | test error |", "| --- | --- |",
             *(f"| {r.model} | {r.test_error:.2f}% |" for r in frame.itertuples()), "",
             f"Mean single member: {singles.test_error.mean():.2f}%; best single member: {singles.test_error.min():.2f}%.",
             f"Ensemble of all - best single member: **{gain[0]:+.2f} points** [95% interval {gain[1]:+.2f}, "
             f"{gain[2]:+.2f}] (t interval over test examples, bnrepro.analysis.stats).", "",
             f"Paper (ImageNet): {FIG4_ENSEMBLE}."]
    return "\n".join(lines) + "\n"


def write(sweep_dir: Path, out: Path | None, members_: list[Path]) -> str | list[Path]:
    frame, gain, examples = table(sweep_dir, members_)
    text = markdown(sweep_dir, members_, frame, gain, examples)
    return text if out is None else write_files(out, {"fig4.csv": frame, "fig4.md": text})


main = command(__doc__, write, "directory for fig4.csv and fig4.md (default: print the Markdown)",
               options=[(("--members",), {"dest": "members_", "type": Path, "nargs": "*", "default": [],
                                          "help": "more sweep directories whose bn_x30 runs join the ensemble "
                                                  "(make fig2's)"})])

if __name__ == "__main__":
    sys.exit(main())
