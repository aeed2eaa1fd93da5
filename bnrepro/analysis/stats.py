"""The suite's one statistics policy (results/README.md, "How to read a verdict", states it for readers).
No torch, no training: every table, report and the scorecard read their numbers through here.

Intervals (`interval`): 95%, Student-t with the delete-one-seed jackknife's standard error. For the mean
of one group this is exactly the textbook t interval (s / sqrt(n), n - 1 degrees of freedom); for a
difference of two means it is exactly Welch's interval (the groups' variances added, Welch-Satterthwaite
degrees of freedom); for any other statistic of groups of seeds (a speed-up read off seed-mean curves, a
maximum over variants) it is the same construction around that statistic. Ratios (claims whose reference
is 1) are taken on the log scale. Why not the percentile bootstrap the suite used before: with 3 seeds a
resample holds at most 3 distinct values, so its interval is [min, max] of the seeds, about 75% coverage.
The t quantile at 2 degrees of freedom is 4.30, which is what an honest interval over 3 seeds costs.

A group of one seed has no spread to estimate: its interval is unbounded (-inf, inf), never a point.
A leave-one-out value that is not finite (a seed whose removal leaves a curve that never gets there)
makes the interval unbounded too: the data cannot bound the statistic. Every row keeps the
leave-one-seed-out values' range, so a reader sees how much one seed moves it.

Verdicts (`verdict`), the same for every claim: the paper's direction and the evidence judged apart.
- `reproduced`: ours lies on the paper's side of the reference, the interval excludes the reference,
  every leave-one-seed-out value keeps the side, and, for a claim of a size (Figure 3's speed-ups), ours
  is within SIZE_FACTOR of the paper's size; and all of this still holds with any one seed left out, the
  interval recomputed on the seeds left (bnrepro.analysis.verdicts.robust): a verdict that one seed can
  flip is not one a reader can trust. With 3 seeds that asks a lot, on purpose: six seeds for a headline;
- `partly`: ours is on the paper's side but the interval reaches the reference (or one seed left out
  flips the side), or the size is outside SIZE_FACTOR;
- `not reproduced`: ours is not on the paper's side, nor is any leave-one-seed-out value (where one is, the
  seeds cannot decide the side: `partly`);
- `no value (why)`: the runs exist but give no number (the reason is stated; never "not run" then);
- `not run`: no runs for the claim.
`power` adds `underpowered: ~N seeds per group` where the interval reaches the reference: the seeds
per group at which an effect of ours' size would be resolved at the same spread.

Diverged or failed runs (`DIVERGED_RULE`): counted, never dropped silently. An accuracy counts at chance;
steps to a threshold count as never (the seed-mean curve is then not defined past the run, so a claim read
off it gets `no value` or an unbounded interval); a statistic that a diverged run does not define (a drift,
an ICS) leaves the run out and the seeds column says how many were left out and why.

Also here, because the trainer stops by it too: `plateau_gain` (Figure 3's plateau rule), `plateau_level`,
`mean_curve` and `crossing` (steps to a threshold, interpolated between evaluations).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from bnrepro.analysis.tdist import betainc as _betainc, t_quantile  # noqa: F401 (t_quantile: the policy's)

LEVEL = 0.95
SIZE_FACTOR = 2.0  # a size claim holds when ours is within 2x of the paper's (the scale differs: CPU, Fashion-MNIST)
PLATEAU_FRACTION = 0.25  # the rule looks at the last quarter of the steps so far ...
PLATEAU_GAIN = 0.003  # ... over which the seed-mean best must rise by less than 0.3 points of accuracy
DIVERGED_RULE = ("a diverged run counts at chance accuracy and as never reaching a threshold; a statistic it "
                 "does not define leaves it out, and the seeds column counts it")


# ------------------------------------------------------------------------------ the interval
@dataclass
class Estimate:
    """A statistic of groups of seeds, its 95% interval [lo, hi] and how it was made."""
    value: float
    lo: float
    hi: float
    n: tuple[int, ...] = ()
    df: float = math.nan
    se: float = math.nan  # on the scale the interval was made (log for ratios)
    log: bool = False
    loo: list[float] = field(default_factory=list)  # the statistic with each seed left out in turn
    needed: int | None = None  # where set (a proportion), the seeds that would resolve it; else seeds_needed

    def __iter__(self):  # ours, lo, hi = estimate
        return iter((self.value, self.lo, self.hi))

    @property
    def method(self) -> str:
        n = " vs ".join(map(str, self.n)) or "0"
        if not math.isfinite(self.df):
            return f"n={n}"
        return f"t{'(log)' if self.log else ''}, df {self.df:.1f}, n={n}"


def interval(groups: Sequence[np.ndarray], stat: Callable[[list[np.ndarray]], float],
             log: bool = False) -> Estimate:
    """stat(groups) with its 95% Student-t interval around the delete-one jackknife's standard error
    (module docstring). `groups`: one array per group, its rows the seeds (or test examples). `log`:
    a ratio, taken on the log scale when it and every leave-one-out value are positive."""
    groups = [np.asarray(g) for g in groups]
    n = tuple(len(g) for g in groups)
    if not groups or min(n) == 0:
        return Estimate(math.nan, math.nan, math.nan, n)
    value = float(stat(groups))
    loos, var, parts = [], [], []
    for k, g in enumerate(groups):
        if len(g) < 2:
            parts.append(None)
            continue
        vals = np.array([stat([*groups[:k], np.delete(g, i, axis=0), *groups[k + 1:]]) for i in range(len(g))], float)
        loos += vals.tolist()
        parts.append((vals, len(g)))
    if not math.isfinite(value):
        return Estimate(value, math.nan, math.nan, n, loo=loos)
    if any(p is None for p in parts) or not all(math.isfinite(v) for v in loos):
        return Estimate(value, -math.inf, math.inf, n, loo=loos)
    # A ratio of 0 (a speed-up that is "never", a drift of nothing) has no log: the linear scale, clipped at 0.
    use_log = log and value > 0 and all(v > 0 for v in loos)
    f = np.log if use_log else (lambda x: x)
    for vals, m in parts:
        v = f(vals)
        var.append((m - 1) / m * float(((v - v.mean()) ** 2).sum()))
    total = sum(var)
    dfs = [m - 1 for _, m in parts]
    df = total ** 2 / sum(v ** 2 / d for v, d in zip(var, dfs)) if total > 0 else float(min(dfs))
    half = t_quantile(0.5 + LEVEL / 2, df) * math.sqrt(total)
    centre = f(value)
    lo, hi = centre - half, centre + half
    if use_log:
        lo, hi = math.exp(lo), math.exp(hi)
    elif log:
        lo = max(lo, 0.0)
    return Estimate(value, float(lo), float(hi), n, df, math.sqrt(total), use_log, loos)


def mean_interval(values: np.ndarray) -> Estimate:
    """The seed mean of one group and its t interval."""
    return interval([np.asarray(values, float)], lambda g: float(g[0].mean()))


def proportion(k: int, n: int, side: str, reference: float) -> Estimate:
    """k of n as an Estimate with its exact interval, and (where the interval reaches `reference`) the
    seeds at which the same fraction would exclude it."""
    e = Estimate(*proportion_interval(k, n), n=(n,))
    if n and not (on_side(e.lo, side, reference) and on_side(e.hi, side, reference)):
        for m in range(n + 1, 1001):
            f, lo, hi = proportion_interval(round(k / n * m), m)
            if on_side(lo, side, reference) and on_side(hi, side, reference):
                e.needed = m
                break
    return e


def proportion_interval(k: int, n: int) -> tuple[float, float, float]:
    """k of n (a count of diverged seeds, say): the fraction and its exact (Clopper-Pearson) 95% interval."""
    if n == 0:
        return math.nan, math.nan, math.nan

    def solve(target: float, a: float, b: float) -> float:  # x with I_x(a, b) = target
        lo, hi = 0.0, 1.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _betainc(a, b, mid) < target else (lo, mid)
        return 0.5 * (lo + hi)
    alpha = 1 - LEVEL
    lo = 0.0 if k == 0 else solve(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else solve(1 - alpha / 2, k + 1, n - k)
    return k / n, lo, hi


# ------------------------------------------------------------------------------- the verdict
def on_side(x: float, side: str, reference: float) -> bool:
    return x > reference if side == ">" else x < reference


def verdict(ours: float, lo: float, hi: float, side: str, reference: float, size: float = math.nan,
            loo: Sequence[float] = (), reason: str = "") -> str:
    """The policy's verdict (module docstring). `size`: the paper's size, for a size claim; `loo`: the
    leave-one-seed-out values; `reason`: why there is no value, where the runs exist."""
    if math.isnan(ours):
        return f"no value ({reason})" if reason else "not run"
    if not on_side(ours, side, reference):
        # one seed deciding the side is not evidence against the paper either
        return "partly" if any(on_side(v, side, reference) for v in loo) else "not reproduced"
    if not (on_side(lo, side, reference) and on_side(hi, side, reference)):
        return "partly"
    if not all(on_side(v, side, reference) for v in loo if math.isfinite(v)):
        return "partly"
    if not math.isnan(size) and not (size / SIZE_FACTOR <= ours <= size * SIZE_FACTOR):
        return "partly"
    return "reproduced"


def seeds_needed(e: Estimate, reference: float) -> int | None:
    """Seeds per group at which an effect the size of ours would be resolved at the same spread (the
    interval's half-width shrinking as 1/sqrt(n), the t quantile with it); None where it already is, or
    there is no spread to scale."""
    if not (math.isfinite(e.se) and e.se > 0 and e.n and math.isfinite(e.value)):
        return None
    f = math.log if e.log else (lambda x: x)
    if e.log and reference <= 0:
        return None
    effect = abs(f(e.value) - f(reference)) if not (e.log and e.value <= 0) else 0.0
    if effect == 0:
        return None
    n = min(e.n)
    if t_quantile(0.5 + LEVEL / 2, e.df) * e.se < effect:
        return None
    def resolves(m: int) -> bool:
        df = round(e.df * (m - 1) / max(n - 1, 1), 1)  # rounded: the quantile is cached
        return t_quantile(0.5 + LEVEL / 2, df) * e.se * math.sqrt(n / m) < effect

    # the half-width falls as m grows (df up, sqrt(n / m) down): the first m that resolves, by bisection
    lo, hi = n, 1001  # resolves(lo) is False; hi is the answer where no m <= 1000 resolves
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if resolves(mid) else (mid, hi)
    return hi


def power_note(e: Estimate, reference: float, unit: str = "seeds") -> str:
    m = e.needed if e.needed is not None else seeds_needed(e, reference)
    if m is None:
        return ""
    return f"underpowered: ~{m if m <= 1000 else '>1000'} {unit} per group would resolve it"


# ------------------------------------------------------------------- curves, plateaus, crossings
def mean_curve(g: np.ndarray) -> np.ndarray:
    """The mean over rows (seeds) at each column (step) of those that reached it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(g, axis=0) if g.size else np.empty(0)


def plateau_gain(steps: np.ndarray, g: np.ndarray, fraction: float = PLATEAU_FRACTION) -> float:
    """How much the seed-mean curve's running best rose over the last `fraction` of the steps
    (a fraction of accuracy; NaN without evaluations in both parts)."""
    mean = mean_curve(g)
    ok = np.isfinite(mean)
    if not ok.any():
        return math.nan
    steps, mean = steps[ok], mean[ok]
    early = steps <= (1 - fraction) * steps[-1]
    if not early.any():
        return math.nan
    return float(mean.max() - mean[early].max())


def plateau_level(steps: np.ndarray, curve: np.ndarray, fraction: float = PLATEAU_FRACTION) -> float:
    """A curve's level at its plateau: its mean over the evaluations in the last `fraction` of its
    steps (a level, not a maximum: the maximum of a noisy curve is biased up and moves with every
    evaluation's noise, which made Figure 3's threshold a knife edge)."""
    ok = np.isfinite(curve)
    if not ok.any():
        return math.nan
    steps, curve = steps[ok], curve[ok]
    late = steps >= (1 - fraction) * steps[-1]
    return float(curve[late].mean())


def crossing(steps: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    """The first step at which `curve` (evaluated at `steps`) reaches `threshold`, linearly
    interpolated in log(step) between the evaluation below it and the one at or above it (the
    evaluations are log-spaced: trainer.eval_per_decade); NaN if it never does. A curve already at
    the threshold at its first evaluation, or exactly at it, gives that evaluation's step."""
    if math.isnan(threshold):
        return math.nan
    hit = np.flatnonzero(curve >= threshold)
    if not len(hit):
        return math.nan
    i = hit[0]
    # An exact hit is that step, not exp(log(step)), which rounds to a neighbouring float.
    if i == 0 or not np.isfinite(curve[i - 1]) or curve[i] == threshold:
        return float(steps[i])
    v0, v1 = curve[i - 1], curve[i]
    a0, a1 = math.log(steps[i - 1]), math.log(steps[i])
    return float(math.exp(a0 + (threshold - v0) / (v1 - v0) * (a1 - a0)))
