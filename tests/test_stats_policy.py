"""The one statistics policy (bnrepro.analysis.stats, verdicts) on constructed data with known answers:
t intervals that are the textbook ones and cover at n = 3, diverged seeds counted by one rule, a NaN
estimate that says why, verdicts that neither flip with one seed left out nor with +-0.1 points of
evaluation noise, illustrations not scored, and the registry of results."""
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bnrepro.analysis import fig3, registry, why
from bnrepro.analysis.claims import fig3_claims
from bnrepro.analysis.stats import (LEVEL, Estimate, interval, mean_interval, power_note, proportion,
                                    proportion_interval, seeds_needed, t_quantile, verdict)
from bnrepro.analysis.tdist import t_cdf
from bnrepro.analysis.verdicts import score
from tests.conftest import REPO


@pytest.mark.parametrize("df, q", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (30, 2.0423), (1e6, 1.9600)])
def test_t_quantile(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)


def test_t_quantile_ends_where_a_bisection_on_the_cdf_alone_ends_to_the_last_bit():
    """Newton's root only skips the cdf far from it: the committed reports' intervals stay the same bytes."""
    def plain(p, df):
        lo, hi = 0.0, 1.0
        while t_cdf(hi, df) < p:
            lo, hi = hi, 2.0 * hi
        while hi - lo > 1e-12 * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        return 0.5 * (lo + hi)

    rng = np.random.default_rng(1)
    for df, p in zip(np.round(rng.uniform(0.3, 300, 150), 1), rng.choice([0.51, 0.6, 0.9, 0.975, 0.995, 0.9999], 150)):
        assert t_quantile(float(p), float(df)) == plain(float(p), float(df)), (p, df)


def test_the_seeds_that_would_resolve_an_effect_are_the_first_n_a_scan_finds():
    def scan(e, reference):
        effect, n = abs(e.value - reference), min(e.n)
        for m in range(n + 1, 1001):
            df = round(e.df * (m - 1) / max(n - 1, 1), 1)
            if t_quantile(0.5 + LEVEL / 2, df) * e.se * math.sqrt(n / m) < effect:
                return m
        return 1001

    rng, checked = np.random.default_rng(2), 0
    for _ in range(20):
        n = int(rng.integers(2, 7))
        e = Estimate(value=float(rng.uniform(0.2, 1)), lo=-9.0, hi=9.0, n=(n, n), df=float(rng.uniform(1, 2 * n)),
                     se=float(rng.uniform(0.1, 1)))
        if t_quantile(0.5 + LEVEL / 2, e.df) * e.se >= e.value:  # not yet resolved
            assert seeds_needed(e, 0.0) == scan(e, 0.0)
            checked += 1
    assert checked > 10


def test_a_mean_gets_the_textbook_t_interval_and_a_difference_welchs():
    x = np.array([1.0, 2.0, 3.0, 10.0])
    e = mean_interval(x)
    half = t_quantile(0.975, 3) * x.std(ddof=1) / 2
    assert (e.value, e.lo, e.hi, e.df) == pytest.approx((4.0, 4.0 - half, 4.0 + half, 3.0))
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 5.0])
    e = interval([a, b], lambda g: g[0].mean() - g[1].mean())
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)  # Welch-Satterthwaite
    assert e.df == pytest.approx(df) and e.hi - e.value == pytest.approx(t_quantile(0.975, df) * math.sqrt(va + vb))


def test_three_seed_intervals_cover_about_95_percent_and_are_wider_than_the_seeds():
    rng = np.random.default_rng(0)
    draws = rng.normal(5.0, 2.0, size=(4000, 3))
    hits = sum(e.lo <= 5.0 <= e.hi for e in (mean_interval(d) for d in draws))
    assert 0.93 < hits / len(draws) < 0.97  # a percentile bootstrap of 3 seeds covers ~75%
    e = mean_interval(draws[0])
    assert e.lo < draws[0].min() and e.hi > draws[0].max()


def test_one_seed_or_a_nonfinite_leave_one_out_is_unbounded_not_a_point():
    assert mean_interval(np.array([3.0])).lo == -math.inf
    e = interval([np.array([1.0, 2.0, 3.0])], lambda g: math.nan if len(g[0]) < 3 and g[0][0] == 2.0 else g[0].mean())
    assert (e.value, e.lo, e.hi) == (2.0, -math.inf, math.inf)


def test_proportions_get_the_exact_interval_and_the_seeds_that_would_resolve_them():
    assert proportion_interval(3, 3) == pytest.approx((1.0, 0.2924, 1.0), abs=1e-4)
    assert proportion_interval(0, 3)[2] == pytest.approx(0.7076, abs=1e-4)
    e = proportion(3, 3, ">", 0.5)
    assert verdict(e.value, e.lo, e.hi, ">", 0.5) == "partly" and e.needed == 6  # 6 of 6: lower end 0.54
    assert "~6 seeds" in power_note(e, 0.5)


@pytest.mark.parametrize("ours, lo, hi, side, size, loo, expected", [
    (2.0, 1.5, 2.5, ">", math.nan, [], "reproduced"), (2.0, 0.5, 2.5, ">", math.nan, [], "partly"),
    (2.0, 1.5, 2.5, ">", math.nan, [1.8, 0.9], "partly"),      # one seed left out flips the side
    (0.5, 0.2, 0.8, ">", math.nan, [], "not reproduced"), (0.5, 0.2, 0.8, ">", math.nan, [0.6, 1.4], "partly"),
    (-2.0, -3.0, -1.0, "<", math.nan, [], "reproduced"),
    (3.0, 2.0, 4.0, ">", 14.8, [], "partly"),                  # direction resolved, size outside 2x of the paper's
    (10.0, 8.0, 12.0, ">", 14.8, [], "reproduced"),
    (math.nan, math.nan, math.nan, ">", math.nan, [], "not run")])
def test_the_verdict_judges_direction_evidence_and_size_apart(ours, lo, hi, side, size, loo, expected):
    assert verdict(ours, lo, hi, side, 0.0 if side == "<" else 1.0, size, loo) == expected


def test_a_nan_estimate_of_existing_runs_says_why_never_not_run():
    spec = {"claim": "c", "text": "t", "paper": "p", "statistic": "s", "side": ">", "reference": 1.0,
            "groups": [np.array([1.0, 2.0]), np.array([1.0, 2.0])], "stat": lambda g: math.nan, "reason": "no rate trained"}
    assert score(spec)["verdict"] == "no value (no rate trained)"
    assert score({**spec, "groups": []})["verdict"] == "not run"


def test_reproduced_must_survive_leaving_any_one_seed_out():
    spec = {"claim": "c", "text": "t", "paper": "p", "statistic": "s", "side": ">", "reference": 0.0,
            "groups": [np.array([2.0, 2.2, 2.1, 2.3])], "stat": lambda g: float(g[0].mean())}
    assert score(spec)["verdict"] == "reproduced"
    shaky = score({**spec, "groups": [np.array([0.3, 0.5, 0.4])]})
    assert shaky["verdict"] == "partly" and shaky["power"].startswith("underpowered, not robust: without seed")


def test_illustrations_are_shown_not_scored():
    spec = {"claim": "c", "text": "t", "paper": "p", "statistic": "s", "side": "<", "reference": 0.0,
            "groups": [np.array([1.0, 2.0, 3.0]), np.array([50.0, 51.0, 52.0])],
            "stat": lambda g: float(g[0].mean() - g[1].mean()), "illustration": "holds by arithmetic"}
    row = score(spec, scope="beyond")
    assert (row["scope"], row["verdict"], row["ours"]) == ("illustration", "illustration (holds by arithmetic)", -49.0)


def test_a_diverged_seed_counts_at_chance_in_noisy_bn_like_bn():
    """Issue 30: with 4 of 5 noisy-BN seeds diverged the claim read "1 vs 5" and reproduced."""
    rows = [{"run": f"{v}{s}", "variant": v, "seed": s, "status": "diverged" if v == "noisy_bn" and s < 4 else
             "completed", "final": 0.9} for v in ("bn", "noisy_bn", "baseline", "noise") for s in range(5)]
    runs = pd.DataFrame(rows)
    g = [why._finals(runs, "noisy_bn"), why._finals(runs, "bn")]
    assert [len(x) for x in g] == [5, 5] and g[0].tolist() == [10.0] * 4 + [90.0]


def write_fig2(shift: float = 0.0) -> pd.DataFrame:
    """A Figure 2 sweep as metrics rows, 3 seeds a variant, every evaluation moved by `shift` (a fraction)."""
    steps = np.array([100, 200, 400, 800, 1600, 3200, 6400])
    base = {"inception": [0.50, 0.62, 0.72, 0.80, 0.85, 0.87, 0.875],
            "bn_baseline": [0.65, 0.75, 0.83, 0.87, 0.89, 0.90, 0.905],
            "bn_x5": [0.72, 0.82, 0.87, 0.885, 0.89, math.nan, math.nan]}
    rows = []
    for variant, curve in base.items():
        for seed, jitter in enumerate((-0.004, 0.0, 0.004)):
            for step, value in zip(steps, curve):
                if not math.isnan(value):
                    rows.append({"run": f"{variant}/seed={seed}", "variant": variant, "seed": seed, "step": step,
                                 "split": "val", "name": "accuracy", "value": value + jitter + shift,
                                 "status": "completed"})
    return pd.DataFrame(rows)


def test_figure_3s_verdicts_do_not_flip_when_every_evaluation_moves_by_a_tenth_of_a_point():
    got = []
    for shift in (-0.001, 0.0, 0.001):
        metrics = write_fig2(shift)
        runs = metrics.drop_duplicates("run")[["run", "variant", "seed", "status"]]
        got.append({s["claim"]: score(s)["verdict"] for s in fig3_claims(metrics, runs)
                    if s["claim"] in ("fig3_bn_baseline_speedup", "fig3_bn_x5_speedup")})
    assert got[0] == got[1] == got[2] and got[1]["fig3_bn_x5_speedup"] != "not reproduced"


def test_the_reference_level_is_a_plateau_minus_a_tolerance_not_a_maximum():
    steps = np.array([100.0, 200, 300, 400])
    g = np.array([[0.5, 0.8, 0.90, 0.86], [0.5, 0.8, 0.84, 0.88]])  # a lucky maximum of 0.90 in one seed
    assert fig3.reference((steps, g)) == pytest.approx((0.87 + 0.87) / 2 - fig3.TOLERANCE)


def test_every_registered_result_names_committed_run_data_and_real_scripts():
    names = [r.name for r in registry.RESULTS]
    assert len(names) == len(set(names)) and {"fig1", "fig2", "fig4"} <= set(names)
    for result in registry.RESULTS:
        for name in result.sweeps:
            assert (REPO / "results" / registry.sweep(name) / "rundata.tar.xz").is_file(), name
        for argv in result.renders:
            assert (REPO / argv[0]).is_file(), argv
    paper = {r.scope for r in registry.RESULTS if r.name in ("fig1", "fig2", "fig4")}
    assert paper == {"paper"}


def test_the_analysis_package_imports_neither_torch_nor_hydra():
    code = ("import sys, importlib, pkgutil, bnrepro.analysis as a\n"
            "for m in pkgutil.iter_modules(a.__path__): importlib.import_module('bnrepro.analysis.' + m.name)\n"
            "bad = [m for m in ('torch', 'torchvision', 'hydra', 'omegaconf') if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
