"""Issue 31's protocol v2 end to end on tiny synthetic runs made by the real runner from the real config
(configs/experiment/fig2_v2_fashion_mnist.yaml): every variant trains a few steps with the v2 options on
and leaves its v2 records; the selection step chooses k from validation alone; Figure 3's table gains the
whole-test-split columns and the relative ladder rungs; Figure 4's v2 table compares the ensemble with the
member chosen on validation and with BN-Baseline."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bnrepro import FULL_TEST_FILE
from bnrepro.analysis import ensemble, fig3, fulltest
from bnrepro.analysis.selection import KEY, candidates, choose
from bnrepro.analysis.results import load_metrics
from bnrepro.training.final_eval import BEST_VAL_FILE
from bnrepro.training.session import run
from tests.conftest import SMOKE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import select_fig2_k  # noqa: E402
import table_fig3  # noqa: E402
import table_fig4_v2  # noqa: E402

V2 = ["experiment=fig2_v2_fashion_mnist", *[o for o in SMOKE if not o.startswith("data.val_size")],
      "data.val_size=200", "data.synthetic.train_size=1200", "data.synthetic.test_size=120", "data.test_size=40",
      "trainer.max_steps=12", "trainer.eval_every=4", "trainer.eval_per_decade=0", "trainer.log_every=4",
      "trainer.plateau_min_steps=8", "probe.every=0", "trainer.threads=1", "trainer.checkpoint_every=0"]
VARIANTS = ("inception", "bn_baseline", "bn_x5", "bn_x30", "bn_x5_sigmoid", "inception_x5", "inception_sigmoid")


def train(make_cfg, sweep: Path, variant: str, seeds: str, *more: str) -> list[dict]:
    cfg = make_cfg(*V2, f"variant={variant}", f"seeds={seeds}", *more)
    name = ",".join([f"variant={variant}", *more]).replace("/", "_")
    return run(cfg, sweep / name)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    from bnrepro.config import compose

    root = tmp_path_factory.mktemp("v2")
    select, report = root / "select", root / "report"
    for variant in ("bn_x5", "bn_x30"):
        for k in (3, 6):
            train(compose, select, variant, "[100,101]", f"optim.lr_decay_speedup={k}", "trainer.final_test=false")
    for variant in VARIANTS:
        seeds = "[0,1,2]" if variant in ("inception", "bn_baseline", "bn_x5", "bn_x30") else "[0,1]"
        preds = ["trainer.save_predictions=true"] if variant in ("bn_baseline", "bn_x30") else []
        train(compose, report, variant, seeds, *preds)
    return select, report


def test_every_variant_composes_and_leaves_its_v2_records(sweeps, make_cfg):
    _, report = sweeps
    for variant in VARIANTS:
        cfg = make_cfg("experiment=fig2_v2_fashion_mnist", f"variant={variant}")
        assert cfg.trainer.keep_best_val and cfg.trainer.final_test and cfg.trainer.stop_at_plateau
        assert cfg.trainer.plateau_min_steps == round(10000 / cfg.optim.lr_decay_speedup)
        assert cfg.trainer.max_steps == round(24000 / cfg.optim.lr_decay_speedup)
    runs = sorted(p.parent for p in report.glob("*/seed=*/summary.json"))
    assert len(runs) == 4 * 3 + 3 * 2
    for d in runs:
        summary = json.loads((d / "summary.json").read_text())
        if summary["status"] != "completed":
            continue
        record = json.loads((d / FULL_TEST_FILE).read_text())
        assert record["test_size"] == 120 and (d / BEST_VAL_FILE).is_file()  # the whole split, not 40


def test_selection_reads_validation_only_and_chooses_the_highest_plateau(sweeps, tmp_path):
    select, _ = sweeps
    metrics = load_metrics(select, keys=(KEY,))
    table = candidates(metrics)
    assert set(zip(table.variant, table.k)) == {(v, k) for v in ("bn_x5", "bn_x30") for k in (3.0, 6.0)}
    chosen = choose(table)
    for variant, g in table.groupby("variant"):
        assert g.set_index("k").val_plateau[chosen[variant]] == g.val_plateau.max()
    # Test numbers play no part: scrambling every test row leaves the choice as it was.
    scrambled = metrics.assign(value=metrics.value.where(metrics.split != "test", 0.0))
    assert choose(candidates(scrambled)) == chosen
    select_fig2_k.write(select, tmp_path)
    assert yaml.safe_load((tmp_path / "chosen.yaml").read_text()) == chosen
    assert chosen["fig4_recipe"] in ("bn_x5", "bn_x30")


def test_fig3_v2_table_has_the_whole_test_split_and_the_relative_rungs(sweeps):
    _, report = sweeps
    frame, steps, seeds = table_fig3.tables(report, fig3.V2_RELATIVE)
    assert {"final_full_test_accuracy", "best_val_full_test_accuracy"} <= set(seeds.columns)
    assert set(steps.tolerance.dropna()) == {*fig3.V2_RELATIVE, fig3.TOLERANCE}
    text = table_fig3.write(report, None, v2=True)
    assert "Whole test split (120 images" in text and "(plateau - 0.3 pts)" in text
    done = seeds[seeds.status == "completed"]
    assert done.final_full_test_accuracy.notna().all()
    # A run from before protocol v2 (no full_test.json) reads so, and the others keep their numbers.
    path = report / done.run.iloc[0] / FULL_TEST_FILE
    kept = path.read_bytes()
    path.unlink()
    try:
        assert fulltest.NA_BEFORE_V2 in table_fig3.write(report, None, v2=True)
    finally:
        path.write_bytes(kept)


def test_fig4_v2_compares_with_the_member_chosen_on_validation(sweeps):
    _, report = sweeps
    frame, c, examples = ensemble.v2_table(report, "bn_x30")
    assert examples == 120 and c.shape == (120, 3)
    members = frame[frame.kind == "member"]
    chosen = frame[frame.kind == "val_chosen"].iloc[0]
    assert len(members) == 3 and chosen.val_accuracy == members.val_accuracy.max()
    assert chosen.test_error == members.set_index("seed").test_error[chosen.seed]
    assert (frame.kind == "baseline").sum() == 3 and (frame.kind == "baseline_val_chosen").sum() == 1
    text = table_fig4_v2.write(report, None, "bn_x30")
    assert "member chosen on validation" in text and "BN-Baseline chosen on validation" in text
    # The recipe comes from --recipe or the selection sweep (--select), one of the two, else one clear error.
    for both_or_neither in ([], ["--recipe", "bn_x30", "--select", str(report)]):
        assert table_fig4_v2.main([str(report), *both_or_neither]) == 2
