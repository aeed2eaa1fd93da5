"""Issue 17's experiments (configs/experiment/why_*.yaml, lr_range.yaml) as functions of run data;
the plot scripts, scripts/report_why.py and the scorecard all read them here.

Per run, on the validation split where a number is read (test is reported beside it):
- `per_run`: final (last evaluation) and best accuracy, status, and for every probed layer the
  drift of its typical unit (bnrepro.analysis.sensitivity.drift: movement of the 15/50/85th
  percentiles in input units, and relative to the first probe's 15-85 spread).
- `ics_per_run`: Santurkar et al.'s Def. 2.1 per layer, averaged over the measured steps:
  ||G - G'||, ||G - G'|| / ||G|| and 1 - cos(G, G'). Layer 1 has no earlier layer (G' = G), so it
  is left out of the network's mean.
- `landscape_per_run`: Sec. 3.2's loss range, gradient change and effective beta along the
  gradient, averaged over the first `EARLY` of training (where the anchor finds the gap largest)
  and over all of it.
- `rate_matrix` / `largest_good_rate`: the lr_range sweep as seeds x rates, and its claim's
  statistic (the largest rate at which every seed trains and the seed mean is within GOOD points
  of the variant's best rate).
Each experiment has a `_conv` twin on the small Inception (why_noisy_bn_conv, ...), and why_noisy_bn
and why_ics a `_dln` twin on Santurkar et al.'s 25-layer deep linear network (issue 32): the same
analysis (`study` names it), its claims named after the twin.
Intervals, verdicts and the diverged-run rule: bnrepro.analysis.stats, as everywhere.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bnrepro.analysis import fig3
from bnrepro.analysis.results import load_metrics
from bnrepro.analysis.sensitivity import drifts

KEYS = ("optim.lr", "trainer.max_steps", "model.name")
STUDIES = ("why_noisy_bn", "why_ics", "why_landscape", "lr_range")
CONV = "_conv"  # the suffix of an experiment's small-Inception twin
DLN = "_dln"  # ... and of its deep-linear-network twin (why_noisy_bn_dln, why_ics_dln)
TWINS = {CONV: "small Inception", DLN: "25-layer linear net"}
MODELS = {"mlp": "MLP", "inception_small": "small Inception"}
EARLY = 0.25  # the landscape's "early in training": the first quarter of the steps
GOOD = 2.0  # points: a rate "trains well" within this much of the variant's best rate
ORDER = ("baseline", "noise", "bn", "noisy_bn")
ICS = ["l2_diff", "rel_diff", "one_minus_cos"]
_LABELS = {"why_noisy_bn": "why BN helps: noisy BN", "why_ics": "why BN helps: ICS",
           "why_landscape": "why BN helps: landscape", "lr_range": "why BN helps: rate range"}
LABELS = {**_LABELS, **{e + s: f"{text}, {net}" for s, net in TWINS.items() for e, text in _LABELS.items()}}
NAMES = {"baseline": "no BN", "noise": "noise, no BN", "bn": "BN", "noisy_bn": "noisy BN"}


def load(sweep_dir: Path) -> pd.DataFrame:
    return load_metrics(sweep_dir, KEYS)


def study(experiment: str) -> str:
    """The analysis an experiment gets: its own name, or its MLP twin's for a `_conv` or `_dln` experiment."""
    base = next((experiment.removesuffix(s) for s in TWINS if experiment.endswith(s)), experiment)
    if base not in STUDIES:
        raise ValueError(f"unknown experiment {experiment!r}: one of {', '.join(STUDIES)} (or one with "
                         f"{' or '.join(map(repr, TWINS))})")
    return base


def model_label(metrics: pd.DataFrame) -> str:
    """The sweep's network in words (the plots' titles)."""
    experiments = metrics.experiment.dropna().astype(str).unique() if "experiment" in metrics else []
    if any(e.endswith(DLN) for e in experiments):  # the deep linear net is the MLP config at depth 25
        return TWINS[DLN]
    names = metrics["model.name"].dropna().unique() if "model.name" in metrics else []
    return ", ".join(MODELS.get(str(n), str(n)) for n in names) or "MLP"


def variants(frame: pd.DataFrame) -> list[str]:
    """The sweep's variants in ORDER (others after, by name)."""
    found = list(dict.fromkeys(frame.variant.dropna()))
    return [v for v in ORDER if v in found] + sorted(v for v in found if v not in ORDER)


def layers(metrics: pd.DataFrame, split: str) -> list[str]:
    """The layers a split's records name (`layer1/...`, `classifier/...`), in the order written."""
    names = metrics.name[metrics.split == split].unique()
    return list(dict.fromkeys(n.split("/")[0] for n in names if "/" in n))


def per_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: run, variant, seed, optim.lr, status, divergence, steps, final and best val
    accuracy, final test accuracy, and `<layer>/movement`, `<layer>/rel_movement` per probed layer."""
    probed = layers(metrics, "probe")
    rows = []
    for run, m in metrics.groupby("run", sort=True):
        acc = {s: m[(m.split == s) & (m.name == "accuracy")].sort_values("step").value for s in ("val", "test")}
        row = {"run": run, **{k: m[k].iloc[0] for k in ("variant", "seed", "optim.lr", "status", "divergence")},
               "steps": int(m.step.max()),
               "final": float(acc["val"].iloc[-1]) if len(acc["val"]) else math.nan,
               "best": float(acc["val"].max()) if len(acc["val"]) else math.nan,
               "final_test": float(acc["test"].iloc[-1]) if len(acc["test"]) else math.nan}
        for layer, d in drifts(m[m.split == "probe"], probed).items():
            row[f"{layer}/movement"], row[f"{layer}/rel_movement"] = d["movement"], d["rel_movement"]
        rows.append(row)
    return pd.DataFrame(rows)


def ok(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that did not diverge (a diverged run's last accuracy is not a final one)."""
    return runs[runs.status != "diverged"]


def ics_per_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run and layer: l2_diff, rel_diff (= l2_diff / grad_norm) and one_minus_cos,
    each the mean over the measured steps; plus a layer "mean" over every layer but the first."""
    wide = ics_steps(metrics)
    out = wide.groupby(["run", "variant", "seed", "layer"], sort=False)[ICS].mean().reset_index()
    mean = ics_network(wide).groupby(["run", "variant", "seed"], sort=False)[ICS].mean().reset_index()
    return pd.concat([out, mean.assign(layer="mean")], ignore_index=True)


def ics_steps(metrics: pd.DataFrame) -> pd.DataFrame:
    """The ICS records as one row per run, layer and step, with the ICS columns."""
    rows = metrics[metrics.split == "ics"]
    if rows.empty:
        return pd.DataFrame(columns=["run", "variant", "seed", "layer", "step", *ICS])
    parts = rows.name.str.rsplit("/", n=1, expand=True)
    wide = (rows.assign(layer=parts[0], kind=parts[1])
            .pivot_table(index=["run", "variant", "seed", "layer", "step"], columns="kind", values="value")
            .reset_index())
    wide["rel_diff"] = wide.l2_diff / wide.grad_norm
    wide["one_minus_cos"] = 1 - wide.cosine
    wide.attrs["first"] = layers(metrics, "ics")[0]
    return wide


def ics_network(wide: pd.DataFrame) -> pd.DataFrame:
    """Per run and step, the mean over every layer but the first (which has no earlier layer)."""
    rest = wide[wide.layer != wide.attrs.get("first")]
    return rest.groupby(["run", "variant", "seed", "step"], sort=False)[ICS].mean().reset_index()


def landscape_per_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: loss_range, grad_change_max and beta, each the mean over the measured
    steps in the first EARLY of training (`*_early`) and over all of them."""
    rows = metrics[(metrics.split == "landscape") & metrics.name.isin(["loss_range", "grad_change_max", "beta"])]
    out = []
    for run, m in rows.groupby("run", sort=True):
        wide = m.pivot_table(index="step", columns="name", values="value").sort_index()
        early = wide[wide.index <= EARLY * float(m["trainer.max_steps"].iloc[0])]
        out.append({"run": run, "variant": m.variant.iloc[0], "seed": m.seed.iloc[0],
                    **{f"{k}_early": float(early[k].mean()) for k in wide.columns},
                    **{k: float(wide[k].mean()) for k in wide.columns}})
    return pd.DataFrame(out)


def initial_rel_loss(metrics: pd.DataFrame) -> pd.DataFrame:
    """lr_range at step 1 (the initial weights): per run its rate and L(w0 - lr g) / L(w0)."""
    rows = metrics[(metrics.split == "landscape") & (metrics.step == 1) & (metrics.name == "rel_loss_x1")]
    return rows[["run", "variant", "seed", "optim.lr", "value"]].rename(columns={"value": "rel_loss"})


def rate_matrix(runs: pd.DataFrame, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """(rates, seeds x rates final val accuracy in points), NaN where the run diverged."""
    r = runs[runs.variant == variant]
    wide = r.assign(final=r.final.where(r.status != "diverged") * 100).pivot(index="seed", columns="optim.lr",
                                                                              values="final").sort_index(axis=1)
    return wide.columns.to_numpy(float), wide.to_numpy(float)


def largest_good_rate(rates: np.ndarray, g: np.ndarray) -> float:
    """The largest rate whose every seed trained (no NaN) with a seed mean within GOOD points of
    the best rate's seed mean; NaN if no rate trained on every seed."""
    trained = ~np.isnan(g).any(axis=0)
    if not trained.any():
        return math.nan
    means = np.where(trained, np.where(np.isnan(g), 0.0, g).mean(axis=0), -np.inf)
    good = trained & (means >= means.max() - GOOD)
    return float(rates[good].max())


# -- the claims (the scorecard's rows and the reports' verdict lines) --------------------------------
CHANCE = 10.0  # points: a diverged run counts as a network that did not learn


def _finals(runs: pd.DataFrame, variant: str) -> np.ndarray:
    """Final val accuracy (points) per seed, a diverged run at chance (stats.DIVERGED_RULE)."""
    r = runs[runs.variant == variant]
    return np.where(r.status == "diverged", CHANCE, 100 * r.final.to_numpy(float))


def _diverged(runs: pd.DataFrame, *variants: str) -> str:
    """The seeds column's note for a statistic a diverged run does not define."""
    n = int(((runs.status == "diverged") & runs.variant.isin(variants)).sum())
    return f"{n} diverged run{'s' if n > 1 else ''} left out: no value defined" if n else ""


def _mean_diff(g: list[np.ndarray]) -> float:
    return float(g[0].mean() - g[1].mean())


def _ratio(g: list[np.ndarray]) -> float:
    return float(g[0].mean() / g[1].mean())


def claims(experiment: str, metrics: pd.DataFrame | None) -> list[dict]:
    """`study_claims` under the experiment's own names: why_ics_conv_not_lower_rel_diff for
    why_ics_not_lower_rel_diff, why_noisy_bn_conv_noise_without_bn_fails for why_noise_without_bn_fails."""
    base = study(experiment)

    def name(claim: str) -> str:
        if experiment == base:
            return claim
        if claim.startswith(base):
            return experiment + claim[len(base):]
        return f"{experiment}_{claim.removeprefix('why_')}"
    return [{**c, "claim": name(c["claim"])} for c in study_claims(base, metrics)]


def study_claims(experiment: str, metrics: pd.DataFrame | None) -> list[dict]:
    """The experiment's claims, each a dict of claim, text, paper, statistic, side, reference,
    groups (one array of per-seed values per side; empty without runs) and stat (of the groups),
    for scorecard.row and the report. Without metrics, the same claims with empty groups."""
    from bnrepro.paper import WHY_ANCHORS as A

    have = metrics is not None
    runs = per_run(metrics) if have else None

    def spec(claim, text, paper, statistic, side, reference, groups, stat, **more):
        return {"claim": claim, "text": text, "paper": paper, "statistic": statistic, "side": side,
                "reference": reference, "groups": groups if have else [], "stat": stat, **more}

    if experiment == "why_noisy_bn":
        last = [c for c in runs.columns if c.endswith("/rel_movement")][-1] if have else ""
        drift_of = (lambda v: ok(runs[runs.variant == v])[last].dropna().to_numpy(float)) if have else None
        return [
            spec("why_noisy_bn_like_bn", "noisy BN ends within 1 point of BN, or above it (a diverged run: chance)",
                 A["noisy_like_bn"], "final val accuracy, noisy BN - BN (points)", ">", -1.0,
                 [_finals(runs, "noisy_bn"), _finals(runs, "bn")] if have else [], _mean_diff),
            spec("why_noise_without_bn_fails", "the same noise without BN ends below no BN (a diverged run: chance)",
                 A["noise_fails"], "final val accuracy, noise without BN - no BN (points)", "<", 0.0,
                 [_finals(runs, "noise"), _finals(runs, "baseline")] if have else [], _mean_diff),
            spec("why_noisy_bn_less_stable", "noisy BN's last-layer input drifts more than without BN",
                 A["noisy_less_stable"], "last layer's percentile travel / first spread, noisy BN / no BN (x)", ">",
                 1.0, [drift_of("noisy_bn"), drift_of("baseline")] if have else [], _ratio,
                 left_out=_diverged(runs, "noisy_bn", "baseline") if have else ""),
        ]
    # ICS and the landscape are read over a fixed number of steps: each row says whether its arms had plateaued.
    plateau = fig3.plateau_note(metrics, {label: metrics.variant == v for v, label in (("bn", "BN"), ("baseline", "no BN"))}
                                ) if have and experiment in ("why_ics", "why_landscape") else ""
    if experiment == "why_ics":
        ics = ics_per_run(metrics) if have else None
        col = (lambda v, c: ics[(ics.variant == v) & (ics.layer == "mean")][c].to_numpy(float)) if have else None
        return [spec(f"why_ics_not_lower_{c}", f"ICS ({words}) is not lower with BN", A["ics_not_lower"],
                     f"{words}, mean over training and layers 2.., BN / no BN (x)", ">", 1.0,
                     [col("bn", c), col("baseline", c)] if have else [], _ratio, plateau=plateau)
                for c, words in (("rel_diff", "||G - G'|| / ||G||"), ("one_minus_cos", "1 - cos(G, G')"))]
    if experiment == "why_landscape":
        land = landscape_per_run(metrics) if have else None
        col = (lambda v, c: land[land.variant == v][c].to_numpy(float)) if have else None
        return [spec(f"why_landscape_{c}", f"the {words} is smaller with BN, early in training", A["smoother"],
                     f"{words}, mean over the first {EARLY:.0%} of training, no BN / BN (x)", ">", 1.0,
                     [col("baseline", f"{c}_early"), col("bn", f"{c}_early")] if have else [], _ratio,
                     plateau=plateau)
                for c, words in (("loss_range", "loss range along the gradient"),
                                 ("beta", "effective beta-smoothness"))]
    if experiment == "lr_range":
        mats = {v: rate_matrix(runs, v) for v in ("baseline", "bn")} if have else {}
        rates = mats["bn"][0] if have else np.empty(0)

        def stat(g):
            return largest_good_rate(rates, g[0]) / largest_good_rate(rates, g[1])
        return [spec("lr_range_larger_rates", "BN trains well at larger rates than no BN", A["larger_rates"],
                     f"largest rate with every seed trained and within {GOOD:g} points of the best, BN / no BN (x)",
                     ">", 1.0, [mats["bn"][1], mats["baseline"][1]] if have else [], stat)]
    raise ValueError(f"unknown experiment {experiment!r}: one of why_noisy_bn, why_ics, why_landscape, lr_range")
