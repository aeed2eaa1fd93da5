"""What issue 17's experiments measured: a why_noisy_bn, why_ics, why_landscape or lr_range sweep (or
its `_conv` twin on the small Inception) as Markdown (report.md) and a per-run CSV (runs.csv), the
anchors' numbers beside ours.

    python scripts/report_why.py outputs/results/why_ics_fashion_mnist --out results/why_ics_fashion_mnist
    (the experiment is read from the runs' configs; without --out, prints the Markdown)

Each claim is bnrepro.analysis.why.claims' statistic with its 95% t interval over seeds and the
scorecard's verdict (bnrepro.analysis.verdicts.score, the one policy of bnrepro.analysis.stats);
then per variant the numbers behind it, on the validation split (test beside it). Reads
metrics.csv, config.yaml, summary.json and provenance.json only.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import why
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.results import provenance_lines
from bnrepro.analysis.stats import mean_interval
from bnrepro.analysis.verdicts import POLICY, claim_table, score
from bnrepro.analysis.sweeps import wall_times

TITLES = {"why_noisy_bn": "Noisy BN (Santurkar et al. 2018, Sec. 2.1)",
          "why_ics": "Gradient-based internal covariate shift (Santurkar et al. 2018, Def. 2.1)",
          "why_landscape": "The landscape along the gradient (Santurkar et al. 2018, Sec. 3.2)",
          "lr_range": "The learning-rate range (Bjorck et al. 2018)"}


def band(values: np.ndarray, scale: float = 1.0, digits: int = 2) -> str:
    """Seed mean [95% t interval] of one group of per-seed values."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)] * scale
    if not len(values):
        return "n/a"
    m, lo, hi = mean_interval(values)
    if math.isnan(lo) or math.isinf(lo):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def variant_lines(runs: pd.DataFrame) -> list[str]:
    drift_cols = [c for c in runs.columns if c.endswith("/rel_movement")]
    head = ["variant", "runs", "diverged", "final val (%)", "best val (%)", "final test (%)",
            *[f"{c.split('/')[0]} drift (rel.)" for c in drift_cols]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for v in why.variants(runs):
        r = runs[runs.variant == v]
        good = why.ok(r)
        cells = [why.NAMES.get(v, v), str(len(r)), str(int((r.status == "diverged").sum())), band(good.final, 100),
                 band(good.best, 100), band(good.final_test, 100), *(band(good[c], 1, 3) for c in drift_cols)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ics_lines(metrics: pd.DataFrame) -> list[str]:
    ics = why.ics_per_run(metrics)
    layer_names = [*why.layers(metrics, "ics"), "mean"]
    lines = ["Per layer, each run's mean over the measured steps, then the seed mean [95% CI] "
             "(`mean`: layers 2.., the claim's number):", "",
             "| layer | variant | ||G - G'|| / ||G|| | 1 - cos(G, G') | ||G - G'|| |", "| --- | --- | --- | --- | --- |"]
    for layer in layer_names:
        for v in why.variants(ics):
            r = ics[(ics.layer == layer) & (ics.variant == v)]
            lines.append(f"| {layer} | {why.NAMES.get(v, v)} | {band(r.rel_diff, 1, 3)} | {band(r.one_minus_cos, 1, 3)} | "
                         f"{band(r.l2_diff, 1, 3)} |")
    return lines


def landscape_lines(metrics: pd.DataFrame) -> list[str]:
    land = why.landscape_per_run(metrics)
    cols = [("loss_range", "loss range"), ("grad_change_max", "max gradient change"), ("beta", "effective beta")]
    head = [f"{words}, first {why.EARLY:.0%}" for _, words in cols] + [f"{words}, all" for _, words in cols]
    lines = ["Each run's mean over its measured steps, then the seed mean [95% CI]:", "",
             "| variant | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for v in why.variants(land):
        r = land[land.variant == v]
        lines.append(f"| {why.NAMES.get(v, v)} | " + " | ".join(band(r[f"{c}_early"], 1, 3) for c, _ in cols) + " | "
                     + " | ".join(band(r[c], 1, 3) for c, _ in cols) + " |")
    return lines


def lr_lines(metrics: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    rel = why.initial_rel_loss(metrics)
    rates = sorted(runs["optim.lr"].unique())
    lines = ["Final val accuracy (%) per rate, seed mean over the runs that trained (trained / runs); "
             "below it, at initialization, the median over seeds of L(w0 - lr g) / L(w0):", "",
             "| variant | | " + " | ".join(f"{r:g}" for r in rates) + " | largest good rate |",
             "| --- | --- |" + " --- |" * (len(rates) + 1)]
    for v in why.variants(runs):
        r_rates, g = why.rate_matrix(runs, v)
        cells = [f"{np.nanmean(c):.2f} ({np.isfinite(c).sum()}/{len(c)})" if np.isfinite(c).any() else f"– (0/{len(c)})"
                 for c in g.T]
        med = rel[rel.variant == v].groupby("optim.lr").rel_loss.median()
        lines.append(f"| {why.NAMES.get(v, v)} | final | " + " | ".join(cells)
                     + f" | {why.largest_good_rate(r_rates, g):g} |")
        lines.append("| | rel. loss | " + " | ".join(f"{med.get(r, math.nan):.3g}" for r in rates) + " | |")
    return lines


def report(sweep_dir: Path) -> tuple[str, pd.DataFrame]:
    metrics = why.load(sweep_dir)
    runs = why.per_run(metrics)
    experiment = str(metrics.experiment.dropna().iloc[0])
    try:
        kind = why.study(experiment)
    except ValueError as err:
        raise FileNotFoundError(f"{sweep_dir} holds an {err}.") from None
    summed, elapsed = wall_times(sweep_dir)
    status = runs.status.value_counts()
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    lines = [f"# {TITLES[kind]}: {why.model_label(metrics)} on {data}", "",
             f"Sweep: `{sweep_dir}`; {len(runs)} runs ({', '.join(f'{n} {s}' for s, n in status.items())}), "
             f"seeds {', '.join(map(str, sorted(runs.seed.unique())))}. Protocol and expectations: "
             f"configs/experiment/{experiment}.yaml.", "", *provenance_lines(sweep_dir), "",
             f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
             f"{summed / 60:.1f} min summed over runs.", "",
             "## Claims", "", POLICY, "",
             *claim_table([score(c) for c in why.claims(experiment, metrics)]), "", "## Per variant", "", *variant_lines(runs), ""]
    if kind == "why_ics":
        lines += [*ics_lines(metrics), ""]
    elif kind == "why_landscape":
        lines += [*landscape_lines(metrics), ""]
    elif kind == "lr_range":
        lines += [*lr_lines(metrics, runs), ""]
    return "\n".join(lines), runs


def write(sweep_dir: Path, out: Path | None):
    text, runs = report(sweep_dir)
    if out is None:
        return text
    return write_files(out, {"report.md": text, "runs.csv": runs.sort_values(["variant", "optim.lr", "seed"])})


main = command(__doc__, write, "directory for report.md and runs.csv (default: print the Markdown)")

if __name__ == "__main__":
    sys.exit(main())
