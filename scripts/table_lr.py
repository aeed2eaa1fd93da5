"""The learning-rate choice behind Figure 2: the no-BN Inception at a few base rates, read on the
validation split (bnrepro.analysis.fig3's protocol), and the rate it picks.

    python scripts/table_lr.py outputs/results/fig2_lr_fashion_mnist --out results/fig2_lr_fashion_mnist
    (writes lr.csv, one row per rate, and lr.md; without --out, prints the Markdown)

The rule (configs/experiment/fig2_fashion_mnist.yaml's header): the rate whose seed-mean
validation curve has the highest maximum; a rate whose runs all diverged is out. Test accuracy
is printed beside it and not used. The paper chose Inception's 0.0015 the same way, on its own
validation data, before deriving BN-x5 and BN-x30 from it.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import fig3
from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.results import STATUSES, divergence_kinds, is_diverged, load_metrics, load_runs, provenance_lines
from bnrepro.analysis.sweeps import wall_times

KEY = "optim.lr"


def table(sweep_dir: Path) -> pd.DataFrame:
    """One row per (variant, rate): runs by status, the seed-mean validation curve's best and its
    step, the test accuracy there, the final validation accuracy, and `chosen`."""
    metrics = load_metrics(sweep_dir, (KEY,))
    runs = load_runs(sweep_dir, (KEY,))
    rows = []
    for (variant, lr), r in runs.groupby(["variant", KEY]):
        m = metrics[metrics[KEY] == lr]
        val, test = fig3.curves(m, fig3.SPLIT).get(variant), fig3.curves(m, "test").get(variant)
        counts = r.status.value_counts().reindex(list(STATUSES), fill_value=0)
        best, step = fig3.best_of(*val[:2]) if val else (math.nan, math.nan)
        final = fig3.mean_curve(val[1]) if val else np.empty(0)
        rows.append({"variant": variant, "lr": float(lr), **counts.to_dict(),
                     "divergence": divergence_kinds(r).get(variant, "") if is_diverged(counts) else "",
                     "best_val_accuracy": best, "best_val_step": step,
                     "test_at_best_val": fig3.value_at(*test[:2], step) if test else math.nan,
                     "final_val_accuracy": float(final[np.isfinite(final)][-1]) if np.isfinite(final).any() else math.nan,
                     "last_step": float(val[0][np.isfinite(final)][-1]) if val and np.isfinite(final).any() else math.nan,
                     "diverged_all": is_diverged(counts)})
    frame = pd.DataFrame(rows).sort_values(["variant", "lr"]).reset_index(drop=True)
    frame["chosen"] = False
    for _, g in frame[~frame.diverged_all & frame.best_val_accuracy.notna()].groupby("variant"):
        frame.loc[g.best_val_accuracy.idxmax(), "chosen"] = True
    return frame


def markdown(sweep_dir: Path, frame: pd.DataFrame) -> str:
    summed, elapsed = wall_times(sweep_dir)
    lines = ["# The learning rate of the no-BN Inception, chosen on the validation split", "",
             f"Sweep: `{sweep_dir}`. Rule: the rate with the highest seed-mean validation maximum; all-diverged "
             "rates are out. Test accuracy is shown, not used.", "", *provenance_lines(sweep_dir),
             f"Wall time: {elapsed / 60:.1f} min from the first run's start to the last run's end; "
             f"{summed / 60:.1f} min summed over processes.", "",
             "| variant | lr | runs | best val (step) | test there | final val | steps run | chosen |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in frame.itertuples():
        runs = ", ".join(f"{getattr(r, s)} {s}" for s in STATUSES if getattr(r, s))
        best = ("diverged" + (f" ({r.divergence})" if r.divergence else "") if r.diverged_all else
                "n/a" if math.isnan(r.best_val_accuracy) else f"{100 * r.best_val_accuracy:.2f}% ({r.best_val_step:,.0f})")
        pct = lambda v: "n/a" if math.isnan(v) else f"{100 * v:.2f}%"  # noqa: E731
        last = "-" if math.isnan(r.last_step) else f"{r.last_step:,.0f}"
        lines.append(f"| {r.variant} | {r.lr:g} | {runs} | {best} | {pct(r.test_at_best_val)} | "
                     f"{pct(r.final_val_accuracy)} | {last} | {'**yes**' if r.chosen else ''} |")
    return "\n".join(lines) + "\n"


def write(sweep_dir: Path, out: Path | None) -> str | list[Path]:
    frame = table(sweep_dir)
    text = markdown(sweep_dir, frame)
    return text if out is None else write_files(out, {"lr.csv": frame, "lr.md": text})


main = command(__doc__, write, "directory for lr.csv and lr.md (default: print the Markdown)")

if __name__ == "__main__":
    sys.exit(main())
