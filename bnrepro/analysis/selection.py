"""Protocol v2's selection step (issue 31; configs/experiment/fig2_v2_fashion_mnist.yaml), from the
selection sweep's VALIDATION curves only (never test): for BN-x5 and BN-x30, the accelerated decay factor
k (optim.lr_decay_speedup, Sec. 4.2.1's "accelerate the learning rate decay") with the highest seed-mean
validation plateau (fig3.plateau_of: the mean over the last 25% of the run's steps); a tie to 0.01 points
goes to the larger k (fewer steps). Figure 4's recipe (Sec. 4.2.3) is the one of the two, at its chosen k,
with the higher plateau. The selection seeds are disjoint from the reporting seeds, so the reported
rows are read on runs that chose nothing. No torch, no Hydra.
"""
from __future__ import annotations

import math

import pandas as pd

from bnrepro.analysis import fig3

KEY = "optim.lr_decay_speedup"
VARIANTS = ("bn_x5", "bn_x30")
TIE = 1e-4  # 0.01 points: plateaus this close count as equal


def candidates(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, k): seeds, the seed-mean validation plateau, each seed's plateau and the steps
    run (validation split only)."""
    val = metrics[(metrics.split == fig3.SPLIT) & metrics.variant.isin(VARIANTS)]
    rows = []
    for (variant, k), g in val.groupby(["variant", KEY]):
        steps, curves, runs = fig3.curves(g)[variant]
        rows.append({"variant": variant, "k": float(k), "seeds": len(runs),
                     "val_plateau": fig3.plateau_of(steps, curves),
                     "seed_plateaus": " ".join(f"{100 * p:.2f}" for p in fig3.seed_plateaus(steps, curves)),
                     "steps_run": float(steps[-1]) if len(steps) else math.nan})
    return pd.DataFrame(rows, columns=["variant", "k", "seeds", "val_plateau", "seed_plateaus", "steps_run"])


def choose(table: pd.DataFrame) -> dict[str, object]:
    """{variant: chosen k (int where whole)} and "fig4_recipe": the variant with the higher plateau at its k."""
    if table.empty:
        raise ValueError(f"No BN-x5 or BN-x30 validation curve with {KEY} in the selection sweep.")
    chosen, best = {}, {}
    for variant, g in table.groupby("variant"):
        top = g.val_plateau.max()
        k = g[g.val_plateau >= top - TIE].k.max()
        chosen[variant] = int(k) if float(k).is_integer() else float(k)
        best[variant] = top
    chosen["fig4_recipe"] = max(best, key=lambda v: (best[v], v == "bn_x30"))
    return chosen


def chosen_from(select_dir) -> dict[str, object]:
    """choose() read from a selection sweep's directory: what scripts/select_fig2_k.py writes to chosen.yaml."""
    from bnrepro.analysis.results import load_metrics

    return choose(candidates(load_metrics(select_dir, keys=(KEY,))))
