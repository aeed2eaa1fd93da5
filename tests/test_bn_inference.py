"""Issue 18's inference-time choices evaluated after training (bnrepro/training/inference.py,
scripts/eval_statistics.py): each row equals what a run trained with that choice reports, the
refusals, and how bnrepro.analysis.bn_statistics and the report read the rows (bn_statistics_conv)."""
import math
import sys

import pandas as pd
import pytest

from bnrepro.analysis import bn_statistics as bns
from tests.conftest import REPO
from tests.test_bn_statistics_analysis import records
from tests.test_runner import TINY, tiny_data

sys.path.insert(0, str(REPO / "scripts"))
import eval_statistics  # noqa: E402
import plot_bn_statistics  # noqa: E402
import report_bn_statistics  # noqa: E402

# One evaluation, at the end (a trained precise run's later evaluations would draw later batches of
# the population stream; the post-hoc rows use its first); 64 examples for the population estimates.
COMMON = [*TINY, "trainer.max_steps=6", "trainer.eval_every=6", "trainer.checkpoint_every=6", "trainer.threads=1",
          "bn.precise_examples=64", "bn.population_batches=8"]
GHOST = ["bn.ghost_batch=4"]
RUNS = {"ema,seed=0": GHOST, "ema,seed=1": [*GHOST, "seed=1"], "precise": [*GHOST, "bn.population=precise"],
        "average": [*GHOST, "bn.population=average"], "weighed": [*GHOST, "bn.eval_weight=0.2"],
        "renorm": [*GHOST, "bn.norm=renorm"], "group": ["bn.norm=group"]}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from bnrepro.config import compose
    from bnrepro.training.session import run

    root = tmp_path_factory.mktemp("bn_inference")
    data = tiny_data("bn_statistics_conv", root / "data")
    for name, extra in RUNS.items():
        run(compose("experiment=bn_statistics_conv", *COMMON, *data, *extra), root / "sweep" / name)
    for name in ("ema,seed=0", "ema,seed=1"):
        assert eval_statistics.main([str(root / "sweep" / name), "--alphas", "0.2,0.4"]) == 0
    return root / "sweep"


def final(run_dir, split):
    m = pd.read_csv(run_dir / "metrics.csv")
    return m[(m.split == split) & (m.name == "accuracy")].sort_values("step").value.iloc[-1]


def test_each_row_is_what_a_run_trained_with_that_choice_reports(sweep):
    rows = pd.read_csv(sweep / "ema,seed=0" / "statistics.csv").set_index(["statistics", "alpha", "split"])
    assert rows.step.unique().tolist() == [6]
    for (stats, alpha), trained in {("ema", 0.0): "ema,seed=0", ("precise", 0.0): "precise",
                                    ("average", 0.0): "average", ("weighing", 0.2): "weighed"}.items():
        for split in ("val", "test"):
            assert rows.loc[(stats, alpha, split)].accuracy == pytest.approx(final(sweep / trained, split)), \
                (stats, alpha, split)
    assert ("weighing", 0.4, "test") in rows.index


def test_refuses_runs_without_an_ema_to_start_from(sweep, capsys):
    assert eval_statistics.main([str(sweep / "group")]) == 2
    assert "without batch statistics (bn.placement=before, bn.norm=group)" in capsys.readouterr().err
    assert eval_statistics.main([str(sweep / "precise")]) == 2
    assert "starts from an EMA run" in capsys.readouterr().err
    assert eval_statistics.main([str(sweep / "ema,seed=0"), "--alphas", "a lot"]) == 2
    assert "--alphas='a lot' is not a comma-separated list" in capsys.readouterr().err


def test_the_mlp_gets_no_weighing_rows(tmp_path):
    from bnrepro.config import compose
    from bnrepro.training.inference import evaluate_statistics
    from bnrepro.training.session import run

    run(compose("experiment=bn_statistics", *COMMON, *tiny_data("bn_statistics", tmp_path / "data")), tmp_path / "mlp")
    rows = pd.DataFrame(evaluate_statistics(tmp_path / "mlp"))
    assert set(rows.statistics) == {"ema", "average", "precise"} and len(rows) == 3 * 2


def test_the_analysis_reads_each_row_as_a_run_of_its_choice(sweep):
    runs = bns.per_run(bns.load(sweep)).set_index("run")
    assert runs.loc["ema,seed=0/precise", ["method", "batch", "steps"]].tolist() == ["PreciseBN", 4.0, 6]
    assert runs.loc["ema,seed=1/weighing=0.4"].method == "EMA m=0.1, weighing alpha=0.4"
    assert runs.loc["ema,seed=0/average"].final == pytest.approx(final(sweep / "average", "val"))
    made = bns.inference_run_names(runs.reset_index())
    assert len(made) == 2 * 4 and "precise" not in made  # 2 EMA runs x (average, precise, 2 alphas); trained runs not


def test_weighing_choice_takes_the_lowest_val_error():
    frames = [records(f"w{a}/seed={s}", s, 1 - err / 100, 0.5, **{"bn.eval_weight": a, "bn.ghost_batch": 2})
              for a, errs in ((0.1, (30, 32)), (0.2, (28, 27)), (0.4, (40, 41))) for s, err in enumerate(errs)]
    runs = bns.per_run(pd.concat(frames, ignore_index=True))
    assert bns.weighing_choice(runs, 2.0) == ("EMA m=0.1, weighing alpha=0.2", 0.2)
    assert bns.weighing_choice(runs, 8.0)[0] == "" and math.isnan(bns.weighing_choice(runs, 8.0)[1])


def test_the_conv_claims_and_report(sweep, tmp_path):
    claims = bns.claims("bn_statistics_conv", bns.load(sweep))
    assert [c["claim"] for c in claims] == [
        "bn_statistics_conv_small_batch_hurts", "bn_statistics_conv_precise_beats_ema_small", "bn_statistics_conv_gn_flat",
        "bn_statistics_conv_renorm_helps_small", "bn_statistics_conv_weighing_helps_small"]
    assert "weighing at alpha=" in claims[-1]["statistic"] and "test error" in claims[-1]["statistic"]
    assert "the alpha chosen on val" in bns.claims("bn_statistics_conv", None)[-1]["statistic"]
    out = tmp_path / "out"
    assert plot_bn_statistics.main([str(sweep), "--out", str(out)]) == 0
    assert report_bn_statistics.main([str(sweep), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "7 runs (7 completed), and 8 inference-time choices evaluated on their EMA runs" in text
    assert "| EMA m=0.1, weighing alpha=0.2 |" in text and (out / "bn_statistics.png").is_file()
