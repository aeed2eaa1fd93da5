"""Issue 31's protocol v2 records (bnrepro/training/final_eval.py): best_val.pt holds the weights of the
run's best validation evaluation (evaluating it gives back the logged best), full_test.json evaluates
the final and the best-validation model on the WHOLE test split (not data.test_size's subsample) and
equals a direct evaluation, a stack writes one of each per member, and both stay off by default."""
import json

import pandas as pd
import pytest
import torch

from bnrepro import BEST_VAL_PREDICTIONS_FILE, FULL_TEST_FILE, PREDICTIONS_FILE
from bnrepro.data import build_data
from bnrepro.errors import BnreproError
from bnrepro.training import posthoc
from bnrepro.training.final_eval import BEST_VAL_FILE, load_best_val
from bnrepro.training.session import run
from tests.conftest import SMOKE, run_one

# Noisy synthetic data, so that validation accuracy moves up and down and its best is not the last
# evaluation; a 100-image test subsample during training, of a 400-image test split.
V2 = [*SMOKE, "variant=bn", "model=mlp", "data.synthetic.noise=12", "optim.lr=0.5", "optim.momentum=0.9", "data.synthetic.train_size=1500",
      "data.synthetic.test_size=400", "data.test_size=100", "data.val_size=300", "trainer.max_steps=120",
      "trainer.eval_every=10", "trainer.log_every=10", "probe.every=0", "trainer.threads=1",
      "trainer.keep_best_val=true", "trainer.final_test=true", "trainer.save_predictions=true",
      "trainer.checkpoint_every=50"]


def whole(cfg):
    full = posthoc.dataclasses.replace(cfg.data, test_size=None)
    return build_data(full, batch_size=cfg.trainer.batch_size, eval_batch_size=cfg.trainer.eval_batch_size,
                      device="cpu")


def val_curve(run_dir) -> pd.Series:
    m = pd.read_csv(run_dir / "metrics.csv")
    return m[(m.split == "val") & (m.name == "accuracy")].set_index("step").value


def test_single_run_keeps_its_best_and_measures_the_whole_test_split(make_cfg, tmp_path):
    cfg = make_cfg(*V2)
    summary = run_one(cfg, tmp_path)
    curve = val_curve(tmp_path)
    assert curve.idxmax() != curve.index.max(), "the data should make the best evaluation not the last one"
    best = load_best_val(tmp_path)
    assert best["step"] == summary["best_val_step"] == curve.idxmax()
    assert best["val_accuracy"] == summary["best_val_accuracy"] == curve.max()
    data = whole(cfg)
    assert data.test_size == 400
    model = posthoc.network(cfg, best["model"], data.input_shape, data.num_classes)
    # The kept weights are those of the best evaluation: evaluated again, they give the logged best exactly.
    assert posthoc.evaluate(model, data.val_batches())[0] == summary["best_val_accuracy"]
    record = json.loads((tmp_path / FULL_TEST_FILE).read_text())
    assert record["test_size"] == 400 and record["final"]["step"] == summary["steps"] == 120
    assert record["best_val"]["step"] == best["step"]
    assert record["best_val"]["val_accuracy"] == record["best_val"]["logged_val_accuracy"] == curve.max()
    assert record["best_val"]["test_accuracy"] == posthoc.evaluate(model, data.test_batches())[0]
    final, step = posthoc.load_model(tmp_path, cfg, data.input_shape, data.num_classes)
    assert step == 120
    assert record["final"]["test_accuracy"] == posthoc.evaluate(final, data.test_batches())[0]
    assert record["final"]["val_accuracy"] == curve.loc[120]
    assert record["final"]["test_accuracy"] != record["best_val"]["test_accuracy"] or best["step"] == 120
    assert summary["full_test"] == {"final": record["final"]["test_accuracy"],
                                    "best_val": record["best_val"]["test_accuracy"]}
    for name, key in ((PREDICTIONS_FILE, "final"), (BEST_VAL_PREDICTIONS_FILE, "best_val")):
        probs = pd.read_csv(tmp_path / name)
        assert len(probs) == 400  # the whole split, not the 100 evaluated during training
        hits = (probs.drop(columns="label").to_numpy().argmax(1) == probs.label.to_numpy()).mean()
        assert hits == pytest.approx(record[key]["test_accuracy"])


def test_a_stack_writes_each_members_own(make_cfg, tmp_path):
    cfg = make_cfg(*V2, "seeds=[0,1]")
    summaries = run(cfg, tmp_path)
    data = whole(make_cfg(*V2))
    for seed, summary in zip((0, 1), summaries):
        d = tmp_path / f"seed={seed}"
        best = load_best_val(d)
        assert best["step"] == summary["best_val_step"] == val_curve(d).idxmax()
        member = make_cfg(*V2, f"seed={seed}")
        model = posthoc.network(member, best["model"], data.input_shape, data.num_classes)
        # One network per member, the stack's rounding aside: within one validation example.
        assert posthoc.evaluate(model, data.val_batches())[0] == pytest.approx(summary["best_val_accuracy"], abs=1.01 / 300)
        record = json.loads((d / FULL_TEST_FILE).read_text())
        assert record["best_val"]["test_accuracy"] == posthoc.evaluate(model, data.test_batches())[0]
        assert len(pd.read_csv(d / BEST_VAL_PREDICTIONS_FILE)) == 400
    a, b = (load_best_val(tmp_path / f"seed={s}")["model"] for s in (0, 1))
    assert not torch.equal(a["hidden.0.linear.weight"], b["hidden.0.linear.weight"])


def test_off_by_default_and_refused_without_a_validation_split(make_cfg, tmp_path):
    cfg = make_cfg(*[o for o in V2 if not o.startswith(("trainer.keep_best_val", "trainer.final_test"))])
    assert not cfg.trainer.keep_best_val and not cfg.trainer.final_test
    summary = run_one(cfg, tmp_path / "v1")
    assert not (tmp_path / "v1" / BEST_VAL_FILE).exists() and not (tmp_path / "v1" / FULL_TEST_FILE).exists()
    assert "full_test" not in summary and len(pd.read_csv(tmp_path / "v1" / PREDICTIONS_FILE)) == 100
    with pytest.raises(BnreproError, match="keep_best_val=true .* data.val_size=0"):
        run_one(make_cfg(*V2, "data.val_size=0"), tmp_path / "refused")


def test_a_finished_run_is_not_reused_for_records_it_lacks(make_cfg, tmp_path):
    plain = [o for o in V2 if not o.startswith(("trainer.keep_best_val", "trainer.final_test"))]
    run_one(make_cfg(*plain), tmp_path)
    with pytest.raises(BnreproError, match="different config"):
        run_one(make_cfg(*V2), tmp_path)
