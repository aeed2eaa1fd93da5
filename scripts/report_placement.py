"""Where BN goes, as numbers: a placement_mlp or placement_conv sweep as a Markdown table beside
what others reported (bnrepro.paper.PLACEMENT_ANCHORS), and the per-run CSV.

    python scripts/report_placement.py outputs/results/placement_mlp_fashion_mnist --out results/placement_mlp_fashion_mnist
    (writes report.md and runs.csv into --out; without --out, prints the Markdown)

Per activation and placement: final test accuracy (the last evaluation; mean ± sample std over
seeds, and n), best validation accuracy and the test accuracy at that step (sweeps without a
validation split: best test accuracy), the plateau gain of the seed-mean validation curve over the
last 25% of the steps (bnrepro.analysis.fig3's rule), and the final quantile skew of the last probed layer's typical
unit, of the normalization's output and of the nonlinearity's input (see scripts/plot_placement.py).
"after - before": the difference of the seed means, ± the standard error of that difference.
Reads metrics.csv, config.yaml, summary.json and provenance.json only.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis import fig3
from bnrepro.analysis.results import last_layer, provenance_lines
from bnrepro.analysis.sweeps import (PLACEMENT_ORDER, band, difference, finals, load, placement_label, report_command,
                                     wall_times)
from bnrepro.paper import PLACEMENT_ANCHORS


def plateau(metrics, runs) -> str:
    """fig3.plateau_gain of these runs' seed-mean curve (on best_split), as "+0.12 (held)"."""
    return fig3.gain_cell(fig3.arm_gain(metrics, metrics.run.isin(runs.run), runs.best_split.iloc[0]))


def report(sweep_dir: Path) -> tuple[str, object]:
    metrics = load(sweep_dir)
    runs = finals(metrics)
    norm = metrics["bn.norm"].dropna().iloc[0]
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    model = ", ".join(map(str, metrics["model.name"].dropna().unique()))
    summed, elapsed = wall_times(sweep_dir)
    status = runs.status.value_counts()
    lines = [f"# Where the normalization goes: {model} on {data}", "",
             f"Sweep: `{sweep_dir}`; {len(runs)} runs ({', '.join(f'{n} {s}' for s, n in status.items())}).", "",
             *provenance_lines(sweep_dir),
             f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
             f"{summed / 60:.1f} min summed over runs.", "",
             f"Final test accuracy in % (last evaluation, mean ± std over seeds); skew: quantile skew "
             f"(p85 + p15 - 2 p50) / (p85 - p15) at the last probe of `{last_layer(metrics)}`'s typical unit, "
             "of the normalization's output and of the nonlinearity's input (0: symmetric; 1: p15 = p50).", ""]
    for activation, r in runs.groupby("model.activation"):
        split = r.best_split.iloc[0]
        lines += [f"## {activation}", "",
                  f"| placement | seeds | final test accuracy (%) | best {split} accuracy (%) | test there (%) "
                  f"| plateau gain, last 25% (points) | skew of norm output | skew of g input |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for placement in [p for p in PLACEMENT_ORDER if p in set(r.placement)]:
            p = r[r.placement == placement]
            lines.append(f"| {placement_label(placement, norm)} | {len(p)} | {band(p.final)} | {band(p.best)} | "
                         f"{band(p.test_at_best)} | {plateau(metrics, p)} | "
                         f"{band(p.skew_norm_unit, 1, 3)} | {band(p.skew_unit, 1, 3)} |")
        before, after = r[r.placement == "before"].final, r[r.placement == "after"].final
        lines += ["", f"after - before: {difference(after, before)} points (final accuracy).", ""]
    lines += ["## Beside what others reported (accuracy in %)", "",
              "| source | setting | before | after | after - before | runs |", "| --- | --- | --- | --- | --- | --- |"]
    for source, setting, before, after, n in PLACEMENT_ANCHORS:
        delta = float(after.split()[0]) - float(before.split()[0])
        lines.append(f"| {source} | {setting} | {before} | {after} | {delta:+.2f} | {n} |")
    for activation, r in runs.groupby("model.activation"):
        before, after = r[r.placement == "before"].final, r[r.placement == "after"].final
        lines.append(f"| this sweep | {model}, {data}, {activation} | {band(before)} | {band(after)} | "
                     f"{difference(after, before)} | {len(before)} + {len(after)} |")
    return "\n".join(lines) + "\n", runs


COLUMNS = ["run", "seed", "data", "status", "model.name", "model.activation", "bn.norm", "placement",
           "trainer.batch_size", "step", "examples", "final", "best_split", "best", "best_step", "test_at_best",
           "skew_norm_unit", "skew_unit"]

SORT_BY = ["model.activation", "placement", "seed"]


main = report_command(__doc__, report, COLUMNS, SORT_BY)

if __name__ == "__main__":
    sys.exit(main())
