"""Where Figure 1's claims hold: a fig1_sensitivity sweep (initial weights x learning rate x
momentum, with and without BN) as Markdown, a per-cell CSV and a per-seed CSV.

    python scripts/report_fig1_sensitivity.py outputs/results/fig1_sensitivity_fashion_mnist \
        --out results/fig1_sensitivity_fashion_mnist
    (writes report.md, cells.csv (one row per cell) and seeds.csv (one row per run) into --out;
    without --out, prints the Markdown)

Per cell, on the validation split, by bnrepro.analysis.sensitivity's definitions (its docstring):
BN's final-accuracy lead, the speed-up to the threshold (no-BN steps / BN steps), the drift of the
last hidden layer's typical sigmoid input in relative and absolute units, each with its 95%
t interval over seeds, and the verdict on each of the paper's three claims (Sec. 4.1,
Fig. 1): faster, higher final accuracy, stable inputs. Reads metrics.csv, config.yaml,
summary.json and provenance.json only.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bnrepro.analysis import sensitivity as sens
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.results import provenance_lines
from bnrepro.analysis.sweeps import wall_times
from bnrepro.paper import FIG1

MARK = {"holds": "✓", "reversed": "✗", "unresolved": "~", "relative only": "r", "absolute only": "a", "n/a": "–"}
SEED_COLUMNS = ["run", *sens.CELL, "variant", "seed", "status", "steps", "split", "final", "final_test",
                "to_threshold", "movement", "rel_movement", "median_shift", "spread_ratio", "layer"]
PAPER = {"faster": FIG1["faster"], "higher": FIG1["higher"], "stable": f"{FIG1['drift']}; {FIG1['stable']}"}


def interval(value: float, lo: float, hi: float, digits: int = 2, sign: str = "") -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def speedup(c: pd.Series) -> str:
    """The ratio with its interval; `≥`/`≤` where a variant never reached the threshold (a bound)."""
    bound = "≥" if c.baseline_never and not c.bn_never else "≤" if c.bn_never and not c.baseline_never else ""
    return bound + interval(c.speedup, c.speedup_lo, c.speedup_hi)


def claim_map(table: pd.DataFrame, claim: str, momenta: list[float]) -> list[str]:
    """One claim's verdicts as init (rows) x lr (columns) per momentum, side by side."""
    grids = [sens.grid(table, claim, m) for m in momenta]
    head = [f"m={m:g}, lr={lr:g}" for m, g in zip(momenta, grids) for lr in g.columns]
    lines = ["| initial weights | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    inits = sens.init_order(table.init)
    for init in inits:
        marks = [MARK.get(g.at[init, lr], "–") if init in g.index and isinstance(g.at[init, lr], str) else "–"
                 for g in grids for lr in g.columns]
        lines.append(f"| {init} | " + " | ".join(marks) + " |")
    return lines


def where(table: pd.DataFrame, claim: str) -> str:
    held = table[table[claim] == "holds"]
    names = [f"({c.init}, lr {c['optim.lr']:g}, m {c['optim.momentum']:g})" for _, c in held.iterrows()]
    return f"{len(held)} of {len(table)} cells" + (f": {', '.join(names)}" if names else "")


def default_lines(table: pd.DataFrame, split: str) -> list[str]:
    """fig1_mnist's default by sensitivity.choose_default, the rule written before the sweep ran."""
    try:
        c = sens.choose_default(table)
    except ValueError as err:
        return ["## fig1_mnist's default", "", f"No choice: {err}.", ""]
    return ["## fig1_mnist's default, by the rule", "",
            "The rule (sensitivity.choose_default, written in the experiment's header before the sweep ran): "
            "among the cells with a fixed Gaussian std and no diverged seed, the one whose no-BN network ends "
            f"highest; cells within {sens.TIE:g} points tie, and a tie goes to momentum 0, then the smaller std, "
            f"then the smaller rate. It chooses init std {c.init}, lr {c['optim.lr']:g}, "
            f"momentum {c['optim.momentum']:g}; there no BN ends at "
            f"{100 * c.final_baseline:.2f}% {split} and BN at {100 * c.final_bn:.2f}% "
            f"(lead {interval(c.lead, c.lead_lo, c.lead_hi, sign='+')} points; faster: {c.faster}, "
            f"higher: {c.higher}, stable: {c.stable}).", ""]


def report(sweep_dir: Path) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    metrics = sens.load(sweep_dir)
    runs = sens.per_run(metrics)
    table = sens.cells(metrics, runs)
    runs["to_threshold"] = sens.seed_steps(metrics, runs, table)
    momenta = sorted(table["optim.momentum"].unique())
    split = runs.split.iloc[0]
    summed, elapsed = wall_times(sweep_dir)
    status = runs.status.value_counts()
    data = ", ".join(map(str, runs.data.dropna().unique()))
    all_three = table[(table.faster == "holds") & (table.higher == "holds") & (table.stable == "holds")]
    lines = [f"# Figure 1's claims over initial weights x learning rate x momentum: {data}", "",
             f"Sweep: `{sweep_dir}`; {len(runs)} runs ({', '.join(f'{n} {s}' for s, n in status.items())}), "
             f"{len(table)} cells.", "", *provenance_lines(sweep_dir),
             f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
             f"{summed / 60:.1f} min summed over processes.", "",
             f"Per cell, on the {split} split, 95% t intervals over seeds in brackets "
             "(bnrepro/analysis/sensitivity.py says how each number is computed): "
             "lead = BN's seed-mean final accuracy minus no-BN's (points); speed-up = no-BN's steps / BN's "
             f"steps to {sens.THRESHOLD:.0%} of the higher seed-mean final accuracy (`≥`: no-BN never got there, "
             "its last step counted; `≤`: BN never did); drift = the distance the last hidden layer's typical unit's "
             "15/50/85th percentiles travel, over its first 15-85 spread (rel.) and in input units (abs.), "
             "no BN / BN. A claim holds where its interval lies on the paper's side "
             "(✓ holds, ✗ reversed, ~ unresolved; stable: r/a = only in relative/absolute units).", "",
             "## Where each claim holds", ""]
    for claim in ("faster", "higher", "stable"):
        lines += [f"### {claim}: {sens.CLAIMS[claim]}", "", f"Paper: {PAPER[claim]}.", "",
                  f"Holds in {where(table, claim)}.", "", *claim_map(table, claim, momenta), ""]
    lines += [f"All three hold in {len(all_three)} of {len(table)} cells"
              + (": " + ", ".join(f"({c.init}, lr {c['optim.lr']:g}, m {c['optim.momentum']:g})"
                                  for _, c in all_three.iterrows()) if len(all_three) else "") + ".", "",
              *default_lines(table, split), "## Per cell", "",
              f"| initial weights | lr | momentum | final {split}, no BN (%) | final {split}, BN (%) | lead (points) | "
              "threshold | speed-up (x) | drift rel., no BN / BN | drift abs., no BN / BN | diverged | "
              "faster | higher | stable |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, c in table.iterrows():
        lines.append(
            f"| {c.init} | {c['optim.lr']:g} | {c['optim.momentum']:g} | {100 * c.final_baseline:.2f} | "
            f"{100 * c.final_bn:.2f} | {interval(c.lead, c.lead_lo, c.lead_hi, sign='+')} | {c.threshold:.4f} | "
            f"{speedup(c)} | {c.drift_rel_baseline:.3g} / {c.drift_rel_bn:.3g} | "
            f"{c.drift_abs_baseline:.3g} / {c.drift_abs_bn:.3g} | "
            f"{c.diverged_baseline}/{c.seeds_baseline}, {c.diverged_bn}/{c.seeds_bn} | "
            f"{MARK[c.faster]} | {MARK[c.higher]} | {MARK[c.stable]} |")
    return "\n".join(lines) + "\n", table, runs.reindex(columns=SEED_COLUMNS)


def write(sweep_dir: Path, out: Path | None):
    text, table, runs = report(sweep_dir)
    if out is None:
        return text
    return write_files(out, {"report.md": text, "cells.csv": table,
                             "seeds.csv": runs.sort_values([*sens.CELL, "variant", "seed"])})


main = command(__doc__, write, "directory for report.md, cells.csv and seeds.csv (default: print the Markdown)")

if __name__ == "__main__":
    sys.exit(main())
