"""bf16 against float32 on the same seeds (issue 35 item 3): the rule is committed in the header of
configs/experiment/fig2_v2_bf16.yaml. Per variant and statistic, the per-seed paired differences
(bf16 - float32, same seed) get a 95% t interval (bnrepro.analysis.stats), judged against the float32 seeds'
own spread: "within seed noise" when the interval lies inside +-delta (delta: the float32 seeds' standard
deviation), "differs" when it lies wholly outside, else "undecided". No torch, no Hydra.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import fig3, fulltest
from bnrepro.analysis.results import find_runs, load_metrics, load_runs, read_summary
from bnrepro.analysis.stats import mean_interval

# (column, what it is, scale): "points" compares accuracies x 100, "log" compares log steps (a ratio)
STATISTICS = (("plateau_val_accuracy", "val plateau (last 25% of steps)", "points"),
              ("final_full_test_accuracy", "final model, whole test split", "points"),
              ("steps_to_threshold", "steps to the float32 reference level", "log"),
              ("last_step", "step the plateau rule stopped at", "log"))
WITHIN, DIFFERS, UNDECIDED = "within seed noise", "differs", "undecided (underpowered)"
VARIANTS = ("inception", "bn_x5")  # what the protocol runs in bf16: no decision before both are paired


def per_seed(sweep_dir: Path, threshold: float) -> pd.DataFrame:
    """One row per run: variant, seed, Figure 3's per-seed numbers at `threshold`, the final model's accuracy on
    the whole test split (its full_test.json) and the model's steps per second (its summary)."""
    rows = fig3.per_seed(load_metrics(sweep_dir), threshold)
    rows = rows.merge(load_runs(sweep_dir)[["run", "seed"]], on="run")
    full = fulltest.per_run(sweep_dir, rows.run)[["run", "final_full_test_accuracy"]]
    speed = {str(d.relative_to(sweep_dir)): read_summary(d).get("model_steps_per_s", math.nan) for d in find_runs(sweep_dir)}
    return rows.merge(full, on="run").assign(steps_per_s=lambda f: f.run.map(speed).astype(float))


def judge(e, delta: float) -> str:
    if not (math.isfinite(e.lo) and math.isfinite(e.hi) and delta > 0):
        return UNDECIDED
    if -delta < e.lo and e.hi < delta:
        return WITHIN
    return DIFFERS if e.hi < -delta or e.lo > delta else UNDECIDED


def compare(base_dir: Path, other_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(one row per variant and statistic, the paired per-seed rows, the float32 reference level)."""
    threshold = fig3.reference(fig3.base_curve(fig3.curves(load_metrics(base_dir))))
    a, b = per_seed(base_dir, threshold), per_seed(other_dir, threshold)
    paired = a.merge(b, on=["variant", "seed"], suffixes=("_fp32", "_bf16"))
    rows = []
    for variant, g in paired.groupby("variant", sort=False):
        for column, what, scale in STATISTICS:
            x, y = (g[f"{column}_{p}"].to_numpy(float) for p in ("fp32", "bf16"))
            x, y = (np.log(x), np.log(y)) if scale == "log" else (100 * x, 100 * y)
            ok = np.isfinite(x) & np.isfinite(y)
            e = mean_interval(y[ok] - x[ok])
            delta = float(np.std(x[ok], ddof=1)) if ok.sum() > 1 else math.nan
            rows.append({"variant": variant, "statistic": what, "scale": scale, "seeds": int(ok.sum()),
                         "fp32": float(np.mean(x[ok])) if ok.any() else math.nan,
                         "bf16": float(np.mean(y[ok])) if ok.any() else math.nan,
                         "difference": e.value, "ci_low": e.lo, "ci_high": e.hi, "delta": delta,
                         "verdict": judge(e, delta)})
        speed = g.steps_per_s_bf16.mean() / g.steps_per_s_fp32.mean()
        rows.append({"variant": variant, "statistic": "steps per second, bf16 / float32", "scale": "ratio",
                     "seeds": len(g), "fp32": g.steps_per_s_fp32.mean(), "bf16": g.steps_per_s_bf16.mean(),
                     "difference": speed, "ci_low": math.nan, "ci_high": math.nan, "delta": math.nan, "verdict": ""})
    return pd.DataFrame(rows), paired, threshold


def decision(frame: pd.DataFrame) -> str:
    missing = [v for v in VARIANTS if v not in set(frame.variant)] if len(frame) else list(VARIANTS)
    if missing:
        return (f"not decided: no paired bf16 runs of {', '.join(missing)} yet (`make fig2_bf16` runs them, "
                "resuming where it stopped)")
    judged = frame[(frame.scale != "ratio") & frame.variant.isin(VARIANTS)]
    failed = judged[judged.verdict != WITHIN]
    if failed.empty:
        return f"all {len(judged)} statistics within seed noise: bf16 (trainer.amp=true) is offered"
    return ("float32 stays: " + "; ".join(f"{r.variant} {r.statistic} {r.verdict}" for r in failed.itertuples()))
