"""Runs that differ in more than the seed are not averaged as seeds (issue 34, item 1), and the
displays that issue 34 made agree: a divergence step, a speed-up of 0 shown as `never`."""
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from bnrepro.analysis import grouping, results
from bnrepro.analysis.results import diverged_at, load_metrics, load_runs
from bnrepro.analysis.verdicts import loo_range, shown
from tests.conftest import REPO


def fake_run(directory, variant, seed, lr, threads=1, diverged_at_step=None):
    """A finished run's files as the runner writes them, without training: config.yaml, metrics.csv, summary.json."""
    directory.mkdir(parents=True)
    cfg = {"variant": variant, "experiment": "fig1_mnist", "seed": seed, "seeds": None,
           "data": {"name": "fashion_mnist", "root": "data"}, "optim": {"lr": lr},
           "trainer": {"threads": threads, "max_steps": 20}}
    (directory / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [(step, "test", "accuracy", 0.5 + 0.01 * step + 0.001 * seed) for step in (10, 20)]
    if diverged_at_step is not None:
        rows.append((diverged_at_step, "train", "diverged", 1.0))
    pd.DataFrame(rows, columns=["step", "split", "name", "value"]).to_csv(directory / "metrics.csv", index=False)
    (directory / "summary.json").write_text('{"status": "completed"}')


@pytest.fixture
def two_rates(tmp_path):
    """The issue's sweep: optim.lr=0.5,1e4 x variant=baseline,bn, one seed each."""
    for variant in ("baseline", "bn"):
        for lr in (0.5, 1e4):
            fake_run(tmp_path / f"variant={variant},optim.lr={lr}", variant, 0, lr)
    return tmp_path


@pytest.fixture(autouse=True)
def no_selection():
    results.WHERE.clear()
    yield
    results.WHERE.clear()


def test_differing_ignores_the_seed_and_how_a_run_was_executed():
    a = grouping.flatten({"seed": 0, "trainer": {"threads": 1}, "optim": {"lr": 0.5}, "p": [1, 2]})
    b = grouping.flatten({"seed": 1, "trainer": {"threads": 4}, "optim": {"lr": 0.5}, "p": [1, 2]})
    assert grouping.differing([a, b]) == {}
    c = grouping.flatten({"seed": 2, "optim": {"lr": 10000.0}, "p": [1, 2]})
    assert grouping.differing([a, c]) == {"optim.lr": [0.5, 10000.0]}


def test_runs_differing_in_more_than_the_seed_are_refused(two_rates):
    with pytest.raises(grouping.MixedRuns) as err:
        load_metrics(two_rates)
    text = str(err.value)
    assert "optim.lr in {0.5, 10000.0}" in text and "variant=baseline" in text and "--where" in text
    with pytest.raises(grouping.MixedRuns):
        load_runs(two_rates)


def test_a_key_the_script_groups_by_is_no_mixture(two_rates):
    runs = load_runs(two_rates, ("optim.lr",))
    assert len(runs) == 4 and set(runs["optim.lr"]) == {0.5, 10000.0}


def test_seeds_at_another_thread_count_are_still_seeds(tmp_path):
    fake_run(tmp_path / "a", "bn", 0, 0.5, threads=1)
    fake_run(tmp_path / "b", "bn", 1, 0.5, threads=2)
    acc = results.curve(load_metrics(tmp_path), "test", "accuracy")
    assert (acc["count"] == 2).all()


def test_where_selects_one_condition(two_rates):
    results.WHERE.update({"optim.lr": "1e4"})  # a number matches as a number
    runs = load_runs(two_rates)
    assert sorted(runs.run) == ["variant=baseline,optim.lr=10000.0", "variant=bn,optim.lr=10000.0"]
    results.WHERE.update({"optim.lr": "3"})
    with pytest.raises(FileNotFoundError, match="--where optim.lr=3"):
        load_runs(two_rates)


def test_plot_script_refuses_with_one_message_and_draws_with_where(two_rates, tmp_path):
    def plot(*extra):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "plot_fig1.py"), str(two_rates),
                               "--out", str(tmp_path / "fig"), *extra], capture_output=True, text=True, timeout=120)

    refused = plot()
    assert refused.returncode == 2 and not (tmp_path / "fig" / "fig1.png").exists()
    assert refused.stderr.startswith("Error: ") and "optim.lr" in refused.stderr
    assert "Degrees of freedom" not in refused.stderr and "Traceback" not in refused.stderr
    drawn = plot("--where", "optim.lr=0.5")
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "fig" / "fig1.png").read_bytes()[:4] == b"\x89PNG"


def test_divergence_is_read_at_its_logged_step(tmp_path):
    fake_run(tmp_path / "x", "inception_x5", 0, 0.5, diverged_at_step=15)
    fake_run(tmp_path / "y", "inception_x5", 1, 0.5)
    assert diverged_at(load_metrics(tmp_path)) == {"x": 15.0}


def test_a_speedup_of_zero_shows_never_and_other_zeros_stay_numbers():
    speedup = {"statistic": "steps to the level, Inception / BN-x30 (x; 0: never)", "ours": 0.0,
               "ci_low": 0.0, "ci_high": 7.87, "loo_low": 0.0, "loo_high": 2.0}
    assert shown(speedup) == "never [never, 7.87]" and loo_range(speedup) == "never to 2"
    assert shown({**speedup, "ci_high": 0.0}) == "never"
    points = {**speedup, "statistic": "BN - no BN (points)"}
    assert shown(points) == "0 [0, 7.87]"
    assert shown({**speedup, "ours": math.nan}) == "n/a"
