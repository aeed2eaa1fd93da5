"""The reproduction scorecard's claims, computed from the sweeps' run data (scripts/scorecard.py
renders them into results/scorecard.csv and the READMEs).

Each claim is one number per seed (or a statistic of the seeds' mean curves), a reference value
and the side of it the paper (or, beyond the paper, the cited benchmark) puts it on. `ours` is
the statistic on all seeds; its 95% interval is a percentile bootstrap over seeds
(bnrepro.analysis.stats.bootstrap: each group's seeds resampled on their own, a fixed random seed
per claim). Figure 3's claims are read on the validation split (bnrepro.analysis.fig3); Figure 4's
ensemble claim resamples test examples instead of seeds.

The rule, the same for every claim:
- `reproduced`: the whole 95% interval lies on the paper's side of the reference and, where the
  paper states a size (the Figure 3 speed-ups), the interval reaches it (upper end >= the paper's);
- `partly`: ours is on the paper's side but the interval reaches the reference, or falls short
  of the paper's size;
- `not reproduced`: ours is not on the paper's side of the reference;
- `not run`: no runs for it (a missing sweep, or an experiment we did not run).
Reads the runs through bnrepro.analysis only (metrics.csv, config.yaml, summary.json).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import bn_statistics, ensemble, fig3, why
from bnrepro.analysis.results import load_metrics, load_runs, run_status
from bnrepro.analysis.stats import bootstrap, mean_curve, verdict
from bnrepro.analysis.sweeps import finals, load
from bnrepro.paper import FIG1, FIG3, FIG4_ENSEMBLE, PLACEMENT_ANCHORS

CHANCE = 0.1  # 10 classes
COLUMNS = ["claim", "experiment", "claim_text", "paper", "statistic", "side", "reference", "paper_size", "ours",
           "ci_low", "ci_high", "seeds", "data", "verdict", "figure"]
WHY_MLP = {"why_noisy_bn": "why BN helps: noisy BN", "why_ics": "why BN helps: ICS",
           "why_landscape": "why BN helps: landscape", "lr_range": "why BN helps: rate range"}
WHY = {**WHY_MLP, **{e + why.CONV: f"{text}, small Inception" for e, text in WHY_MLP.items()}}
BN_STATS = {"bn_statistics": "BN statistics vs normalization batch",
            "bn_statistics_conv": "BN statistics vs normalization batch, small Inception",
            "bn_shift": "BN statistics under shift"}
SWEEPS = {"fig1": "fig1_fashion_mnist", "fig3": "fig2_fashion_mnist", "fig4": "fig4_fashion_mnist", "placement_mlp": "placement_mlp_fashion_mnist",
          "placement_conv": "placement_conv_fashion_mnist", "norms": "norm_batchsize_fashion_mnist",
          **{e: f"{e}_fashion_mnist" for e in [*WHY, *BN_STATS]}}
FIGURES = {"fig1": "fig1_fashion_mnist/fig1.png", "fig3": "fig2_fashion_mnist/fig2.png",
           "placement_mlp": "placement_mlp_fashion_mnist/placement.png",
           "placement_conv": "placement_conv_fashion_mnist/placement.png",
           "norms": "norm_batchsize_fashion_mnist/norms.png", "fig4": "fig4_fashion_mnist/fig4.md",
           **{e: f"{e}_fashion_mnist/{why.study(e)}.png" for e in WHY},
           **{e: f"{e}_fashion_mnist/{e.removesuffix(why.CONV)}.png" for e in BN_STATS}}
EXPERIMENTS = {"fig1": "Figure 1", "fig3": "Figures 2, 3", "placement_mlp": "BN placement, MLP",
               "placement_conv": "BN placement, small Inception", "norms": "norm vs batch size", "fig4": "Figure 4",
               **WHY, **BN_STATS}


def row(claim, experiment, text, paper, statistic, side, reference, groups, stat, data, size=math.nan):
    ours, lo, hi = bootstrap(claim, groups, stat)
    return {"claim": claim, "experiment": EXPERIMENTS[experiment], "claim_text": text, "paper": paper,
            "statistic": statistic, "side": side, "reference": reference, "paper_size": size, "ours": ours,
            "ci_low": lo, "ci_high": hi, "seeds": " vs ".join(str(len(g)) for g in groups) if groups else "0",
            "data": data, "verdict": verdict(ours, lo, hi, side, reference, size), "figure": FIGURES[experiment]}


def data_name(metrics: pd.DataFrame | None) -> str:
    return "" if metrics is None else ", ".join(map(str, metrics.data.dropna().unique()))


def mean_diff(g: list[np.ndarray]) -> float:
    return float(g[0].mean() - g[1].mean())


# ----------------------------------------------------------------------------------------- Figure 1
def fig1_runs(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run: variant, final accuracy, steps to the no-BN mean final accuracy (a run that never gets
    there counts its last step), and the last hidden layer's typical unit's spread ratio (last over
    first probe's highest-minus-lowest percentile, as bnrepro.tracking.probes.drift_statistics)."""
    acc = metrics[(metrics.split == "test") & (metrics.name == "accuracy")].sort_values("step")
    final = acc.groupby("run").tail(1).set_index("run")
    target = final.value[final.variant == "baseline"].mean()
    probes = metrics[(metrics.split == "probe") & metrics.name.str.contains("/unit_p")]
    layer = probes.name.iloc[-1].split("/")[0] if len(probes) else None
    rows = []
    for run, a in acc.groupby("run"):
        hit = a[a.value >= target]
        p = probes[(probes.run == run) & probes.name.str.startswith(f"{layer}/unit_p")]
        wide = p.pivot_table(index="step", columns="name", values="value").sort_index()
        ratio = math.nan
        if len(wide) >= 2:
            cols = sorted(wide.columns, key=lambda c: float(c.rpartition("_p")[2]))
            spread = wide[cols[-1]] - wide[cols[0]]
            ratio = float(spread.iloc[-1] / spread.iloc[0])
        rows.append({"run": run, "variant": a.variant.iloc[0], "final": float(a.value.iloc[-1]),
                     "to_target": float(hit.step.iloc[0]) if len(hit) else float(a.step.max()), "spread_ratio": ratio})
    return pd.DataFrame(rows)


def fig1_claims(metrics: pd.DataFrame | None) -> list[dict]:
    runs = fig1_runs(metrics) if metrics is not None else pd.DataFrame(columns=["variant", "final", "to_target",
                                                                                  "spread_ratio"])
    col = lambda v, c: runs[runs.variant == v][c].dropna().to_numpy(float)  # noqa: E731
    d = data_name(metrics)
    return [
        row("fig1_faster", "fig1", "BN reaches the no-BN network's final mean accuracy in fewer steps", FIG1["faster"],
            "steps to the no-BN final mean accuracy, no BN / BN (x)", ">", 1.0,
            [col("baseline", "to_target"), col("bn", "to_target")], lambda g: float(g[0].mean() / g[1].mean()), d),
        row("fig1_higher", "fig1", "BN's final test accuracy is higher", FIG1["higher"],
            "final test accuracy, BN - no BN (points)", ">", 0.0,
            [100 * col("bn", "final"), 100 * col("baseline", "final")], mean_diff, d),
        row("fig1_drift_without_bn", "fig1", "without BN the last-layer sigmoid input's spread changes",
            FIG1["drift"], "15-85 percentile spread, last / first probe, no BN (x); reference: a factor of 2",
            ">", 2.0, [col("baseline", "spread_ratio")], lambda g: float(g[0].mean()), d),
        row("fig1_stable_with_bn", "fig1", "with BN the last-layer sigmoid input's spread stays put", FIG1["stable"],
            "15-85 percentile spread, last / first probe, BN (x); reference: a factor of 2", "<", 2.0,
            [col("bn", "spread_ratio")], lambda g: float(g[0].mean()), d),
    ]


# ---------------------------------------------------------------------------------------- Figure 3
def best(g: np.ndarray) -> float:
    return float(np.nanmax(mean_curve(g))) if g.size else math.nan


def fig3_claims(metrics: pd.DataFrame | None, runs: pd.DataFrame | None) -> list[dict]:
    """On the validation split, by bnrepro.analysis.fig3's protocol (as scripts/table_fig3.py)."""
    c = fig3.curves(metrics) if metrics is not None else {}
    empty = (np.empty(0), np.empty((0, 0)))
    v = lambda name: c.get(name, (*empty, []))[:2]  # noqa: E731
    d = data_name(metrics)
    paper = {k: f"{FIG3[k][3]} faster ({FIG3[k][1]} steps vs 31.0e6)" for k in ("bn_baseline", "bn_x5", "bn_x30")}
    rows = [row(f"fig3_{k}_speedup", "fig3", f"{FIG3[k][0]} reaches Inception's best accuracy in fewer steps",
                paper[k], "Inception's steps to its best seed-mean validation accuracy / the variant's, "
                "interpolated (x; 0: never)", ">", 1.0, [v("inception")[1], v(k)[1]],
                never_zero(fig3.speedup(v("inception"), v(k))), d, size=float(FIG3[k][3].rstrip("x")))
            for k in ("bn_baseline", "bn_x5", "bn_x30")]
    others = [k for k in ("inception", "bn_baseline", "bn_x5", "bn_x5_sigmoid") if k in c]
    rows.append(row("fig3_bn_x30_highest", "fig3", "BN-x30 ends with the highest accuracy of all variants",
                    "74.8%, the highest (BN-x5 73.0%)",
                    "best seed-mean validation accuracy, BN-x30 - the best other variant (points)",
                    ">", 0.0, [v("bn_x30")[1], *[v(k)[1] for k in others]],
                    lambda g: 100 * (best(g[0]) - max(best(x) for x in g[1:])), d))
    rows.append(row("fig3_x5_sigmoid_trains", "fig3", "BN-x5-Sigmoid learns", f"{FIG3['bn_x5_sigmoid'][2]} max accuracy",
                    f"best seed-mean validation accuracy, BN-x5-Sigmoid; reference: twice chance ({2 * CHANCE:.1f})",
                    ">", 2 * CHANCE, [v("bn_x5_sigmoid")[1]], lambda g: best(g[0]), d))
    rows.append(row("fig3_x5_sigmoid_below_inception", "fig3", "BN-x5-Sigmoid never reaches Inception's best accuracy",
                    "never (69.8% < 72.2%)", "best seed-mean validation accuracy, BN-x5-Sigmoid - Inception (points)",
                    "<", 0.0, [v("bn_x5_sigmoid")[1], v("inception")[1]], lambda g: 100 * (best(g[0]) - best(g[1])), d))
    rows.append(row("fig3_inception_sigmoid_chance", "fig3", "Inception-Sigmoid (no BN) stays at chance", "chance",
                    f"best seed-mean validation accuracy, Inception-Sigmoid; reference: twice chance ({2 * CHANCE:.1f})",
                    "<", 2 * CHANCE, [v("inception_sigmoid")[1]], lambda g: best(g[0]), d))
    diverged = np.empty(0)
    if runs is not None and len(runs):
        counts = run_status(metrics, runs)
        if "inception_x5" in counts.index:
            n = counts.loc["inception_x5"]
            diverged = np.array([1.0] * int(n["diverged"]) + [0.0] * int(n[["completed", "running", "failed"]].sum()))
    rows.append(row("fig3_inception_x5_diverges", "fig3", "Inception at the x5 rate (no BN) diverges", "diverged",
                    "fraction of Inception-x5 seeds diverged; reference: half", ">", 0.5, [diverged],
                    lambda g: float(g[0].mean()), d))
    return rows


def never_zero(stat):
    """A speed-up statistic with `never` (NaN) as 0, so that it counts against the claim."""
    def zeroed(g):
        value = stat(g)
        return 0.0 if math.isnan(value) else value
    return zeroed


# ----------------------------------------------------------------------------- beyond the paper
def placement_claims(metrics: pd.DataFrame | None, which: str) -> list[dict]:
    runs = finals(metrics) if metrics is not None else pd.DataFrame(columns=["model.activation", "placement", "final"])
    d = data_name(metrics)
    anchor = ", ".join(f"{float(a[3].split()[0]) - float(a[2].split()[0]):+.2f} ({a[0].split(' (')[0]})"
                       for a in PLACEMENT_ANCHORS)
    model = "MLP" if which == "placement_mlp" else "small Inception"
    rows = []
    for act in ("relu", "sigmoid"):
        r = runs[runs["model.activation"] == act]
        g = [100 * r[r.placement == p].final.to_numpy(float) for p in ("after", "before")]
        rows.append(row(f"{which}_{act}_after_beats_before", which,
                        f"{model}, {act}: BN after the nonlinearity beats BN before it (the paper's place)",
                        f"not the paper; after - before, points: {anchor}", "final test accuracy, after - before (points)", ">",
                        0.0, g, mean_diff, d))
    return rows


def norms_claims(metrics: pd.DataFrame | None) -> list[dict]:
    runs = finals(metrics) if metrics is not None else pd.DataFrame(columns=["bn.norm", "trainer.batch_size", "final"])
    d = data_name(metrics)
    small = runs[runs["trainer.batch_size"] == runs["trainer.batch_size"].min()] if len(runs) else runs
    size = int(small["trainer.batch_size"].iloc[0]) if len(small) else 2
    g = [100 * small[small["bn.norm"] == n].final.to_numpy(float) for n in ("batch", "layer")]
    return [row("norms_bn_below_ln_small_batch", "norms", f"at batch {size} BN falls below layer norm",
                "not the paper; batch statistics get noisy at small batches (seed 004)",
                f"final test accuracy at batch {size}, BN - LN (points)", "<", 0.0, g, mean_diff, d)]


def fig4_claims(root: Path) -> list[dict]:
    """The ensemble's test error against its best single member's, from the saved predictions of
    make fig2's and make fig4's BN-x30 runs; bootstrap over test examples (rows)."""
    dirs = [root / SWEEPS["fig3"], root / SWEEPS["fig4"]]
    try:
        c = [ensemble.correct(ensemble.members([d for d in dirs if d.is_dir()]))[0]] if dirs[1].is_dir() else []
    except FileNotFoundError:
        c = []
    return [row("fig4_ensemble", "fig4", "an ensemble of BN-x30 networks beats its best single member",
                FIG4_ENSEMBLE, "test error, ensemble - best single member (points; bootstrap over test examples)",
                "<", 0.0, c, ensemble.ensemble_gain, "fashion_mnist" if c else "")]


def why_claims(experiment: str, metrics: pd.DataFrame | None) -> list[dict]:
    """Issue 17's claims (bnrepro.analysis.why.claims), one row each."""
    return [row(c["claim"], experiment, c["text"], c["paper"], c["statistic"], c["side"], c["reference"], c["groups"],
                c["stat"], data_name(metrics)) for c in why.claims(experiment, metrics)]


def bn_statistics_claims(experiment: str, data: pd.DataFrame | None) -> list[dict]:
    """Issue 18's claims (bnrepro.analysis.bn_statistics.claims), one row each; `data`: the
    bn_statistics metrics or the bn_shift shift table."""
    return [row(c["claim"], experiment, c["text"], c["paper"], c["statistic"], c["side"], c["reference"], c["groups"],
                c["stat"], data_name(data)) for c in bn_statistics.claims(experiment, data)]


# ------------------------------------------------------------------------------------- output
def scorecard(root: Path) -> pd.DataFrame:
    def read(name: str, loader):
        path = root / SWEEPS[name]
        return loader(path) if path.is_dir() else None

    fig2 = read("fig3", load_metrics)
    rows = [*fig1_claims(read("fig1", load_metrics)), *fig3_claims(fig2, read("fig3", load_runs)), *fig4_claims(root),
            *placement_claims(read("placement_mlp", load), "placement_mlp"),
            *placement_claims(read("placement_conv", load), "placement_conv"), *norms_claims(read("norms", load)),
            *(r for e in WHY for r in why_claims(e, read(e, why.load))),
            *(r for e in ("bn_statistics", "bn_statistics_conv") for r in bn_statistics_claims(e, read(e, bn_statistics.load))),
            # a bn_shift sweep whose runs have no shift.csv yet (scripts/eval_shift.py) is `not run`
            *bn_statistics_claims("bn_shift", read("bn_shift", lambda p: bn_statistics.load_shift(p, required=False)))]
    return pd.DataFrame(rows, columns=COLUMNS)
