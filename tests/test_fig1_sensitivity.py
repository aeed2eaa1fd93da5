"""Figure 1's sensitivity map (issue 15): the MLP's named inits, the experiment over its whole grid,
and scripts/plot_fig1_sensitivity.py and scripts/report_fig1_sensitivity.py on a synthetic sweep
whose answers are constructed (below), so every verdict of the report is known in advance."""
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.test_runner import TINY, tiny_data

sys.path.insert(0, str(REPO / "scripts"))
import plot_fig1_sensitivity  # noqa: E402
import report_fig1_sensitivity  # noqa: E402

INIT_STDS = ["0.01", "0.1", "null"]  # null: model.init=lecun, N(0, 1/fan_in)
LRS = ["0.01", "0.1", "0.5"]
MOMENTA = ["0", "0.9"]
GRID = list(itertools.product(["baseline", "bn"], INIT_STDS, LRS, MOMENTA))


# --- the MLP's inits -------------------------------------------------------------------------------
@pytest.mark.parametrize("init, std", [("lecun", lambda i, o: 1 / math.sqrt(i)), ("he", lambda i, o: math.sqrt(2 / i)),
                                       ("glorot", lambda i, o: math.sqrt(2 / (i + o)))])
def test_mlp_named_init(init, std):
    from bnrepro.models.mlp import MLP

    torch.manual_seed(0)
    model = MLP(784, 10, width=100, init=init)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            fan_out, fan_in = m.weight.shape
            assert m.weight.std().item() == pytest.approx(std(fan_in, fan_out), rel=0.1 if fan_out == 10 else 0.03)
            assert m.bias is None or torch.count_nonzero(m.bias) == 0


def test_mlp_auto_init_is_torch_default_and_init_std_wins():
    """`auto` keeps torch's default (uniform within 1/sqrt(fan_in), random biases), so results made
    without init_std do not change; init_std, when given, wins over any init."""
    from bnrepro.models.mlp import MLP

    torch.manual_seed(0)
    auto = MLP(784, 10, width=100)
    torch.manual_seed(0)
    reference = torch.nn.Linear(784, 100)
    assert torch.equal(auto.hidden[0].linear.weight, reference.weight)
    assert torch.equal(auto.hidden[0].linear.bias, reference.bias)
    w = MLP(784, 10, width=100, init_std=0.05, init="lecun").hidden[0].linear.weight
    assert w.std().item() == pytest.approx(0.05, rel=0.03)


def test_lecun_init_through_the_config(make_cfg):
    from bnrepro.models import build_model

    cfg = make_cfg("model=mlp", "model.init_std=null", "model.init=lecun", "bn.placement=none")
    torch.manual_seed(0)
    w = build_model(cfg.model, cfg.bn, (1, 28, 28), 10).hidden[1].linear.weight
    assert w.std().item() == pytest.approx(0.1, rel=0.03)  # 1/sqrt(100)


# --- the experiment ---------------------------------------------------------------------------------
def test_every_grid_cell_composes(make_cfg):
    from bnrepro.models import build_model

    for variant, init_std, lr, momentum in GRID:
        cfg = make_cfg("experiment=fig1_sensitivity", f"variant={variant}", f"model.init_std={init_std}",
                       f"optim.lr={lr}", f"optim.momentum={momentum}")
        assert (cfg.experiment, cfg.variant, cfg.optim.lr, cfg.optim.momentum) == \
            ("fig1_sensitivity", variant, float(lr), float(momentum))
        assert list(cfg.seeds) == [0, 1, 2, 3, 4] and cfg.data.val_size == 5000
        assert (cfg.trainer.max_steps, cfg.trainer.batch_size, cfg.trainer.eval_per_decade) == (50000, 60, 16)
        assert (cfg.model.depth, cfg.model.width, cfg.model.activation.value) == (3, 100, "sigmoid")
        assert cfg.bn.placement.value == ("none" if variant == "baseline" else "before")
        if lr == "0.1" and momentum == "0":  # the weights each init_std gives, once per init
            torch.manual_seed(0)
            w = build_model(cfg.model, cfg.bn, (1, 28, 28), 10).hidden[0].linear.weight
            expected = 1 / math.sqrt(784) if init_std == "null" else float(init_std)
            assert w.std().item() == pytest.approx(expected, rel=0.03)
    # fig1_mnist's defaults are the map's choice (its header: the rule); the old point is a named alternative.
    fig1, legacy = make_cfg("experiment=fig1_mnist"), make_cfg("experiment=fig1_mnist_legacy")
    assert (fig1.data.val_size, fig1.model.init_std, fig1.optim.lr, fig1.optim.momentum) == (5000, 0.01, 0.5, 0)
    assert (legacy.model.init_std, legacy.optim.lr, legacy.optim.momentum, legacy.trainer.max_steps) == (0.1, 0.1, 0, 50000)
    assert cfg.trainer.eval_gap_max == 0 and fig1.trainer.eval_gap_max == 1000


def test_header_and_make_target_name_the_grid():
    header = (REPO / "configs" / "experiment" / "fig1_sensitivity.yaml").read_text()
    makefile = (REPO / "Makefile").read_text()
    axes = [f"model.init_std={','.join(INIT_STDS)}", f"optim.lr={','.join(LRS)}"]
    assert all(a in header and a in makefile for a in axes)
    assert f"optim.momentum={','.join(MOMENTA)}" in header and "variant=baseline,bn" in header
    assert "fig1_sensitivity:" in makefile and "outputs/results/fig1_sensitivity_fashion_mnist" in makefile


@pytest.mark.parametrize("cell", [("bn", "null", "0.5", "0.9"), ("baseline", "0.01", "0.01", "0")])
def test_grid_cells_run_stacked_on_tiny_data(make_cfg, tmp_path, cell):
    from bnrepro.training.session import run

    variant, init_std, lr, momentum = cell
    cfg = make_cfg("experiment=fig1_sensitivity", f"variant={variant}", f"model.init_std={init_std}",
                   f"optim.lr={lr}", f"optim.momentum={momentum}", *TINY, *tiny_data("fig1_sensitivity", tmp_path))
    summaries = run(cfg, tmp_path / "run")
    assert [s["status"] for s in summaries] == ["completed"] * 5
    metrics = pd.read_csv(tmp_path / "run" / "seed=4" / "metrics.csv")
    assert {"val", "test", "probe"} <= set(metrics.split) and "layer3/unit_p85" in set(metrics.name)


def test_numpy_drift_is_the_probes_drift():
    from bnrepro.analysis.sensitivity import drift
    from bnrepro.tracking.probes import drift_statistics

    rng = np.random.default_rng(0)
    series = {f"layer3/unit_p{q}": list(np.cumsum(rng.normal(size=6)) + q / 10) for q in (15, 50, 85)}
    rows = pd.DataFrame([(200 * i, "probe", k, v[i]) for k, v in series.items() for i in range(6)],
                        columns=["step", "split", "name", "value"])
    assert drift(rows, "layer3") == pytest.approx(drift_statistics(series)["layer3/unit"])


# --- the scripts on a constructed sweep -------------------------------------------------------------
STEPS = [10, 20, 40, 80, 160]
PROBE_STEPS = [0, 80, 160]
STATIC = ([-0.5] * 3, [0.0] * 3, [0.5] * 3)
MOVING = ([-0.1, 0.5, 1.5], [0.0, 1.0, 2.0], [0.1, 1.5, 2.5])
# (init_std or None for lecun, lr, momentum) -> variant -> (val curve before the final value, finals per seed,
# (p15, p50, p85) at the probe steps); a finals entry None: that seed diverged after its first evaluation.
CELLS = {
    # A: all three claims hold; no BN never reaches the threshold (0.9 x 0.90): speed-up a lower bound.
    (0.01, 0.1, 0.0): {"baseline": ([0.1, 0.1, 0.2, 0.5], [0.70, 0.72, 0.74],
                                    MOVING),
                       "bn": ([0.3, 0.6, 0.85, 0.88], [0.88, 0.90, 0.92],
                              ([-1.0, -1.1, -1.0], [0.0, 0.1, 0.0], [1.0, 1.0, 1.1]))},
    # B: BN faster, ends lower, drifts less only relative to its (tiny) starting spread: the digits.
    (None, 0.1, 0.0): {"baseline": ([0.1, 0.3, 0.6, 0.9], [0.94, 0.95, 0.96],
                                    ([-0.01, -0.11, -0.21], [0.0, 0.0, 0.0], [0.01, 0.11, 0.21])),
                       "bn": ([0.5, 0.88, 0.9, 0.9], [0.90, 0.91, 0.92],
                              ([-1.0, -1.5, -2.0], [0.0, 0.5, 0.0], [1.0, 1.5, 2.0]))},
    # C: no difference at all: every interval straddles no effect.
    (0.01, 0.5, 0.0): {"baseline": ([0.2, 0.5, 0.7, 0.85], [0.80, 0.85, 0.90], MOVING),
                       "bn": ([0.2, 0.5, 0.7, 0.85], [0.85, 0.90, 0.80], MOVING)},
    # D: faster and stable reversed; one no-BN seed diverged: at chance in the lead (the policy), left out of
    # the curves and the drift (counted in diverged_baseline).
    (None, 0.5, 0.0): {"baseline": ([0.75, 0.8, 0.8, 0.8], [0.80, 0.82, None], STATIC),
                       "bn": ([0.1, 0.2, 0.4, 0.6], [0.70, 0.71, 0.72],
                              ([-0.5, -1.0, -1.5], [0.0, 0.2, 0.4], [0.5, 1.0, 1.5]))},
    # E: A again with momentum, the only cell at 0.9 (the other cells of that row are missing).
    (0.01, 0.1, 0.9): None,
}
CELLS[(0.01, 0.1, 0.9)] = CELLS[(0.01, 0.1, 0.0)]


def log_crossing(s0, s1, v0, v1, threshold):
    return math.exp(math.log(s0) + (threshold - v0) / (v1 - v0) * math.log(s1 / s0))


def write_run(run_dir: Path, cell, variant: str, seed: int, curve, final, probes) -> None:
    init_std, lr, momentum = cell
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"variant": variant, "seed": seed, "experiment": "fig1_sensitivity", "data": {"name": "synthetic"},
         "model": {"init_std": init_std, "init": "lecun"}, "optim": {"lr": lr, "momentum": momentum},
         "trainer": {"max_steps": STEPS[-1]}}))
    values = [curve[0]] if final is None else [*curve, final]
    rows = [(s, split, "accuracy", v - (0.01 if split == "test" else 0)) for s, v in zip(STEPS, values)
            for split in ("val", "test")]
    probe_steps = PROBE_STEPS[:1] if final is None else PROBE_STEPS
    rows += [(s, "probe", f"{layer}/unit_p{q}", p[i] if layer == "layer3" else 0.0)
             for i, s in enumerate(probe_steps) for layer in ("layer1", "layer3") for q, p in zip((15, 50, 85), probes)]
    pd.DataFrame(rows, columns=["step", "split", "name", "value"]).to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "provenance.json").write_text(json.dumps({
        "command": "train.py -m experiment=fig1_sensitivity", "device_name": "Test CPU", "device": "cpu",
        "cpu_count": 2, "torch": "9.9", "git_sha": "0123456789abcdef", "git_dirty": False}))
    (run_dir / "summary.json").write_text(json.dumps({"status": "diverged" if final is None else "completed"}))


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for cell, variants in CELLS.items():
        name = f"model.init_std={'null' if cell[0] is None else cell[0]},optim.lr={cell[1]},optim.momentum={cell[2]}"
        for variant, (curve, finals, probes) in variants.items():
            for seed, final in enumerate(finals):
                write_run(root / f"{name},variant={variant}" / f"seed={seed}", cell, variant, seed, curve, final, probes)
    return root


def test_report_has_the_constructed_answers(sweep):
    _, table, seeds = report_fig1_sensitivity.report(sweep)
    t = table.set_index(["init", "optim.lr", "optim.momentum"])
    a, b, c, d, e = (t.loc[k] for k in [("0.01", 0.1, 0.0), ("1/sqrt(fan_in)", 0.1, 0.0), ("0.01", 0.5, 0.0),
                                        ("1/sqrt(fan_in)", 0.5, 0.0), ("0.01", 0.1, 0.9)])
    assert list(t.index) == [("0.01", 0.1, 0.0), ("0.01", 0.5, 0.0), ("1/sqrt(fan_in)", 0.1, 0.0),
                             ("1/sqrt(fan_in)", 0.5, 0.0), ("0.01", 0.1, 0.9)]  # grid order: momentum, init, lr
    verdicts = t[["faster", "higher", "stable"]].apply(tuple, axis=1).to_dict()
    assert [verdicts[k] for k in t.index] == [("holds", "holds", "holds"), ("unresolved", "unresolved", "unresolved"),
                                              ("holds", "reversed", "relative only"),
                                              ("reversed", "unresolved", "reversed"), ("holds", "holds", "holds")]
    # A: lead 18 points; threshold 0.81, BN crosses between steps 20 and 40, no BN never (its last step, 160).
    assert (a.lead, a.threshold) == (pytest.approx(18.0), pytest.approx(0.81))
    assert a.steps_bn == pytest.approx(log_crossing(20, 40, 0.6, 0.85, 0.81))
    assert (a.steps_baseline, a.baseline_never, a.bn_never) == (160, True, False)
    assert a.speedup == pytest.approx(160 / a.steps_bn) and a.speedup_lo > 1
    # A's drift: no BN moves 2.0 (10x its 0.2 spread), BN 1/6 (1/12 of its 2.0 spread).
    assert (a.drift_abs_baseline, a.drift_rel_baseline) == (pytest.approx(2.0), pytest.approx(10.0))
    assert (a.drift_abs_bn, a.drift_rel_bn) == (pytest.approx(1 / 6), pytest.approx(1 / 12))
    assert (a.drift_abs_ratio, a.drift_rel_ratio) == (pytest.approx(12.0), pytest.approx(120.0))
    # B: BN 4 points lower, but faster to 0.855; its drift is smaller relative to its spread only.
    assert b.lead == pytest.approx(-4.0) and b.lead_hi < 0 and b.threshold == pytest.approx(0.855)
    assert b.speedup == pytest.approx(log_crossing(40, 80, 0.6, 0.9, 0.855) / log_crossing(10, 20, 0.5, 0.88, 0.855))
    assert (b.drift_rel_baseline, b.drift_abs_baseline, b.drift_abs_bn) == \
        (pytest.approx(0.4 / 3 / 0.02), pytest.approx(0.4 / 3), pytest.approx(1.0))
    # C: identical curves: lead 0, speed-up exactly 1 in every resample, drift ratio 1.
    assert (c.lead, c.speedup, c.speedup_lo, c.speedup_hi, c.drift_rel_ratio) == \
        (pytest.approx(0), pytest.approx(1), pytest.approx(1), pytest.approx(1), pytest.approx(1))
    assert c.lead_lo < 0 < c.lead_hi
    # D: the diverged no-BN seed is counted: at chance (10%) in the lead, BN's 71 against (80 + 82 + 10) / 3;
    # left out of the curves: no BN ends at 0.81 and is at 0.75 >= 0.729 at once.
    assert (d.seeds_baseline, d.diverged_baseline, d.diverged_bn) == (3, 1, 0)
    assert (d.final_baseline, d.lead, d.threshold) == (pytest.approx(0.81), pytest.approx(71 - 172 / 3),
                                                       pytest.approx(0.729))
    assert (d.steps_baseline, d.steps_bn, d.bn_never, d.speedup) == (10, 160, True, pytest.approx(1 / 16))
    assert d.drift_abs_ratio == 0 and e.lead == pytest.approx(a.lead) and e.speedup == pytest.approx(a.speedup)
    for col in ("lead", "speedup", "drift_rel_ratio", "drift_abs_ratio"):  # intervals around every point
        assert (t[f"{col}_lo"] <= t[col] + 1e-9).all() and (t[col] <= t[f"{col}_hi"] + 1e-9).all()
    assert t.final_test_bn.tolist() == pytest.approx((t.final_bn - 0.01).tolist())  # test is reported, never chosen on
    # Per seed: each run's own crossing of its cell's threshold (A: BN seeds as the mean; no BN never).
    s = seeds[(seeds.init == "0.01") & (seeds["optim.lr"] == 0.1) & (seeds["optim.momentum"] == 0.0)]
    assert s[s.variant == "bn"].to_threshold.tolist() == pytest.approx([log_crossing(20, 40, 0.6, 0.85, 0.81)] * 3)
    assert s[s.variant == "baseline"].to_threshold.isna().all()
    assert s[s.variant == "bn"].final.tolist() == [0.88, 0.90, 0.92] and len(seeds) == 30


@pytest.mark.slow  # ~11 s; the report's answers: test_report_has_the_constructed_answers
def test_report_and_plot_write_their_files(sweep, tmp_path):
    out = tmp_path / "out"
    assert report_fig1_sensitivity.main([str(sweep), "--out", str(out)]) == 0
    assert plot_fig1_sensitivity.main([str(sweep), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"report.md", "cells.csv", "seeds.csv", "fig1_sensitivity.png",
                                               "fig1_sensitivity.pdf"}
    text = (out / "report.md").read_text()
    assert "Holds in 2 of 5 cells: (0.01, lr 0.1, m 0), (0.01, lr 0.1, m 0.9)" in text  # higher
    assert "Holds in 3 of 5 cells" in text  # faster: A, B, E
    assert "All three hold in 2 of 5 cells" in text and "| 1/sqrt(fan_in) | 0.5 | 0 |" in text
    assert "≥" in text and "≤" in text and "1/3, 0/3" in text  # bounds and the diverged seed
    # The default rule: of the fixed-std cells without a diverged seed (A, C, E), C's no BN ends highest.
    assert "It chooses init std 0.01, lr 0.5, momentum 0; there no BN ends at 85.00% val" in text
    assert len(pd.read_csv(out / "cells.csv")) == 5 and len(pd.read_csv(out / "seeds.csv")) == 30
    again = tmp_path / "again"
    report_fig1_sensitivity.main([str(sweep), "--out", str(again)])
    assert (again / "report.md").read_text() == text  # the bootstrap is seeded: same runs, same report


def test_default_rule_prefers_plain_sgd_then_small_std_then_small_rate_within_a_tie():
    from bnrepro.analysis.sensitivity import TIE, choose_default

    def table(rows):
        return pd.DataFrame(rows, columns=["init", "optim.lr", "optim.momentum", "final_baseline", "diverged_baseline",
                                           "diverged_bn"])
    best = 0.95
    rows = [("1/sqrt(fan_in)", 0.5, 0.0, 0.99, 0, 0),         # not a fixed std: never chosen
            ("0.1", 0.5, 0.9, best, 0, 0),                     # the best no-BN network, with momentum
            ("0.1", 0.1, 0.0, best - TIE / 200, 0, 0),         # tied with it, plain SGD: chosen
            ("0.01", 0.1, 0.0, best - 2 * TIE / 100, 0, 0),    # smaller std, but out of the tie
            ("0.01", 0.01, 0.0, 0.999, 0, 1)]                  # a diverged BN seed: out
    c = choose_default(table(rows))
    assert (c.init, c["optim.lr"], c["optim.momentum"]) == ("0.1", 0.1, 0.0)
    rows[3] = ("0.01", 0.5, 0.0, best - TIE / 200, 0, 0)     # now tied too, and smaller: chosen
    rows.append(("0.01", 0.1, 0.0, best - TIE / 300, 0, 0))  # tied, same std, smaller rate: chosen over it
    c = choose_default(table(rows))
    assert (c.init, c["optim.lr"], c["optim.momentum"]) == ("0.01", 0.1, 0.0)
    with pytest.raises(ValueError, match="nothing to choose from"):
        choose_default(table(rows[:1]))


def test_missing_sweep_is_a_clear_error(tmp_path, capsys):
    assert report_fig1_sensitivity.main([str(tmp_path / "nowhere")]) == 2
    assert "Error:" in capsys.readouterr().err
