"""Student's t distribution and the regularized incomplete beta function, for the statistics policy's
intervals (bnrepro.analysis.stats). SciPy has them, but is no dependency of the suite; the analysis side
stays numpy and pandas. Checked against the textbook quantiles in tests/test_stats_policy.py."""
from __future__ import annotations

import functools
import math


def betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * betacf(a, b, x) / a
    return 1.0 - front * betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_pdf(t: float, df: float) -> float:
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(t * t / df))


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (real degrees of freedom, as Welch-Satterthwaite gives), by bisection to
    1e-12. The root is first found by Newton's method, so that the bisection's steps far from it need
    no cdf: it evaluates only the few within 1e-9 of it, and ends where a bisection on the cdf alone
    would, to the last bit (the reports' numbers stay the same)."""
    if not 0.0 < p < 1.0 or not df > 0:
        return math.nan
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    root = newton(p, df)

    def below(x: float) -> bool:  # t_cdf(x, df) < p, from the root where x is far from it
        return x < root if abs(x - root) > 1e-9 * root else t_cdf(x, df) < p

    lo, hi = 0.0, 1.0
    while below(hi):
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    return 0.5 * (lo + hi)


def newton(p: float, df: float) -> float:
    """The t quantile for p > 1/2 to ~1e-13, by Newton's method inside a bracket that halves wherever
    a step would leave it."""
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    x = 0.5 * (lo + hi)
    for _ in range(200):
        gap = t_cdf(x, df) - p
        lo, hi = (x, hi) if gap < 0 else (lo, x)
        step = x - gap / t_pdf(x, df)
        nxt = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(nxt - x) <= 1e-14 * x or hi - lo <= 1e-13 * hi:
            return nxt
        x = nxt
    return x
