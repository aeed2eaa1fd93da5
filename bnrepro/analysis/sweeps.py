"""What the placement and normalization sweeps' plots and reports share (no torch, no training):
the configuration columns they read, their labels, per-run finals and the probes' skew."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bnrepro.analysis.results import find_runs, final_values, last_layer, load_metrics, quantile_skew, seed_band

KEYS = ("model.name", "model.activation", "bn.placement", "bn.norm", "trainer.batch_size", "trainer.max_steps", "optim.lr")
NORM_NAMES = {"batch": "BN", "layer": "LN", "group": "GN", "instance": "IN", "none": "no norm"}
PLACEMENT_ORDER = ("none", "before", "after")
NORM_ORDER = ("batch", "layer", "group", "instance", "none")


def load(sweep_dir: Path) -> pd.DataFrame:
    """All metrics of a sweep with the KEYS columns; `placement` is "none" wherever no norm is."""
    metrics = load_metrics(sweep_dir, KEYS)
    metrics["placement"] = metrics["bn.placement"].where(metrics["bn.norm"] != "none", "none")
    return metrics


def placement_label(placement: str, norm: str = "batch") -> str:
    name = NORM_NAMES.get(norm, norm)
    return {"none": "no norm" if norm != "batch" else "no BN", "before": f"{name} before g (paper)",
            "after": f"{name} after g"}.get(placement, placement)


def skew(metrics: pd.DataFrame, layer: str, kind: str = "norm_unit") -> pd.DataFrame:
    """Per run and probe step, the quantile skew (results.quantile_skew) of `layer`'s `kind`
    ("unit": the nonlinearity's input; "norm_unit": the normalization's output), from its lowest,
    middle and highest recorded percentiles; long form like metrics, split "probe", name "skew"."""
    rows = metrics[(metrics.split == "probe") & metrics.name.str.startswith(f"{layer}/{kind}_p")]
    if rows.empty:
        return rows.assign(value=[])
    q = rows.name.str.rpartition("_p")[2].astype(float)
    wide = rows.assign(q=q).pivot_table(index=["run", "step"], columns="q", values="value")
    qs = sorted(wide.columns)
    out = quantile_skew(wide[qs[0]], wide[qs[len(qs) // 2]], wide[qs[-1]]).rename("value").reset_index()
    info = rows.drop(columns=["step", "name", "value", "split"]).drop_duplicates("run")
    return out.merge(info, on="run").assign(split="probe", name=f"skew_{kind}")


def finals(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its config columns, final test accuracy, best accuracy on the split that
    choices are read from (`best_split`: val where the runs have a validation split, test in
    sweeps that predate it) with its step and the test accuracy there, the final skews of the last
    layer's normalization output and nonlinearity input, and the examples it saw."""
    acc = final_values(metrics, "test", "accuracy").rename(columns={"value": "final"})
    split = "val" if (metrics.split == "val").any() else "test"
    rows = metrics[(metrics.split == split) & (metrics.name == "accuracy")]
    best = rows.loc[rows.groupby("run").value.idxmax()].set_index("run")
    test = metrics[(metrics.split == "test") & (metrics.name == "accuracy")].set_index(["run", "step"]).value
    acc["best"], acc["best_step"], acc["best_split"] = acc.run.map(best.value), acc.run.map(best.step), split
    acc["test_at_best"] = [test.get((r, s), math.nan) for r, s in zip(acc.run, acc.best_step)]
    acc["examples"] = acc.step * acc["trainer.batch_size"]
    layer = last_layer(metrics)
    for kind in ("norm_unit", "unit"):
        s = skew(metrics, layer, kind) if layer else pd.DataFrame()
        last = s.sort_values("step").groupby("run").tail(1).set_index("run").value if len(s) else {}
        acc[f"skew_{kind}"] = acc.run.map(last).astype(float)
    return acc


def wall_times(sweep_dir: Path) -> tuple[float, float]:
    """(summed, elapsed) seconds: wall time summed over processes, and from the first run's start
    to the last run's end. Both from summary.json's started_at/ended_at, where the runs wrote them
    (the stacked seeds of one process share them and count once); older runs fall back to the
    files' times (config.yaml written, summary.json written), which a copy must preserve (cp -a)."""
    runs = [d for d in find_runs(sweep_dir) if (d / "summary.json").exists()]
    if not runs:
        return 0.0, 0.0
    summaries = [json.loads((d / "summary.json").read_text()) for d in runs]
    if all("started_at" in s for s in summaries):
        processes = {(s["started_at"], s["ended_at"]): s.get("wall_time_s", 0) for s in summaries}
        return sum(processes.values()), max(e for _, e in processes) - min(b for b, _ in processes)
    start = min((d / "config.yaml").stat().st_mtime for d in runs)
    end = max((d / "summary.json").stat().st_mtime for d in runs)
    return sum(s.get("wall_time_s", 0) for s in summaries), end - start


def band(values: pd.Series, scale: float = 100.0, digits: int = 2) -> str:
    """"mean ± std" over seeds of per-run values (accuracies as %, by default)."""
    mean, std, n = seed_band(values * scale)
    return "n/a" if n == 0 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def difference(a: pd.Series, b: pd.Series) -> str:
    """mean(a) - mean(b) in points (a, b accuracies as fractions), ± the standard error of the
    difference, sqrt(s_a^2 / n_a + s_b^2 / n_b)."""
    (ma, sa, na), (mb, sb, nb) = seed_band(a * 100), seed_band(b * 100)
    if not (na and nb):
        return "n/a"
    return f"{ma - mb:+.2f} ± {math.sqrt(sa ** 2 / na + sb ** 2 / nb):.2f}"



def report_command(doc: str, report, columns: list[str], sort_by: list[str]):
    """The `main` of a placement/norm report script: `report(SWEEP_DIR) -> (markdown, per-run frame)`
    printed, or with --out written as report.md and runs.csv (`columns`, sorted by `sort_by`)."""
    from bnrepro.analysis.cli import command, write_files

    def write(sweep_dir: Path, out: Path | None):
        text, runs = report(sweep_dir)
        if out is None:
            return text
        return write_files(out, {"report.md": text, "runs.csv": runs[columns].sort_values(sort_by)})

    return command(doc, write, "directory for report.md and runs.csv (default: print the Markdown)")
