"""The benchmark's pieces at tiny sizes (the speed targets are checked by running it, not here)."""
import sys

import pandas as pd
import pytest
import torch

from bnrepro.analysis.results import load_runs
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench  # noqa: E402  (scripts/bench.py: the benchmarks live outside the library)


def test_naive_loop_trains_and_reports_a_rate():
    """The baseline the suite is timed against really trains: every requested step (across epochs:
    3 batches per epoch here) is an SGD step that lowers the loss on a learnable task."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (200,), generator=g)
    x = (torch.rand(200, 1, 28, 28, generator=g) * 0.2 + torch.nn.functional.one_hot(y, 784).view(200, 1, 28, 28))
    losses = []
    rate = bench.naive_loop(x, y, steps=60, device=torch.device("cpu"), batch_size=60, losses=losses)
    assert len(losses) == 60 and rate > 0
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_fixture_is_a_readable_sweep_and_the_figure_is_drawn(tmp_path):
    sweep = bench.write_fixture(tmp_path, runs=4, steps=2000)
    runs = load_runs(sweep)
    assert len(runs) == 4 and set(runs.variant) == {"baseline", "bn"} and set(runs.status) == {"completed"}
    metrics = pd.read_csv(next(sweep.iterdir()) / "metrics.csv")
    assert set(metrics.split) == {"train", "test", "probe"}
    assert metrics[metrics.split == "test"].step.max() == 2000
    assert bench.time_figure(sweep, tmp_path / "out") > 0
    assert (tmp_path / "out" / "fig1.png").stat().st_size > 0


@pytest.mark.slow  # 88 s with the roofline on a machine at load 8 (it was ~14 s without): the benchmark script end to end; `make bench` runs it for real
def test_main_quick_path_at_tiny_size(tmp_path, capsys):
    report = bench.main(["--data", "synthetic", "--steps", "20", "--rounds", "1", "--runs", "2",
                         "--conv-steps", "0", "--json", str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert "Machine:" in out and "RATIO mlp suite/naive" in out and "RATIO conv" not in out
    assert "ROOFLINE conv step = " in out and "ROOFLINE mlp step = " in out  # beside the RATIO lines
    assert out.index("ROOFLINE mlp step") < out.index("RATIO mlp") and report["roofline_conv_bound_ms"] > 0
    assert {"naive", "single", "stacked", "ratio", "ratio_per_core", "eval_pct", "probe_pct", "figure_s"} <= set(report)
    assert report["ratio_per_core"] == report["stacked"] / report["naive"] > 0
    if "suite_machine" in report:  # 2+ cores: the whole-machine comparison is the headline
        assert report["ratio"] == report["suite_machine"] / report["naive_machine"] > 0
    assert 0 < report["eval_pct"] < 100 and 0 < report["probe_pct"] < 100
    assert (tmp_path / "b.json").exists()


def test_conv_report_on_cpu_at_tiny_width(capsys):
    from bench_conv import conv_report

    report = conv_report(torch.device("cpu"), quick=True, peak=1.0, batch=4, extra=["model.width_mult=0.125"])
    assert set(report) == {f"{m}_faithful_{k}" for m in ("inception_small", "bn_inception")
                           for k in ("images_per_s", "peak_fraction")}
    assert all(v > 0 for v in report.values())
    assert "GFLOP/image" in capsys.readouterr().out


@pytest.mark.slow  # ~27 s: the conv benchmark end to end
def test_conv_ratio_at_tiny_size(tmp_path, capsys):
    """The RATIO conv measurement's pieces run: the naive loop, a single run, a 3-seed stack, and
    the whole-machine layout (where there are 2+ cores), each rate and ratio consistent."""
    from bench_conv import conv_ratio

    report = conv_ratio(["data=synthetic", "data.synthetic.train_size=256", "data.test_size=64",
                         "trainer.eval_batch_size=64"], steps=3, rounds=1, out=tmp_path)
    out = capsys.readouterr().out
    assert report["conv_ratio_per_core"] == report["conv_stacked"] / report["conv_naive"] > 0
    assert 0 < report["conv_peak_fraction"] < 1 and report["conv_gflop_per_step"] > 0
    assert "(g) suite, 3 seeds stacked" in out
    if "conv_suite_machine" in report:
        assert report["conv_ratio"] == report["conv_suite_machine"] / report["conv_naive_machine"] > 0
