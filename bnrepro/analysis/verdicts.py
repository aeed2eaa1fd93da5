"""A claim spec scored under the one policy (bnrepro.analysis.stats): its value, interval, leave-one-seed-out
range, verdict and power, as one row of the scorecard (and of each report's claims table).

A spec is a dict, made by each result's claims function (bnrepro.analysis.registry names them):
- claim, text, paper (the anchor, with its citation), statistic (in words), side ("<" or ">"), reference;
- groups: one array of per-seed values (or rows) per side; empty where no run exists (`not run`);
- stat: the statistic of the groups;
- optional: size (the paper's size, for a size claim), log (a ratio: interval on the log scale; default:
  reference == 1), unit (what the groups' rows are, for the power note: seeds), estimate (a ready stats.Estimate, e.g. a proportion's exact interval), reason (why the
  runs give no value), left_out (runs a statistic leaves out, in words), illustration (why the claim holds
  by arithmetic: shown, never scored), plateau (fig3.plateau_note on the arms of a fixed-budget claim,
  appended to the scorecard's budget column).
"""
from __future__ import annotations

import math

import numpy as np

from bnrepro.analysis.stats import SIZE_FACTOR, Estimate, interval, power_note, seeds_needed, verdict

COLUMNS = ["claim", "scope", "experiment", "claim_text", "paper", "statistic", "side", "reference", "paper_size",
           "ours", "ci_low", "ci_high", "interval", "seeds", "budget", "loo_low", "loo_high", "data", "verdict",
           "power", "figure"]
ILLUSTRATION = "illustration"
SCORED = ("reproduced", "partly", "not reproduced")


def estimate(spec: dict) -> Estimate:
    if spec.get("estimate") is not None:
        return spec["estimate"]
    groups = [np.asarray(g) for g in spec["groups"]]
    log = spec.get("log", spec["reference"] == 1.0)
    return interval(groups, spec["stat"], log=log) if groups else Estimate(math.nan, math.nan, math.nan)


POLICY = ("Verdicts by the suite's one statistics policy (results/README.md, \"How to read a verdict\"): "
          "`reproduced` when the value and its whole 95% t interval lie on the anchor's side of the reference and "
          "that survives leaving any one seed out; `partly` when the value does but the evidence does not; "
          "`not reproduced` when neither the value nor any leave-one-seed-out value does.")
ROBUST_MAX = 50  # groups of more rows (Figure 4's test examples) are past the regime where one row decides


def robust(spec: dict, v: str, size: float) -> tuple[str, str]:
    """`reproduced` must survive leaving any one seed out, its interval recomputed on what is left (the
    policy: no verdict flips when one seed is left out); else `partly`, with the subset that failed."""
    groups = [np.asarray(g) for g in spec["groups"]]
    if v != "reproduced" or spec.get("estimate") is not None or not groups or max(map(len, groups)) > ROBUST_MAX:
        return v, ""
    log = spec.get("log", spec["reference"] == 1.0)
    for k, g in enumerate(groups):
        for i in range(len(g)):
            e = interval([*groups[:k], np.delete(g, i, axis=0), *groups[k + 1:]], spec["stat"], log=log)
            sub = verdict(e.value, e.lo, e.hi, spec["side"], spec["reference"], size,
                          [x for x in e.loo if math.isfinite(x)])
            if sub != "reproduced":
                where = f"group {k + 1}, seed {i + 1}" if len(groups) > 1 else f"seed {i + 1}"
                m = seeds_needed(e, spec["reference"])
                more = f"; ~{m + 1 if m <= 1000 else '>1000'} seeds per group would hold it" if m else ""
                return "partly", f"underpowered, not robust: without {where} it reads {sub} ({shown_estimate(e)}){more}"
    return v, ""


def shown_estimate(e: Estimate) -> str:
    return shown({"ours": e.value, "ci_low": e.lo, "ci_high": e.hi})


def score(spec: dict, experiment: str = "", figure: str = "", data: str = "", scope: str = "beyond") -> dict:
    """One scorecard row (COLUMNS) for a claim spec."""
    e = estimate(spec)
    size = spec.get("size", math.nan)
    # runs exist for the claim when every group has some (a missing arm reads `not run`, not `no value`)
    have = (bool(spec["groups"]) and all(len(g) for g in spec["groups"])) or spec.get("estimate") is not None
    reason = spec.get("reason") or "the runs exist, but the statistic is undefined on them"
    loo = [v for v in e.loo if math.isfinite(v)]
    v = verdict(e.value, e.lo, e.hi, spec["side"], spec["reference"], size, loo, reason if have else "")
    v, fragile = robust(spec, v, size)
    if spec.get("illustration") and have:
        scope, v, fragile = ILLUSTRATION, f"{ILLUSTRATION} ({spec['illustration']})", ""
    if v == "partly" and not fragile and math.isfinite(size) and math.isfinite(e.value) and e.value > 0 and not (
            size / SIZE_FACTOR <= e.value <= size * SIZE_FACTOR):  # the direction is resolved, the size is not the paper's
        fragile = f"size: ours {number(e.value)}x, the paper's {number(size)}x, outside a factor of {SIZE_FACTOR:g}"
    seeds = " vs ".join(map(str, e.n)) if e.n else "0"
    if spec.get("left_out"):
        seeds += f" ({spec['left_out']})"
    return {"claim": spec["claim"], "scope": scope, "experiment": experiment, "claim_text": spec["text"],
            "paper": spec["paper"], "statistic": spec["statistic"], "side": spec["side"],
            "reference": spec["reference"], "paper_size": size, "ours": e.value, "ci_low": e.lo, "ci_high": e.hi,
            "interval": e.method if have else "", "seeds": seeds,
            "budget": "; ".join(filter(None, (spec.get("budget", ""), spec.get("plateau", "")))),
            "loo_low": min(loo) if loo else math.nan, "loo_high": max(loo) if loo else math.nan, "data": data,
            "verdict": v, "power": fragile or (power_note(e, spec["reference"], spec.get("unit", "seeds")) if v in SCORED else ""), "figure": figure}


def number(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _never(r: dict):
    """A number formatter for the row: a speed-up's 0 (its statistic says "0: never") reads `never`, as
    fig3.md writes it. Display only: scorecard.csv keeps the 0, and the verdict is read on the numbers."""
    speedup = "0: never" in str(r.get("statistic", ""))
    return lambda x: "never" if speedup and x == 0 else number(x)


def shown(r: dict) -> str:
    """ours [lo, hi] as a reader should see it: `n/a`, or `unbounded` where the seeds cannot bound it."""
    num = _never(r)
    if math.isnan(r["ours"]):
        return "n/a"
    if math.isinf(r["ci_low"]) or math.isinf(r["ci_high"]):
        return f"{num(r['ours'])} [unbounded]"
    if math.isnan(r["ci_low"]):
        return num(r["ours"])
    if r["ours"] == r["ci_low"] == r["ci_high"] and num(r["ours"]) == "never":
        return "never"  # every seed and every left-out seed: "never [never, never]" says no more
    return f"{num(r['ours'])} [{num(r['ci_low'])}, {num(r['ci_high'])}]"


def loo_range(r: dict) -> str:
    num = _never(r)
    if math.isnan(r["loo_low"]):
        return "-"
    return f"{num(r['loo_low'])} to {num(r['loo_high'])}"


def claim_table(rows: list[dict]) -> list[str]:
    """Scored claim rows (`score`) as a report's Markdown table, the verdict in the last column."""
    lines = ["| claim | anchor | statistic | ours [95% interval] | leaving one seed out | seeds | power | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ref = f"{r['side']} {number(r['reference'])}"
        lines.append(f"| {r['claim_text']} | {r['paper']} | {r['statistic']}; {ref} | {shown(r)} | {loo_range(r)} | "
                     f"{r['seeds']} | {r['power'] or '-'} | {r['verdict']} |")
    return lines
