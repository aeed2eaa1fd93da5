"""Figure 1's numbers from a fig1_mnist sweep, as Markdown beside the paper's claims.

    python scripts/report_fig1.py outputs/results/fig1_fashion_mnist --out results/fig1_fashion_mnist/report.md

Per variant: test accuracy at 10% of training, final and best test accuracy (mean +/- std over
seeds), steps to reach 90% of the
run's final accuracy, steps to reach the no-BN network's mean final accuracy, and the drift of
the last hidden layer's sigmoid inputs (bnrepro.tracking.probes.drift_statistics), and the last
logged training loss (the mean over the last logging interval). Reads metrics.csv,
summary.json and provenance.json only.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bnrepro.analysis.claims import fig1_claims
from bnrepro.analysis.verdicts import POLICY, claim_table, score
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.results import last_layer, load_metrics, provenance_lines
from bnrepro.analysis.sweeps import wall_times
from bnrepro.tracking.probes import drift_statistics

LABELS = {"baseline": "Without BN", "bn": "With BN"}
EARLY = 0.1  # "ahead early": test accuracy at the last evaluation within the first 10% of training


def first_step_reaching(acc: pd.DataFrame, threshold: float) -> float:
    hit = acc[acc.value >= threshold]
    return float(hit.step.iloc[0]) if len(hit) else float("nan")


def per_run(metrics: pd.DataFrame, target: float) -> pd.DataFrame:
    rows = []
    for run, m in metrics.groupby("run"):
        acc = m[(m.split == "test") & (m.name == "accuracy")].sort_values("step")
        loss = m[(m.split == "train") & (m.name == "loss")].sort_values("step").value
        probes = m[m.split == "probe"].sort_values("step")
        series = {name: g.value.tolist() for name, g in probes.groupby("name")}
        drift = drift_statistics(series)
        unit = f"{last_layer(m)}/unit"  # the deepest layer's typical unit; none before a second probe
        last = unit if unit in drift else None
        final = float(acc.value.iloc[-1]) if len(acc) else float("nan")
        early = acc[acc.step <= EARLY * acc.step.max()]
        rows.append({
            "run": run, "variant": m.variant.iloc[0], "status": m.status.iloc[0], "steps": int(m.step.max()),
            "final": final, "best": float(acc.value.max()),
            "early": float(early.value.iloc[-1]) if len(early) else float("nan"),
            "early_step": int(early.step.iloc[-1]) if len(early) else 0,
            "train_loss": float(loss.iloc[-1]) if len(loss) else float("nan"),
            "to_90pct_final": first_step_reaching(acc, 0.9 * final),
            "to_baseline_final": first_step_reaching(acc, target),
            **{f"unit_{k}": v for k, v in (drift.get(last) or {}).items()},
            **{f"layer_{k}": v for k, v in (drift.get(last.replace("/unit", "/all")) if last else {}).items()},
            "layer": last.split("/")[0] if last else "",
        })
    return pd.DataFrame(rows)


def fmt(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0:.{digits}f}"


def steps(values: pd.Series) -> str:
    reached = values.dropna()
    text = f"{reached.mean():,.0f} ± {reached.std(ddof=1) if len(reached) > 1 else 0:,.0f}" if len(reached) else "never"
    return text + (f" ({len(values) - len(reached)} never)" if len(reached) and len(reached) < len(values) else "")


def report(sweep_dir: Path) -> str:
    metrics = load_metrics(sweep_dir)
    acc = metrics[(metrics.split == "test") & (metrics.name == "accuracy")]
    finals = acc.sort_values("step").groupby("run").tail(1)
    target = float(finals[finals.variant == "baseline"].value.mean())
    runs = per_run(metrics, target)
    summed, elapsed = wall_times(sweep_dir)
    lines = [
        f"# Figure 1 at CPU scale: {metrics.data.iloc[0]}",
        "",
        f"Sweep: `{sweep_dir}`; {len(runs)} runs ({', '.join(f'{n} {s}' for s, n in runs.status.value_counts().items())}).",
        "",
        *provenance_lines(sweep_dir),
        f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
        f"{summed / 60:.1f} min summed over processes.",
        "",
        "## Claims",
        "",
        POLICY + " The drift claims read the spread from 5% of training on: dividing by the spread at step 0 "
        "measured how far any network grows from a small initialization, not drift during training.",
        "",
        *claim_table([score(c) for c in fig1_claims(metrics)]),
        "",
        "## Test accuracy (Figure 1a)",
        "",
        "Paper (MNIST): the BN network converges faster and ends higher.",
        "",
        f"| variant | seeds | test accuracy at step {int(runs.early_step.max()):,} ({EARLY:.0%} of training) | "
        "final test accuracy | best | steps to 90% of final | steps to the no-BN final mean "
        f"({target:.4f}) | final training loss |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variant, r in runs.groupby("variant"):
        lines.append(f"| {LABELS.get(variant, variant)} | {len(r)} | {fmt(r.early)} | {fmt(r.final)} | {fmt(r.best)} | "
                     f"{steps(r.to_90pct_final)} | {steps(r.to_baseline_final)} | {fmt(r.train_loss, 3)} |")
    if "unit_movement" in runs:
        layer = runs.layer.iloc[0]
        lines += [
            "",
            f"## Drift of the sigmoid inputs, last hidden layer `{layer}` (Figure 1b, c)",
            "",
            "Paper: without BN the distribution changes significantly in mean and variance; with BN it is stable.",
            "`movement`: total distance travelled by the 15th/50th/85th percentiles after the first probe "
            "(mean over the three); `rel.`: the same divided by the first probe's 15-85 spread; "
            "`median shift`: last minus first median; `spread ratio`: last / first 15-85 spread (descriptive: the "
            "first probe is the initialization, so these also measure growth from it; the claims above do not).",
            "",
            "| variant | unit movement | unit rel. movement | unit median shift | unit spread ratio | layer rel. movement | layer spread ratio |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for variant, r in runs.groupby("variant"):
            lines.append(f"| {LABELS.get(variant, variant)} | {fmt(r.unit_movement, 3)} | {fmt(r.unit_rel_movement, 3)} | "
                         f"{fmt(r.unit_median_shift, 3)} | {fmt(r.unit_spread_ratio, 3)} | "
                         f"{fmt(r.layer_rel_movement, 3)} | {fmt(r.layer_spread_ratio, 3)} |")
    return "\n".join(lines) + "\n"


def write(sweep_dir: Path, out: Path | None) -> str | list[Path]:
    """The report printed, or written to the file `out`."""
    text = report(sweep_dir)
    return text if out is None else write_files(out.parent, {out.name: text})


main = command(__doc__, write, "Markdown file to write (default: print)")

if __name__ == "__main__":
    sys.exit(main())
