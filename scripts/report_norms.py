"""The normalization family against the batch size, as numbers: a norm_batchsize sweep as a
Markdown table (norms x batch sizes) beside what seed 004 leads one to expect, and the per-run CSV.

    python scripts/report_norms.py outputs/results/norm_batchsize_fashion_mnist --out results/norm_batchsize_fashion_mnist
    (writes report.md and runs.csv into --out; without --out, prints the Markdown)

Cells: final test accuracy in % (the last evaluation), mean ± sample std over seeds; then each
cell's plateau gain (Figure 3's rule, bnrepro.analysis.fig3: the seed-mean validation curve's best,
up over the last 25% of the steps; held below 0.3 points). The check line compares BN with layer
normalization at the smallest batch size: the difference of the seed means ± the standard error of
that difference. Reads the runs' files only.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis import fig3
from bnrepro.analysis.results import provenance_lines
from bnrepro.analysis.sweeps import NORM_NAMES, NORM_ORDER, band, difference, finals, load, report_command, wall_times
from bnrepro.paper import BN_STATS_ANCHORS


def report(sweep_dir: Path) -> tuple[str, object]:
    metrics = load(sweep_dir)
    runs = finals(metrics)
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    model = ", ".join(map(str, metrics["model.name"].dropna().unique()))
    placement = ", ".join(map(str, metrics["bn.placement"].dropna().unique()))
    sizes = sorted(runs["trainer.batch_size"].unique())
    norms = [n for n in NORM_ORDER if n in set(runs["bn.norm"])]
    summed, elapsed = wall_times(sweep_dir)
    status = runs.status.value_counts()
    schedule = runs.groupby("trainer.batch_size").agg(steps=("trainer.max_steps", "max"), lr=("optim.lr", "max"))
    lines = [f"# Normalization against batch size: {model} on {data}", "",
             f"Sweep: `{sweep_dir}`; {len(runs)} runs ({', '.join(f'{n} {s}' for s, n in status.items())}); "
             f"the norm {placement} each nonlinearity.", "",
             *provenance_lines(sweep_dir),
             f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
             f"{summed / 60:.1f} min summed over runs.", "",
             "Schedule (same examples at every batch size; linear learning-rate scaling): " +
             "; ".join(f"batch {b}: {int(r.steps):,} steps at lr {r.lr:g}" for b, r in schedule.iterrows()) + ".", "",
             "Final test accuracy in % (last evaluation), mean ± std over seeds (n):", "",
             "| norm | " + " | ".join(f"batch {b}" for b in sizes) + " |",
             "| --- |" + " --- |" * len(sizes)]
    cell = {(n, b): runs[(runs["bn.norm"] == n) & (runs["trainer.batch_size"] == b)] for n in norms for b in sizes}
    for norm in norms:
        cells = [f"{band(r.final)} ({len(r)})" if len(r) else "-" for r in (cell[norm, b] for b in sizes)]
        lines.append(f"| {NORM_NAMES.get(norm, norm)} ({norm}) | " + " | ".join(cells) + " |")
    lines += ["", "Plateau gain, last 25% of the steps (points; held below "
              f"{100 * fig3.PLATEAU_GAIN:g}: an arm not held was still improving when read):", "",
              "| norm | " + " | ".join(f"batch {b}" for b in sizes) + " |", "| --- |" + " --- |" * len(sizes)]
    for norm in norms:
        lines.append(f"| {NORM_NAMES.get(norm, norm)} ({norm}) | " + " | ".join(
            fig3.gain_cell(fig3.arm_gain(metrics, metrics.run.isin(cell[norm, b].run))) if len(cell[norm, b]) else "-"
            for b in sizes) + " |")
    small = runs[runs["trainer.batch_size"] == sizes[0]] if sizes else runs
    bn, ln = small[small["bn.norm"] == "batch"].final, small[small["bn.norm"] == "layer"].final
    conv = "inception" in model
    lines += ["", f"Expected ({BN_STATS_ANCHORS['gn_flat']}): at batch 2 BN below layer and group norm; here by less, "
              "as each statistic pools 2 x H x W values." if conv else
              "Expected (seed 004): at small batches BN's statistics are noisy and BN falls behind; "
              "layer (and group) normalization use each example alone and do not depend on the batch size.", ""]
    if len(bn) and len(ln):
        verdict = "below" if bn.mean() < ln.mean() else "not below"
        lines.append(f"Check: at batch {sizes[0]}, BN - LN = {difference(bn, ln)} points: BN is {verdict} layer "
                     "normalization.")
    return "\n".join(lines) + "\n", runs


COLUMNS = ["run", "seed", "data", "status", "model.name", "bn.norm", "placement", "trainer.batch_size",
           "trainer.max_steps", "optim.lr", "step", "examples", "final", "best", "skew_norm_unit", "skew_unit"]

SORT_BY = ["bn.norm", "trainer.batch_size", "seed"]


main = report_command(__doc__, report, COLUMNS, SORT_BY)

if __name__ == "__main__":
    sys.exit(main())
