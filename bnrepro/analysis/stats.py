"""Statistics over seeds, shared by the tables and the scorecard (no torch, no training).

- `bootstrap`: a statistic of groups of seeds and its 95% percentile-bootstrap interval, each
  group's rows (seeds) resampled with replacement on their own, 2,000 resamples, a fixed random
  seed per key (zlib.crc32), so the same runs always give the same interval. With 3 seeds there
  are only 10 distinct resamples of a group: the interval is a coarse one, and says so by its width.
- `mean_curve`: the seed-mean of a seeds x steps matrix (NaN after a run stopped).
- `plateau_gain`: Figure 3's plateau rule, which the trainer also stops by (trainer.stop_at_plateau).
- `crossing`: the step at which a curve first reaches a value, interpolated between evaluations.
- `verdict`: the scorecard's rule (scripts/scorecard.py's docstring), for every report that gives one;
  `claim_table`: a study's claims (bnrepro.analysis.why.claims, bn_statistics.claims) as Markdown rows.
"""
from __future__ import annotations

import math
import warnings
import zlib
from typing import Callable

import numpy as np

RESAMPLES = 2000
PLATEAU_FRACTION = 0.25  # the rule looks at the last quarter of the steps so far ...
PLATEAU_GAIN = 0.003  # ... over which the seed-mean best must rise by less than 0.3 points of accuracy


def bootstrap(key: str, groups: list[np.ndarray], stat: Callable[[list[np.ndarray]], float]
              ) -> tuple[float, float, float]:
    """stat(groups), and its 95% percentile-bootstrap interval over the rows (seeds) of each group.
    Resamples whose statistic is NaN (never reached) are left out of the interval."""
    if not groups or any(len(g) == 0 for g in groups):
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    draws = np.array([stat([g[rng.integers(0, len(g), len(g))] for g in groups]) for _ in range(RESAMPLES)])
    draws = draws[np.isfinite(draws)]
    lo, hi = np.percentile(draws, [2.5, 97.5]) if len(draws) else (math.nan, math.nan)
    return float(stat(groups)), float(lo), float(hi)


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


def verdict(ours: float, lo: float, hi: float, side: str, reference: float, size: float = math.nan) -> str:
    """`reproduced` when ours and its whole interval [lo, hi] lie on `side` ("<" or ">") of
    `reference` and, where the paper states a `size`, the interval reaches it; `partly` when ours
    is on that side but the interval is not (or falls short of the size); `not reproduced` when
    ours is not; `not run` without a value."""
    if math.isnan(ours):
        return "not run"
    on = (lambda x: x > reference) if side == ">" else (lambda x: x < reference)
    if not on(ours):
        return "not reproduced"
    reaches = math.isnan(size) or (hi >= size if side == ">" else lo <= size)
    return "reproduced" if on(lo) and on(hi) and reaches else "partly"


def claim_table(specs: list[dict]) -> list[str]:
    """Claim specs (claim, text, paper, statistic, side, reference, groups, stat) as a Markdown table:
    the statistic with its bootstrap interval, the seeds per group and the verdict."""
    lines = ["| claim | anchor | statistic | ours [95% CI] | seeds | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for c in specs:
        ours, lo, hi = bootstrap(c["claim"], c["groups"], c["stat"])
        shown = "n/a" if math.isnan(ours) else f"{ours:.3g} [{lo:.3g}, {hi:.3g}]"
        lines.append(f"| {c['text']} | {c['paper']} | {c['statistic']}; {c['side']} {c['reference']:g} | {shown} | "
                     f"{' vs '.join(str(len(g)) for g in c['groups']) or '0'} | "
                     f"{verdict(ours, lo, hi, c['side'], c['reference'])} |")
    return lines
