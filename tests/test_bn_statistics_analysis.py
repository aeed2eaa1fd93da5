"""Issue 18's analysis (bnrepro.analysis.bn_statistics, the plot scripts, scripts/report_bn_statistics.py):
constructed answers for the method labels, the method x batch table, the shift table and the
claims' statistics; and the scripts' files from tiny real bn_statistics and bn_shift sweeps. The
options themselves: tests/test_bn_statistics.py; the shift evaluation: tests/test_bn_shift.py."""
import math
import sys

import numpy as np
import pandas as pd
import pytest

from bnrepro.analysis import bn_statistics as bns
from bnrepro.analysis.stats import interval
from tests.conftest import REPO
from tests.test_runner import TINY, tiny_data

sys.path.insert(0, str(REPO / "scripts"))
import eval_shift  # noqa: E402
import plot_bn_shift  # noqa: E402
import plot_bn_statistics  # noqa: E402
import report_bn_statistics  # noqa: E402

BN = {"bn.norm": "batch", "bn.population": "ema", "bn.momentum": 0.1, "bn.freeze_after": None,
      "bn.ghost_batch": None, "bn.eval_weight": 0.0, "trainer.batch_size": 128, "model.name": "mlp"}


@pytest.mark.parametrize("overrides, label, batch", [
    ({}, "EMA m=0.1", 128), ({"bn.momentum": 0.3, "bn.ghost_batch": 2}, "EMA m=0.3", 2),
    ({"bn.momentum": None}, "EMA cumulative", 128), ({"bn.population": "average"}, "Algorithm 2 average", 128),
    ({"bn.population": "precise", "bn.ghost_batch": 8}, "PreciseBN", 8),
    ({"bn.population": "precise", "bn.freeze_after": 0.9}, "PreciseBN + FrozenBN tail", 128),
    ({"bn.population": "precise", "bn.freeze_after": 1.0}, "PreciseBN", 128),  # 1.0: never frozen
    ({"bn.norm": "renorm", "bn.ghost_batch": 4}, "Batch Renorm", 4),
    ({"bn.norm": "renorm", "bn.population": "precise"}, "Batch Renorm (PreciseBN)", 128),
    ({"bn.eval_weight": 0.3, "bn.ghost_batch": 2}, "EMA m=0.1, weighing alpha=0.3", 2),
    ({"bn.norm": "group", "bn.ghost_batch": 2}, "group norm", math.nan)])
def test_method_labels_and_normalization_batch(overrides, label, batch):
    row = {**BN, **overrides}
    assert bns.method(row) == label
    assert bns.norm_batch(row) == batch or (math.isnan(batch) and math.isnan(bns.norm_batch(row)))


def records(run, seed, val, test, status="completed", **config):
    """One run's metrics: val and test accuracy at steps 1 and 2 (the claims read step 2's)."""
    rows = [(1, "val", "accuracy", 0.5), (1, "test", "accuracy", 0.5), (2, "val", "accuracy", val),
            (2, "test", "accuracy", test), (2, "train", "loss", 0.1)]
    frame = pd.DataFrame(rows, columns=["step", "split", "name", "value"])
    return frame.assign(run=run, seed=seed, status=status, divergence=None, data="synthetic",
                        experiment="bn_statistics", **{**BN, **config})


# val error (points) per method and batch, two seeds each: EMA 30/34 at 2, 10/12 at 128; precise
# 20/22 at 2; frozen 16/18 at 2; renorm 25 and a diverged run (chance, 90) at 2; group norm 15/17.
SYNTHETIC = [("ema2", {"bn.ghost_batch": 2}, (30, 34)), ("ema128", {}, (10, 12)),
             ("precise2", {"bn.population": "precise", "bn.ghost_batch": 2}, (20, 22)),
             ("frozen2", {"bn.population": "precise", "bn.freeze_after": 0.9, "bn.ghost_batch": 2}, (16, 18)),
             ("renorm2", {"bn.norm": "renorm", "bn.ghost_batch": 2}, (25, None)),
             ("group", {"bn.norm": "group"}, (15, 17))]


@pytest.fixture
def synthetic():
    frames = []
    for name, config, errors in SYNTHETIC:
        for seed, err in enumerate(errors):
            status, err = ("diverged", 50) if err is None else ("completed", err)  # its last accuracy: not read
            frames.append(records(f"{name}/seed={seed}", seed, 1 - err / 100, 1 - (err + 1) / 100, status, **config))
    return pd.concat(frames, ignore_index=True)


def test_per_run_and_the_table(synthetic):
    runs = bns.per_run(synthetic).set_index("run")
    assert runs.loc["ema2/seed=0", ["method", "batch", "error", "test_error"]].tolist() == \
        ["EMA m=0.1", 2.0, pytest.approx(30), pytest.approx(31)]
    assert runs.loc["renorm2/seed=1"].error == bns.CHANCE and math.isnan(runs.loc["group/seed=0"].batch)
    t = bns.table(bns.per_run(synthetic)).set_index(["method", "batch"], drop=False)
    assert t.method.tolist() == ["EMA m=0.1", "EMA m=0.1", "PreciseBN", "PreciseBN + FrozenBN tail", "Batch Renorm",
                                 "group norm"]  # ORDER
    ema = t.loc[("EMA m=0.1", 2.0)]
    assert (ema.runs, ema.error, ema.test_error) == (2, pytest.approx(32), pytest.approx(33))
    # two seeds, 30 and 34: the t interval at 1 degree of freedom, 32 +- 12.706 * 2 (not [30, 34])
    assert (ema.lo, ema.hi) == (pytest.approx(32 - 12.7062 * 2, abs=1e-3), pytest.approx(32 + 12.7062 * 2, abs=1e-3))
    renorm = t.loc[("Batch Renorm", 2.0)]
    assert (renorm.diverged, renorm.error) == (1, pytest.approx((25 + 90) / 2))
    assert t[t.method == "group norm"].error.item() == pytest.approx(16)


def test_the_claims_statistics(synthetic):
    got = {c["claim"]: interval(c["groups"], c["stat"]).value for c in bns.claims("bn_statistics", synthetic)}
    assert got == pytest.approx({"bn_statistics_small_batch_hurts": 32 - 11,  # EMA at 2 - EMA at 128
                                 "bn_statistics_precise_beats_ema_small": 32 - 21, "bn_statistics_gn_flat": 32 - 16,
                                 "bn_statistics_renorm_helps_small": 32 - 57.5,  # the diverged run at chance
                                 "bn_statistics_frozen_tail_helps_small": 21 - 17})
    c = bns.claims("bn_statistics", synthetic)[0]
    assert "batch 2 than at 128" in c["text"] and (c["side"], c["reference"]) == (">", 0.0)
    # the row names whether each compared arm had plateaued (val: 0.5 at step 1, then 1 - error)
    assert c["plateau"] == ("plateau rule on val, last 25%: EMA m=0.1 at 2 +18.00 points (not held), "
                            "EMA m=0.1 at 128 +39.00 (not held)")
    empty = bns.claims("bn_statistics", None)  # no sweep: the same claims, nothing to resample
    assert [x["claim"] for x in empty] == list(got) and all(x["groups"] == [] for x in empty)


def test_the_shift_table_and_claim():
    rows = []
    for run, seed, contrast, noise in (("a", 0, (40, 30), (60, 56)), ("b", 1, (44, 30), (64, 58))):
        for kind, sev, (train, target) in (("none", 0, (10, 11)), ("contrast", 1, (20, 12)), ("contrast", 3, contrast),
                                           ("gaussian_noise", 3, noise)):
            rows += [(run, seed, kind, sev, stats, 1 - err / 100)
                     for stats, err in (("train", train), ("target", target))]
    shift = pd.DataFrame(rows, columns=["run", "seed", "corruption", "severity", "statistics", "accuracy"])
    shift["error"] = 100 * (1 - shift.accuracy)
    t = bns.shift_table(shift).set_index(["corruption", "severity", "statistics"])
    assert t.loc[("contrast", 3, "train")].error == pytest.approx(42) and t.loc[("none", 0, "target")].runs == 2
    gaps = bns.shift_gap(shift).set_index("run").gap  # the highest severity only; `none` is not a corruption
    assert gaps.to_dict() == pytest.approx({"a": (10 + 4) / 2, "b": (14 + 6) / 2})
    [c] = bns.claims("bn_shift", shift)
    assert c["claim"] == "bn_shift_target_stats_help"
    assert interval(c["groups"], c["stat"]).value == pytest.approx(8.5)  # the seeds' mean gap


# --- the scripts on tiny real sweeps ------------------------------------------------------------------
ONE_THREAD = ["trainer.threads=1"]  # tiny runs: a second thread only waits (and the machine may be busy)
STATS_RUNS = {"ema2": ["bn.ghost_batch=2"], "ema8": ["bn.ghost_batch=8"],
              "precise2": ["bn.population=precise", "bn.ghost_batch=2"], "group": ["bn.norm=group"]}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    from bnrepro.config import compose
    from bnrepro.training.session import run

    root = tmp_path_factory.mktemp("bn18")
    data = tiny_data("bn_statistics", root / "data")
    for name, extra in STATS_RUNS.items():
        for seed in (0, 1):
            run(compose("experiment=bn_statistics", f"seed={seed}", *TINY, *ONE_THREAD, *data, *extra),
                root / "bn_statistics" / f"{name},seed={seed}")
    for seed in (0, 1):
        run_dir = root / "bn_shift" / f"seed={seed}"
        run(compose("experiment=bn_shift", f"seed={seed}", *TINY, *ONE_THREAD, *data), run_dir)
        assert eval_shift.main([str(run_dir), "--test-size", "16"]) == 0
    return {"bn_statistics": root / "bn_statistics", "bn_shift": root / "bn_shift"}


@pytest.mark.parametrize("experiment, plot", [("bn_statistics", plot_bn_statistics), ("bn_shift", plot_bn_shift)])
def test_plot_and_report_write_their_files(sweeps, tmp_path, experiment, plot):
    out = tmp_path / "out"
    assert plot.main([str(sweeps[experiment]), "--out", str(out)]) == 0
    assert report_bn_statistics.main([str(sweeps[experiment]), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {f"{experiment}.png", f"{experiment}.pdf", "report.md", "runs.csv"}
    text = (out / "report.md").read_text()
    assert text.startswith(f"# {report_bn_statistics.TITLES[experiment]}") and "## Claims" in text
    verdicts = [line.rsplit("|", 2)[1].strip() for line in text.splitlines()
                if line.startswith("| ") and line.rstrip().endswith(("reproduced |", "partly |", "not run |"))]
    # at normalization batch 2 the MLP's small-batch and group-norm claims hold by arithmetic: shown, not scored
    assert len(verdicts) == {"bn_statistics": 3, "bn_shift": 1}[experiment]
    runs = pd.read_csv(out / "runs.csv")
    if experiment == "bn_statistics":
        assert len(runs) == 8 and set(runs.method) == {"EMA m=0.1", "PreciseBN", "group norm"}
        assert verdicts[1:] == ["not run", "not run"]  # no renorm, no frozen tail in this sweep
        assert text.count("| illustration (holds by arithmetic: at batch 2") == 2
        assert "| batch 2 | batch 8 | no batch |" in text
    else:
        assert len(runs) == 2 * 2 * 10 and np.isfinite(runs.error).all()  # 2 runs x 2 statistics x (clean + 9)
        assert "| contrast | 3 |" in text


def test_report_needs_shift_csv_and_refuses_another_experiment(tmp_path, capsys):
    from bnrepro.config import compose
    from bnrepro.training.session import run

    bare = tmp_path / "bare"
    run(compose("experiment=bn_shift", *TINY, *ONE_THREAD, *tiny_data("bn_shift", tmp_path / "data")), bare / "seed=0")
    assert report_bn_statistics.main([str(bare)]) == 2 and "scripts/eval_shift.py" in capsys.readouterr().err
    run(compose("experiment=placement_mlp", *TINY, *ONE_THREAD, *tiny_data("fig1_mnist", tmp_path / "data1")),
        tmp_path / "other" / "x")
    assert report_bn_statistics.main([str(tmp_path / "other")]) == 2
    assert "not one of bn_statistics" in capsys.readouterr().err
