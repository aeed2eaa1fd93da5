"""trainer.stop_at_plateau: the reference trains until Figure 3's plateau rule holds on val, and
no further; each member of a stack by its own curve (tests/test_stopping.py); a resumed run stops
where the uninterrupted one did."""
import json

import pandas as pd
import pytest

from bnrepro.errors import BnreproError
from bnrepro.training.loop import FitResult, plateaued
from bnrepro.training.session import run
from tests.conftest import SMOKE

# A rate so small that val accuracy cannot move: the rule holds as soon as it can be checked.
FLAT = [*SMOKE, "data.val_size=256", "variant=inception", "model=mlp", "optim.lr=1e-9", "trainer.max_steps=200",
        "trainer.eval_every=10", "trainer.log_every=10", "probe.every=0", "trainer.threads=1",
        "trainer.checkpoint_every=10", "trainer.plateau_min_steps=40", "seeds=[0,1]"]


def result(*curve):
    r = FitResult()
    r.val_curve = [[10 * (i + 1), a] for i, a in enumerate(curve)]
    return r


def test_plateaued_reads_one_curve_over_the_last_quarter():
    assert plateaued(result(0.5, 0.8, 0.80, 0.802))  # +0.2 points < 0.3
    assert not plateaued(result(0.5, 0.8, 0.80, 0.81))  # +1 point
    assert not plateaued(result(0.5))  # one evaluation: nothing to compare with
    assert not plateaued(result())


def test_a_flat_stack_stops_at_the_first_check_and_a_rerun_keeps_it(make_cfg, tmp_path):
    summaries = run(make_cfg(*FLAT), tmp_path)
    assert [s["steps"] for s in summaries] == [40, 40] and {s["stopped"] for s in summaries} == {"plateau"}
    assert {s["status"] for s in summaries} == {"completed"}
    m = pd.read_csv(tmp_path / "seed=0" / "metrics.csv")
    assert m[(m.split == "val") & (m.name == "accuracy")].step.tolist() == [10, 20, 30, 40]
    before = (tmp_path / "seed=0" / "metrics.csv").read_bytes()
    again = run(make_cfg(*FLAT), tmp_path)  # finished where it stopped: not resumed toward max_steps
    assert [s["steps"] for s in again] == [40, 40] and "resumed_from" not in again[0]
    assert (tmp_path / "seed=0" / "metrics.csv").read_bytes() == before


def test_a_resumed_run_remembers_its_validation_curve(make_cfg, tmp_path):
    """Stopped at step 30 (before the first check), then resumed: the rule at step 40 must see steps
    10-40, as the uninterrupted run's did (with step 40 alone it could not hold until step 60)."""
    run(make_cfg(*FLAT), tmp_path / "whole")
    run(make_cfg(*FLAT, "trainer.max_steps=30"), tmp_path / "resumed")
    resumed = run(make_cfg(*FLAT), tmp_path / "resumed")
    assert resumed[0]["resumed_from"].endswith(".pt") and resumed[0]["steps"] == 40
    for s in ("seed=0", "seed=1"):
        assert ((tmp_path / "whole" / s / "metrics.csv").read_bytes()
                == (tmp_path / "resumed" / s / "metrics.csv").read_bytes())
    assert json.loads((tmp_path / "resumed" / "seed=1" / "summary.json").read_text())["stopped"] == "plateau"


def test_the_bn_variants_train_their_budget(make_cfg):
    assert make_cfg("variant=inception").trainer.stop_at_plateau
    assert make_cfg("variant=inception_sigmoid").trainer.stop_at_plateau
    assert not make_cfg("variant=bn_baseline").trainer.stop_at_plateau
    assert not make_cfg("variant=bn_x30").trainer.stop_at_plateau


def test_fig2_stops_every_16000_step_budget_and_no_accelerated_one(make_cfg):
    """configs/experiment/fig2_fashion_mnist.yaml: every variant by the rule, which only the budgets past
    plateau_min_steps ever check (the 6x-decay variants train their 2,667 steps)."""
    for variant in ("inception", "inception_sigmoid", "bn_baseline", "bn_x5", "bn_x30", "bn_x5_sigmoid"):
        t = make_cfg("experiment=fig2_fashion_mnist", f"variant={variant}").trainer
        assert t.stop_at_plateau
        assert (t.max_steps > t.plateau_min_steps) == (variant in ("inception", "inception_sigmoid", "bn_baseline"))


def test_stopping_at_a_plateau_needs_a_validation_split(make_cfg):
    from bnrepro.validation import validate

    with pytest.raises(BnreproError, match="trainer.stop_at_plateau=true .* data.val_size=0"):
        validate(make_cfg(*FLAT, "data.val_size=0"))
