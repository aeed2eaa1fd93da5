"""data.val_size: a validation split held out of the training split, the same in every run, never trained on."""
import json

import pandas as pd
import pytest
import torch

from bnrepro.data import build_data, tensors
from bnrepro.errors import BnreproError
from bnrepro.training.session import run
from tests.conftest import SMOKE, run_one


def test_val_split_is_held_out_fixed_and_complete(make_cfg):
    whole = tensors.load(make_cfg("data=synthetic").data, torch.device("cpu"))
    cfg = make_cfg("data=synthetic", "data.val_size=300").data
    a, b = (tensors.load(cfg, torch.device("cpu"), batch_size=32) for _ in range(2))
    assert len(a.y_val) == 300 and len(a.y_train) == len(whole.y_train) - 300
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.x_train, b.x_train)  # a fixed choice
    # Training and validation together are the original training split, and share no example.
    rows = lambda x: {tuple(r) for r in x.flatten(1)[:, :8].tolist()}  # noqa: E731 (synthetic rows are unique)
    assert rows(a.x_train) | rows(a.x_val) == rows(whole.x_train)
    assert not rows(a.x_train) & rows(a.x_val)
    assert torch.equal(a.x_test, whole.x_test)  # the test split is untouched


def test_standardize_uses_the_training_examples_only(make_cfg):
    s = tensors.load(make_cfg("data=synthetic", "data.val_size=500", "data.preprocess=standardize").data,
                     torch.device("cpu"), batch_size=32)
    torch.testing.assert_close(s.x_train.mean(dim=(0, 2, 3)), torch.zeros(s.x_train.shape[1]), atol=1e-5, rtol=0)
    assert s.x_val.mean().abs() > 1e-4  # not standardized on itself


def test_a_run_evaluates_val_beside_test(make_cfg, tmp_path):
    summary = run_one(make_cfg(*SMOKE, "data.val_size=256", "variant=bn"), tmp_path)
    m = pd.read_csv(tmp_path / "metrics.csv")
    val, test = (m[(m.split == s) & (m.name == "accuracy")] for s in ("val", "test"))
    assert list(val.step) == list(test.step) == [10, 20]
    assert summary["val_size"] == 256 and summary["best_val_accuracy"] == val.value.max()
    assert summary["best_val_step"] in (10, 20) and "val/accuracy" in summary["final"]
    assert json.loads((tmp_path / "summary.json").read_text())["best_val_accuracy"] == summary["best_val_accuracy"]


def test_stacked_seeds_share_the_val_split(make_cfg, tmp_path):
    stacked = run(make_cfg(*SMOKE, "data.val_size=256", "variant=bn", "seeds=[0,1]"), tmp_path)
    single = run_one(make_cfg(*SMOKE, "data.val_size=256", "variant=bn", "seed=1"), tmp_path / "single")
    assert stacked[1]["best_val_accuracy"] == pytest.approx(single["best_val_accuracy"], abs=1e-6)


def test_a_val_size_that_leaves_no_batch_is_one_clear_error(make_cfg):
    """(A negative data.val_size is a row of tests/test_bad_input.py's config table.)"""
    with pytest.raises(BnreproError, match="data.val_size=1990 with trainer.batch_size=32 leaves fewer than one batch"):
        build_data(make_cfg("data=synthetic", "data.val_size=1990").data, batch_size=32, eval_batch_size=64, device="cpu")


def test_imagenet_subset_refuses_val_size(make_cfg):
    with pytest.raises(BnreproError, match="data.val_size=100 is not supported for imagenet_subset"):
        build_data(make_cfg("data=imagenet_subset", "data.val_size=100").data, batch_size=32, eval_batch_size=64,
                   device="cpu")
