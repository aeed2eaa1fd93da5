"""Issue 14's protocol pieces, each on a case with a known answer: log-spaced evaluations, the
interpolated crossing, the plateau rule, the init matched to the nonlinearity,
per-variant budgets, the saved predictions and Figure 4's ensemble, and the learning-rate table."""
import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO, SMOKE, run_one

sys.path.insert(0, str(REPO / "scripts"))
import table_fig4  # noqa: E402
import table_lr  # noqa: E402


def test_eval_steps_every_n_or_log_spaced():
    from bnrepro.training.loop import eval_steps

    assert eval_steps(95, 20) == {20, 40, 60, 80, 95}
    steps = sorted(eval_steps(12000, 50, 16))
    assert steps[0] == 50 and steps[-1] == 12000 and 500 in steps and 5000 in steps  # a decade: 16 steps on
    ratios = np.diff(np.log10(steps[:-1]))
    assert ratios.max() < 1 / 16 + 0.01 and len(steps) == 1 + 1 + math.floor(16 * math.log10(12000 / 50))
    capped = sorted(eval_steps(50000, 50, 16, gap_max=1000))  # log early, never more than 1,000 apart late
    assert set(steps) - {12000} <= set(capped) and max(np.diff(capped)) <= 1000 and capped[-1] == 50000
    assert {1000 * k for k in range(1, 51)} <= set(capped) and len(capped) < 49 + 50  # 49 log-spaced, 50 linear, shared


def test_crossing_interpolates_in_log_steps():
    from bnrepro.analysis.stats import crossing

    steps = np.array([100.0, 1000.0, 10000.0])
    assert crossing(steps, np.array([0.5, 0.7, 0.9]), 0.6) == pytest.approx(math.sqrt(100 * 1000))
    assert crossing(steps, np.array([0.5, 0.7, 0.9]), 0.7) == 1000  # hit exactly: that step
    assert crossing(steps, np.array([0.8, 0.7, 0.9]), 0.6) == 100  # already there at the first evaluation
    assert math.isnan(crossing(steps, np.array([0.5, 0.55, 0.58]), 0.6))
    assert math.isnan(crossing(steps, np.array([0.5, 0.7, 0.9]), math.nan))


def test_plateau_gain_is_the_rise_of_the_running_best_over_the_last_quarter():
    from bnrepro.analysis.fig3 import plateau_gain

    steps = np.array([100.0, 200, 300, 400])
    g = np.array([[0.5, 0.8, 0.81, 0.812], [0.5, 0.8, 0.79, 0.814]])  # mean 0.5, 0.8, 0.8, 0.813
    assert plateau_gain(steps, g) == pytest.approx(0.013)
    assert plateau_gain(steps[:3], g[:, :3]) == pytest.approx(0.0)  # last quarter of 300: after 225
    assert math.isnan(plateau_gain(steps[:1], g[:, :1]))


@pytest.mark.parametrize("activation, init, expected", [
    ("relu", "auto", "he"), ("sigmoid", "auto", "glorot"), ("sigmoid", "he", "he"), ("relu", "glorot", "glorot")])
def test_conv_init_matches_the_nonlinearity(make_cfg, activation, init, expected):
    from bnrepro.models import build_model

    cfg = make_cfg("model=inception_small", "model.width_mult=0.5", f"model.activation={activation}",
                   f"model.init={init}", "bn.placement=none")
    torch.manual_seed(0)
    net = build_model(cfg.model, cfg.bn, (3, 32, 32), 10)
    conv = max((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), key=lambda m: m.weight.numel())
    fan_in, fan_out = conv.weight[0].numel(), conv.weight.shape[0] * conv.weight[0, 0].numel()
    std = math.sqrt(2 / fan_in) if expected == "he" else math.sqrt(2 / (fan_in + fan_out))
    assert conv.weight.std().item() == pytest.approx(std, rel=0.05)


def test_budgets_follow_the_variants_schedule(make_cfg):
    steps = {v: make_cfg("experiment=fig2_fashion_mnist", f"variant={v}").trainer.max_steps
             for v in ("inception", "bn_baseline", "bn_x5", "bn_x30", "inception_sigmoid")}
    assert steps == {"inception": 16000, "bn_baseline": 16000, "bn_x5": 2667, "bn_x30": 2667, "inception_sigmoid": 16000}
    fig4 = make_cfg("experiment=fig4_fashion_mnist")
    assert (fig4.variant, fig4.model.dropout, list(fig4.seeds), fig4.trainer.save_predictions) == ("bn_x30", 0.1, [3, 4, 5], True)


@pytest.mark.parametrize("stacked", [False, True])
def test_saved_predictions_are_the_final_models(make_cfg, tmp_path, stacked):
    from bnrepro.training.session import run

    cfg = make_cfg(*SMOKE, "trainer.save_predictions=true", "data.synthetic.test_size=70",
                   *(["seeds=[0,1]"] if stacked else []))
    dirs = [tmp_path / f"seed={s}" for s in (0, 1)] if stacked else [tmp_path]
    run(cfg, tmp_path) if stacked else run_one(cfg, tmp_path)
    for d in dirs:
        probs = pd.read_csv(d / "test_probs.csv")
        assert len(probs) == 70 and list(probs.columns[:2]) == ["label", "p0"]
        p = probs.drop(columns="label").to_numpy()
        assert np.allclose(p.sum(1), 1, atol=1e-3)
        final = json.loads((d / "summary.json").read_text())["final"]["test/accuracy"]
        assert (p.argmax(1) == probs.label.to_numpy()).mean() == pytest.approx(final)


def write_member(run_dir, seed, experiment, probs, labels, dropout=0.0):
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"variant": "bn_x30", "seed": seed, "experiment": experiment, "data": {"name": "synthetic8"},
         "model": {"dropout": dropout}}))
    pd.DataFrame([(0, "test", "accuracy", 0.5)], columns=["step", "split", "name", "value"]).to_csv(
        run_dir / "metrics.csv", index=False)
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed"}))
    frame = pd.DataFrame(probs, columns=["p0", "p1"])
    frame.insert(0, "label", labels)
    frame.to_csv(run_dir / "test_probs.csv", index=False)


def test_fig4_ensemble_averages_probabilities(tmp_path):
    labels = [0, 0, 1, 1]
    # Each member gets one example wrong (25% error), a different one; the average gets them all right.
    members = [[[0.4, 0.6], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7]],
               [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]],
               [[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]]
    for i, p in enumerate(members[:2]):
        write_member(tmp_path / "fig2" / f"s{i}", i, "fig2", p, labels)
    write_member(tmp_path / "fig4" / "s2", 3, "fig4", members[2], labels, dropout=0.1)
    frame, gain, n = table_fig4.table(tmp_path / "fig4", [tmp_path / "fig2"])
    assert n == 4 and frame[frame.kind == "single"].test_error.tolist() == [25.0, 25.0, 25.0]
    assert frame.model.tolist()[-2:] == ["ensemble of the 2 from fig2", "ensemble of all 3"]
    assert frame[frame.kind == "ensemble"].test_error.tolist() == [0.0, 0.0]
    assert gain[0] == -25.0 and gain[1] <= gain[0] <= gain[2]
    assert "dropout 0.1" in frame.model.iloc[2]
    text = table_fig4.markdown(tmp_path / "fig4", [tmp_path / "fig2"], frame, gain, n)
    assert "Ensemble of all - best single member: **-25.00 points**" in text


def test_lr_table_picks_the_best_validation_maximum(tmp_path):
    for lr, val, status in ((0.01, [0.5, 0.6], "completed"), (0.03, [0.5, 0.7], "completed"),
                            (0.1, [0.9], "diverged")):
        for seed in (0, 1):
            d = tmp_path / f"lr={lr},seed={seed}"
            d.mkdir()
            (d / "config.yaml").write_text(yaml.safe_dump({"variant": "inception", "seed": seed, "experiment": "t",
                                                          "data": {"name": "x"}, "optim": {"lr": lr}}))
            rows = [(100 * (i + 1), split, "accuracy", v - (0.1 if split == "test" else 0))
                    for i, v in enumerate(val) for split in ("val", "test")]
            pd.DataFrame(rows, columns=["step", "split", "name", "value"]).to_csv(d / "metrics.csv", index=False)
            (d / "summary.json").write_text(json.dumps({"status": status, "divergence": "dead"}))
    t = table_lr.table(tmp_path).set_index("lr")
    assert t.chosen.to_dict() == {0.01: False, 0.03: True, 0.1: False}  # 0.1 diverged: out, whatever its accuracy
    assert t.best_val_accuracy[0.03] == 0.7 and t.test_at_best_val[0.03] == pytest.approx(0.6)
    assert "| inception | 0.1 | 2 diverged | diverged (dead) |" in table_lr.markdown(tmp_path, t.reset_index())
