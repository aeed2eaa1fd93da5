"""What issue 18's experiments measured: a bn_statistics or bn_shift sweep as Markdown (report.md)
and a per-run CSV (runs.csv), the anchors' numbers beside ours.

    python scripts/report_bn_statistics.py outputs/results/bn_statistics_fashion_mnist \
        --out results/bn_statistics_fashion_mnist
    python scripts/report_bn_statistics.py outputs/results/bn_shift_fashion_mnist --out results/bn_shift_fashion_mnist
    (the experiment is read from the runs' configs; without --out, prints the Markdown)

Each claim is bnrepro.analysis.bn_statistics.claims' statistic with its 95% t interval over
seeds and the scorecard's verdict (bnrepro.analysis.stats.verdict; scripts/scorecard.py states the
rule); then the numbers behind it: for bn_statistics the final validation error per method and
normalization batch (test beside it), for bn_shift the test error per corruption and severity with
the training and the recomputed statistics (each run's shift.csv, scripts/eval_shift.py). Reads
metrics.csv, config.yaml, summary.json, provenance.json and shift.csv only.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bnrepro.analysis import bn_statistics as bns
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.results import provenance_lines
from bnrepro.analysis.verdicts import POLICY, claim_table, score
from bnrepro.analysis.sweeps import wall_times

TITLES = {"bn_statistics": "BN's statistics against the normalization batch (issue 18)",
          "bn_statistics_conv": "BN's statistics against the normalization batch (issue 18)",
          "bn_shift": "BN's statistics under a distribution shift (issue 18)"}
RUN_COLUMNS = {"bn_statistics": ["run", "method", "batch", "seed", "data", "model.name", "status", "divergence",
                                 "steps", "final", "final_test", "error", "test_error",
                                 *(k for k in bns.KEYS if k != "model.name")],
               "bn_shift": ["run", "seed", "data", "model.name", "status", "step", "corruption", "severity",
                            "statistics", "accuracy", "error", "loss"]}


def ci(error: float, lo: float, hi: float) -> str:
    if math.isnan(error):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):  # one seed: no spread to bound it by
        return f"{error:.2f} [unbounded]"
    return f"{error:.2f} [{lo:.2f}, {hi:.2f}]"


def method_lines(runs: pd.DataFrame) -> list[str]:
    """Method x normalization batch: val error [95% CI] (runs, diverged where any), then test error."""
    t = bns.table(runs)
    batches = sorted(t.batch.dropna().unique())
    cols = [*batches, math.nan] if t.batch.isna().any() else batches
    head = " | ".join("no batch" if math.isnan(b) else f"batch {b:g}" for b in cols)
    lines = ["Final validation error in % (last evaluation; a diverged run counts at "
             f"{bns.CHANCE:g}%), seed mean [95% t interval] (runs):", "",
             f"| method | {head} |", "| --- |" + " --- |" * len(cols)]
    tests = [f"| method | {head} |", "| --- |" + " --- |" * len(cols)]
    for label in bns.methods(runs):
        r = t[t.method == label]
        cells, test = [], []
        for b in cols:
            x = r[r.batch.isna()] if math.isnan(b) else r[r.batch == b]
            if not len(x):
                cells.append("-")
                test.append("-")
                continue
            x = x.iloc[0]
            cells.append(f"{ci(x.error, x.lo, x.hi)} ({x.runs}{f', {x.diverged} diverged' if x.diverged else ''})")
            test.append(f"{x.test_error:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        tests.append(f"| {label} | " + " | ".join(test) + " |")
    return [*lines, "", "Final test error in %, seed mean (reported beside val, not read by the claims):", "", *tests]


def shift_lines(shift: pd.DataFrame) -> list[str]:
    t = bns.shift_table(shift).set_index(["corruption", "severity", "statistics"])
    lines = ["Test error in %, seed mean [95% t interval], with the training statistics and with statistics "
             "recomputed on the corrupted images (severity 0: the clean test split):", "",
             "| corruption | severity | training statistics | target statistics | training - target |",
             "| --- | --- | --- | --- | --- |"]
    for (kind, severity), _ in t.groupby(level=["corruption", "severity"], sort=False):
        a, b = t.loc[(kind, severity, "train")], t.loc[(kind, severity, "target")]
        lines.append(f"| {kind} | {severity} | {ci(a.error, a.lo, a.hi)} | {ci(b.error, b.lo, b.hi)} | "
                     f"{a.error - b.error:+.2f} |")
    return lines


def report(sweep_dir: Path) -> tuple[str, pd.DataFrame]:
    metrics = bns.load(sweep_dir)
    runs = bns.per_run(metrics)
    experiment = str(metrics.experiment.dropna().iloc[0])
    if experiment not in TITLES:
        raise FileNotFoundError(f"{sweep_dir} holds experiment {experiment!r}, not one of {', '.join(TITLES)}.")
    shift = bns.load_shift(sweep_dir) if experiment == "bn_shift" else None
    summed, elapsed = wall_times(sweep_dir)
    trained = runs[~runs.run.isin(bns.inference_run_names(runs))]
    status = trained.status.value_counts()
    data, model = (", ".join(map(str, metrics[k].dropna().unique())) for k in ("data", "model.name"))
    lines = [f"# {TITLES[experiment]}: {model} on {data}", "",
             f"Sweep: `{sweep_dir}`; {len(trained)} runs ({', '.join(f'{n} {s}' for s, n in status.items())})"
             + (f", and {len(runs) - len(trained)} inference-time choices evaluated on their EMA runs after training "
                f"(scripts/eval_statistics.py)" if len(runs) > len(trained) else "") + ", "
             f"seeds {', '.join(map(str, sorted(runs.seed.unique())))}. Protocol and expectations: "
             f"configs/experiment/{experiment}.yaml.", "", *provenance_lines(sweep_dir), "",
             f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
             f"{summed / 60:.1f} min summed over runs"
             + (" (training only: scripts/eval_shift.py's time is not recorded)." if shift is not None else "."), "",
             "## Claims", "", POLICY + " The anchors are ResNet-50 on ImageNet; ours is a small network on a small "
             "data set, so compare signs, not sizes.", "",
             *claim_table([score(c) for c in bns.claims(experiment, metrics if shift is None else shift)]), ""]
    if shift is None:
        lines += ["## Per method and normalization batch", "", *method_lines(runs), ""]
        return "\n".join(lines), runs
    clean = runs.assign(final=100 * runs.final, final_test=100 * runs.final_test)
    lines += ["## Per corruption", "", *shift_lines(shift), "",
              f"Training's own final accuracy (last evaluation), seed mean: val {clean.final.mean():.2f}%, "
              f"test {clean.final_test.mean():.2f}% ({len(runs)} runs; {shift.run.nunique()} with shift.csv).", ""]
    return "\n".join(lines), shift


def write(sweep_dir: Path, out: Path | None):
    text, rows = report(sweep_dir)
    if out is None:
        return text
    experiment = "bn_shift" if "corruption" in rows else "bn_statistics"
    order = ["run", "corruption", "severity"] if experiment == "bn_shift" else ["method", "batch", "seed"]
    return write_files(out, {"report.md": text, "runs.csv": rows[RUN_COLUMNS[experiment]].sort_values(order)})


main = command(__doc__, write, "directory for report.md and runs.csv (default: print the Markdown)")

if __name__ == "__main__":
    sys.exit(main())
