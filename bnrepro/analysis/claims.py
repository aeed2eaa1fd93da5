"""The claims of the paper's results (Figures 1, 3, 4) and of the placement and normalization studies, as
specs that bnrepro.analysis.verdicts scores under the one policy (bnrepro.analysis.stats). The studies of
issues 17 and 18 keep theirs beside their analysis (why.claims, bn_statistics.claims); the registry
(bnrepro.analysis.registry) says which result owns which.

Each function takes what its sweep's loader returns (None: no runs, so every spec has empty groups and
reads `not run`) and returns a list of spec dicts (verdicts' docstring lists the keys).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnrepro.analysis import ensemble, fig3
from bnrepro.analysis.results import run_status
from bnrepro.analysis.stats import PLATEAU_FRACTION, proportion
from bnrepro.analysis.sweeps import finals
from bnrepro.paper import FIG1, FIG3, FIG4_ENSEMBLE, PLACEMENT_ANCHORS

CHANCE = 0.1  # 10 classes
DRIFT_FROM = 0.05  # Figure 1's drift is read from 5% of training on: the first steps grow any small init

# At a normalization batch of 2 every BN unit of a fully-connected layer outputs +-1 (x_hat of two
# numbers), whatever the weights: the claims read there hold by arithmetic (issue 30).
MLP_BATCH_2 = "holds by arithmetic: at batch 2 each BN unit of the MLP outputs +-1"


def spec(claim, text, paper, statistic, side, reference, groups, stat, **more) -> dict:
    return {"claim": claim, "text": text, "paper": paper, "statistic": statistic, "side": side,
            "reference": reference, "groups": groups, "stat": stat, **more}


def mean_diff(g: list[np.ndarray]) -> float:
    return float(g[0].mean() - g[1].mean())


def mean_of(g: list[np.ndarray]) -> float:
    return float(g[0].mean())


def never_zero(stat):
    """A speed-up statistic with `never` (NaN) as 0, so that it counts against the claim."""
    def zeroed(g):
        value = stat(g)
        return 0.0 if math.isnan(value) else value
    return zeroed


# ----------------------------------------------------------------------------------------- Figure 1
def spread_factor(probes: pd.DataFrame, layer: str) -> float:
    """How many times a run's last-layer typical unit's 15-85 spread changed, from the first probe at or
    after DRIFT_FROM of training to the last (max(r, 1/r): shrinking counts as change too)."""
    rows = probes[probes.name.str.startswith(f"{layer}/unit_p")]
    wide = rows.pivot_table(index="step", columns="name", values="value").sort_index()
    wide = wide[wide.index >= DRIFT_FROM * wide.index.max()]
    if len(wide) < 2:
        return math.nan
    cols = sorted(wide.columns, key=lambda c: float(c.rpartition("_p")[2]))
    spread = (wide[cols[-1]] - wide[cols[0]]).to_numpy(float)
    r = spread[-1] / spread[0]
    return float(max(r, 1 / r))


def fig1_claims(metrics: pd.DataFrame | None) -> list[dict]:
    have = metrics is not None
    groups = lambda g: g if have else []  # noqa: E731
    c = fig3.curves(metrics, "val") if have else {}
    base, bn = (c["baseline"][:2], c["bn"][:2]) if {"baseline", "bn"} <= set(c) else (None, None)
    test = fig3.curves(metrics, "test") if have else {}
    plateau = {v: fig3.seed_plateaus(*test[v][:2]) for v in ("baseline", "bn") if v in test}
    drift = {}
    if have:
        probes = metrics[metrics.split == "probe"]
        layer = probes.name.iloc[-1].split("/")[0] if len(probes) else None
        for v in ("baseline", "bn"):
            runs = probes[probes.variant == v]
            drift[v] = np.array([spread_factor(p, layer) for _, p in runs.groupby("run")], float)
    return [
        spec("fig1_faster", "BN reaches the no-BN network's plateau level in fewer steps", FIG1["faster"],
             f"steps to the no-BN seed-mean validation plateau minus {100 * fig3.TOLERANCE:.1f} points, no BN / BN (x)",
             ">", 1.0, groups([base[1], bn[1]] if base is not None else []),
             never_zero(fig3.speedup(base, bn)) if base is not None else None),
        spec("fig1_higher", "BN's test accuracy ends higher", FIG1["higher"],
             f"test accuracy over the last {PLATEAU_FRACTION:.0%} of training, BN - no BN (points)", ">", 0.0,
             groups([100 * plateau["bn"], 100 * plateau["baseline"]] if plateau else []), mean_diff),
        spec("fig1_drift_without_bn", "without BN the last-layer sigmoid input's spread changes during training",
             FIG1["drift"], f"15-85 percentile spread, factor of change from {DRIFT_FROM:.0%} of training to the end, "
             "no BN (x); reference: a factor of 2", ">", 2.0, groups([drift.get("baseline", np.empty(0))]),
             mean_of, log=True),
        spec("fig1_stable_with_bn", "with BN the last-layer sigmoid input's spread stays put", FIG1["stable"],
             f"15-85 percentile spread, factor of change from {DRIFT_FROM:.0%} of training to the end, BN (x); "
             "reference: a factor of 2", "<", 2.0, groups([drift.get("bn", np.empty(0))]), mean_of, log=True),
    ]


# ----------------------------------------------------------------------------------------- Figure 3
def fig3_claims(metrics: pd.DataFrame | None, runs: pd.DataFrame | None) -> list[dict]:
    """On the validation split, by bnrepro.analysis.fig3's protocol (as scripts/table_fig3.py)."""
    c = fig3.curves(metrics) if metrics is not None else {}
    have = lambda *vs: all(v in c for v in vs)  # noqa: E731
    curve = lambda v: c[v][:2]  # noqa: E731
    level = lambda v: 100 * fig3.seed_plateaus(*curve(v)) if v in c else np.empty(0)  # noqa: E731
    paper = {k: f"{FIG3[k][3]} faster ({FIG3[k][1]} vs 31.0e6 steps to 72.2%; Fig. 3, Sec. 4.2.2)"
             for k in ("bn_baseline", "bn_x5", "bn_x30")}
    rows = [spec(f"fig3_{k}_speedup", f"{FIG3[k][0]} reaches Inception's accuracy in fewer steps", paper[k],
                 f"steps to Inception's validation plateau minus {100 * fig3.TOLERANCE:.1f} points, Inception / "
                 f"{FIG3[k][0]} (x; 0: never)", ">", 1.0,
                 [curve("inception")[1], curve(k)[1]] if have("inception", k) else [],
                 never_zero(fig3.speedup(curve("inception"), curve(k))) if have("inception", k) else None,
                 size=float(FIG3[k][3].rstrip("x")), reason="Inception never reaches its own reference level")
            for k in ("bn_baseline", "bn_x5", "bn_x30")]
    others = [k for k in ("inception", "bn_baseline", "bn_x5", "bn_x5_sigmoid") if k in c]
    plateau_words = f"validation plateau (mean over the last {PLATEAU_FRACTION:.0%} of steps)"
    rows.append(spec("fig3_bn_x30_highest", "BN-x30 ends with the highest accuracy of all variants",
                     "74.8%, the highest (BN-x5 73.0%; Fig. 3, Sec. 4.2.2)",
                     f"{plateau_words}, BN-x30 - the best other variant (points)", ">", 0.0,
                     [level("bn_x30"), *[level(k) for k in others]] if "bn_x30" in c else [],
                     lambda g: float(g[0].mean() - max(x.mean() for x in g[1:]))))
    rows.append(spec("fig3_x5_sigmoid_trains", "BN-x5-Sigmoid learns", f"{FIG3['bn_x5_sigmoid'][2]} max accuracy (Fig. 3)",
                     f"{plateau_words}, BN-x5-Sigmoid (points); reference: twice chance", ">", 200 * CHANCE,
                     [level("bn_x5_sigmoid")] if "bn_x5_sigmoid" in c else [], mean_of))
    rows.append(spec("fig3_x5_sigmoid_below_inception", "BN-x5-Sigmoid never reaches Inception's accuracy",
                     "never (69.8% < 72.2%; Fig. 3)", f"{plateau_words}, BN-x5-Sigmoid - Inception (points)", "<", 0.0,
                     [level("bn_x5_sigmoid"), level("inception")] if have("bn_x5_sigmoid", "inception") else [],
                     mean_diff))
    rows.append(spec("fig3_inception_sigmoid_chance", "Inception-Sigmoid (no BN) stays at chance",
                     "chance (Sec. 4.2.2, text)", f"{plateau_words}, Inception-Sigmoid (points); reference: twice chance",
                     "<", 200 * CHANCE, [level("inception_sigmoid")] if "inception_sigmoid" in c else [], mean_of))
    diverged = None
    if runs is not None and len(runs):
        counts = run_status(metrics, runs)
        if "inception_x5" in counts.index:
            k, n = int(counts.loc["inception_x5", "diverged"]), int(counts.loc["inception_x5"].sum())
            diverged = proportion(k, n, ">", 0.5)
    rows.append(spec("fig3_inception_x5_diverges", "Inception at the x5 rate (no BN) diverges",
                     "diverged (Sec. 4.2.2, text)", "fraction of Inception-x5 seeds diverged (exact binomial interval); "
                     "reference: half", ">", 0.5, [], None, estimate=diverged))
    return rows


# ----------------------------------------------------------------------------------------- Figure 4
def fig4_claims(sweep_dirs: list) -> list[dict]:
    """The ensemble's test error against its best single member's, from the saved predictions of make fig2's
    and make fig4's BN-x30 runs; the interval over test examples (the same t interval: n is 2,000)."""
    try:
        c = [ensemble.correct(ensemble.members([d for d in sweep_dirs if d.is_dir()]))[0]] if sweep_dirs else []
    except FileNotFoundError:
        c = []
    return [spec("fig4_ensemble", "an ensemble of BN-x30 networks beats its best single member",
                 FIG4_ENSEMBLE, "test error, ensemble - best single member (points; interval over test examples)",
                 "<", 0.0, c, ensemble.ensemble_gain, unit="test examples")]


# ----------------------------------------------------------------------------- beyond the paper
def placement_claims(metrics: pd.DataFrame | None, which: str) -> list[dict]:
    runs = finals(metrics) if metrics is not None else None
    anchor = "; ".join(f"{a[0]}: {float(a[3].split()[0]) - float(a[2].split()[0]):+.2f} points ({a[1]})"
                       for a in PLACEMENT_ANCHORS)
    model = "MLP" if which == "placement_mlp" else "small Inception"
    rows = []
    for act in ("relu", "sigmoid"):
        g = []
        if runs is not None:
            r = runs[runs["model.activation"] == act]
            g = [100 * r[r.placement == p].final.to_numpy(float) for p in ("after", "before")]
        rows.append(spec(f"{which}_{act}_after_beats_before",
                         f"{model}, {act}: BN after the nonlinearity beats BN before it (the paper's place)",
                         f"not the paper; after - before: {anchor}", "final test accuracy, after - before (points)",
                         ">", 0.0, g, mean_diff))
    return rows


def norms_claims(metrics: pd.DataFrame | None) -> list[dict]:
    runs = finals(metrics) if metrics is not None else None
    g, size = [], 2
    if runs is not None and len(runs):
        small = runs[runs["trainer.batch_size"] == runs["trainer.batch_size"].min()]
        size = int(small["trainer.batch_size"].iloc[0])
        g = [100 * small[small["bn.norm"] == n].final.to_numpy(float) for n in ("batch", "layer")]
    return [spec("norms_bn_below_ln_small_batch", f"at batch {size} BN falls below layer norm",
                 "not the paper; batch statistics get noisy at small batches (seed 004; uncited)",
                 f"final test accuracy at batch {size}, BN - LN (points)", "<", 0.0, g, mean_diff,
                 illustration=MLP_BATCH_2 if size == 2 else None)]


