"""Figure 4 under protocol v2 (issue 31; configs/experiment/fig2_v2_fashion_mnist.yaml): an ensemble of the
reporting runs of the val-best accelerated recipe (results/fig2_select_v2_fashion_mnist/chosen.yaml's
fig4_recipe), their final models' class probabilities averaged on the whole test split, against the member
chosen on validation (not test) and against BN-Baseline's val-chosen run (bnrepro.analysis.ensemble.v2_table).

    python scripts/table_fig4_v2.py outputs/results/fig2_v2_fashion_mnist --recipe bn_x30 --out results/fig4_v2_fashion_mnist
    (writes fig4.csv and fig4.md; without --out, prints the Markdown; --select SWEEP instead of --recipe reads
    the recipe from the selection sweep, as select_fig2_k.py chose it)

Intervals: t intervals over test examples (bnrepro.analysis.stats), every model judged on the same examples.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.ensemble import ensemble_gain, v2_table
from bnrepro.analysis.results import provenance_lines
from bnrepro.analysis.selection import chosen_from
from bnrepro.analysis.stats import interval
from bnrepro.paper import FIG4_ENSEMBLE


def gap(c: np.ndarray, k: int) -> tuple[float, float, float]:
    """The ensemble's test error minus column k's (points), with its interval over test examples."""
    return tuple(interval([c[:, [0, k]]], ensemble_gain))


def write(sweep_dir: Path, out: Path | None, recipe: str | None = None, select: Path | None = None
          ) -> str | list[Path]:
    if (recipe is None) == (select is None):
        raise ValueError("Give the members' variant with --recipe (chosen.yaml's fig4_recipe) or the selection "
                         "sweep with --select (it is chosen there again), one of the two.")
    recipe = recipe or chosen_from(select)["fig4_recipe"]
    frame, c, examples = v2_table(sweep_dir, recipe)
    members = frame[frame.kind == "member"]
    vs_member, vs_base = gap(c, 1), gap(c, 2)
    lines = [f"# Figure 4 at CPU scale, protocol v2: an ensemble of {len(members)} {recipe} networks", "",
             f"Members: the reporting runs of {recipe} in `{sweep_dir}` (the val-best accelerated recipe: "
             "results/fig2_select_v2_fashion_mnist/chosen.yaml), seeds differing only; test split: the whole "
             f"{examples:,} images; ensemble: their final models' class probabilities averaged.", "",
             *provenance_lines(sweep_dir), "",
             "| model | kind | validation accuracy | test error |", "| --- | --- | --- | --- |",
             *(f"| {r.model} | {r.kind} | {'-' if np.isnan(r.val_accuracy) else f'{100 * r.val_accuracy:.2f}%'} | "
               f"{r.test_error:.2f}% |" for r in frame.fillna({"val_accuracy": np.nan}).itertuples()), "",
             f"Ensemble - member chosen on validation: **{vs_member[0]:+.2f} points** [95% interval {vs_member[1]:+.2f}, "
             f"{vs_member[2]:+.2f}]; ensemble - BN-Baseline chosen on validation: **{vs_base[0]:+.2f} points** "
             f"[{vs_base[1]:+.2f}, {vs_base[2]:+.2f}] (t intervals over test examples, bnrepro.analysis.stats).", "",
             f"Paper (ImageNet): {FIG4_ENSEMBLE}."]
    text = "\n".join(lines) + "\n"
    return text if out is None else write_files(out, {"fig4.csv": frame, "fig4.md": text})


main = command(__doc__, write, "directory for fig4.csv and fig4.md (default: print the Markdown)",
               options=[(("--recipe",), {"help": "the members' variant (chosen.yaml's fig4_recipe)"}),
                        (("--select",), {"type": Path, "help": "the selection sweep, to read the recipe from"})])

if __name__ == "__main__":
    sys.exit(main())
