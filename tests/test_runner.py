"""The runner end to end: real configs, tiny overrides, outputs in tmp_path."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import EXPERIMENTS, REPO, SMOKE, run_one


def test_run_writes_complete_record(make_cfg, tmp_path):
    cfg = make_cfg(*SMOKE, "variant=bn", "seed=3", "probe.histogram_every=2")
    summary = run_one(cfg, tmp_path)

    assert summary["status"] == "completed" and summary["steps"] == 20
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics.columns) == ["step", "split", "name", "value"]
    acc = metrics[(metrics.split == "test") & (metrics.name == "accuracy")]
    assert acc.step.tolist() == [10, 20]
    assert set(metrics[metrics.split == "train"].name) >= {"loss", "lr"}
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["seed"] == 3 and prov["torch"] and "git_sha" in prov and prov["device"] == "cpu"
    assert "placement: before" in (tmp_path / "config.yaml").read_text()

    events = EventAccumulator(str(tmp_path)).Reload()
    assert {"train/loss", "test/accuracy"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("test/accuracy")] == [10, 20]
    # HParams are written into the run's own directory: no timestamp-named sub-run.
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    # Figure 1's probes: scalars, one custom-scalars chart per layer, histograms when asked.
    assert "probe/layer3/unit_p85" in events.Tags()["scalars"]
    assert events.PluginTagToContent("custom_scalars")
    assert "probe/layer1" in events.Tags()["histograms"]
    probes = metrics[metrics.split == "probe"]
    assert sorted(probes.step.unique()) == [0, 5, 10, 15, 20]
    assert set(summary["drift"]) == {f"layer{i}/{k}" for i in (1, 2, 3) for k in ("unit", "all")}


def test_bn_variant_learns_synthetic_data(make_cfg, tmp_path):
    summary = run_one(make_cfg(*SMOKE, "variant=bn", "trainer.max_steps=200", "trainer.eval_every=200"), tmp_path)
    assert summary["final"]["test/accuracy"] > 0.5  # 10 classes: chance is 0.1


def test_same_seed_same_metrics(make_cfg, tmp_path):
    a = run_one(make_cfg(*SMOKE, "seed=1"), tmp_path / "a")
    b = run_one(make_cfg(*SMOKE, "seed=1"), tmp_path / "b")
    c = run_one(make_cfg(*SMOKE, "seed=2"), tmp_path / "c")
    assert a["final"] == b["final"]
    assert a["final"] != c["final"]


@pytest.mark.parametrize("variant, bn_modules", [("baseline", 0), ("bn", 3)])
def test_variants_set_bn_placement(make_cfg, variant, bn_modules):
    from bnrepro.nn.bn import is_batchnorm
    from bnrepro.models import build_model

    cfg = make_cfg(*SMOKE, f"variant={variant}")
    model = build_model(cfg.model, cfg.bn, (1, 28, 28), 10)
    assert sum(is_batchnorm(m) for m in model.modules()) == bn_modules
    assert cfg.variant == variant


def tiny_data(experiment: str, root) -> list[str]:
    """Overrides that point an experiment at tiny files in its real format under `root`."""
    from tests.datafiles import write_cifar, write_imagenet_tree, write_mnist

    if experiment in ("placement_mlp", "norm_batchsize"):
        write_mnist(root / "MNIST" / "raw", n_train=100, n_test=40)
        return [f"data.root={root}"]
    if experiment in ("fig1_mnist", "fig1_mnist_legacy", "fig1_sensitivity", "why_noisy_bn", "why_ics", "why_landscape", "lr_range",
                      "why_noisy_bn_conv", "why_ics_conv", "why_landscape_conv", "lr_range_conv",
                      "bn_statistics", "bn_statistics_conv", "bn_shift", "norm_batchsize_conv"):  # a val split
        write_mnist(root / "MNIST" / "raw", n_train=100, n_test=40)
        return [f"data.root={root}", "data.val_size=20"]
    if experiment in ("why_noisy_bn_dln", "why_ics_dln"):  # synthetic data (no files), a smaller draw
        return ["data.synthetic.train_size=200", "data.val_size=50", "data.synthetic.test_size=50"]
    if experiment in ("fig2_fashion_mnist", "fig2_v2_fashion_mnist", "fig2_v2_bf16", "fig4_fashion_mnist", "placement_conv"):
        write_mnist(root / "FashionMNIST" / "raw", n_train=100, n_test=40)
        return [f"data.root={root}", "model.width_mult=0.125", "data.val_size=20"]
    if experiment == "fig2_cifar10":
        write_cifar(root, n_train=100, n_test=40)
        return [f"data.root={root}", "data.verify_checksums=false", "model.width_mult=0.125", "data.val_size=20"]
    if experiment == "fig2_imagenet_subset":
        write_imagenet_tree(root, ["n01", "n02", "n03"], n_train=12, n_val=4, size=72)
        return [f"data.root={root}", "data.imagenet.num_classes=2", "data.imagenet.image_size=64",
                "data.imagenet.resize_size=72", "data.imagenet.num_workers=0", "model.width_mult=0.0625",
                "trainer.eval_batch_size=8"]
    raise AssertionError(f"no tiny data for {experiment}: add it here")


FIG2_VARIANTS = ["inception", "bn_baseline", "bn_x5", "bn_x30", "bn_x5_sigmoid", "inception_x5", "inception_sigmoid"]
TINY = ["trainer.max_steps=4", "trainer.eval_every=2", "trainer.log_every=2", "trainer.batch_size=8",
        "trainer.progress=none", "trainer.device=cpu", "probe.every=2", "probe.batch_size=8"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_on_its_real_format(make_cfg, tmp_path, experiment):
    from bnrepro.training.session import run

    cfg = make_cfg(f"experiment={experiment}", *TINY, *tiny_data(experiment, tmp_path / "data"))
    assert cfg.experiment == experiment
    summaries = run(cfg, tmp_path / "run")  # one per seed of a stacked experiment (fig4_fashion_mnist)
    assert [s["status"] for s in summaries] == ["completed"] * len(cfg.seeds or [0])


@pytest.mark.parametrize("variant", ["baseline", "bn", *FIG2_VARIANTS])
def test_every_variant_runs(make_cfg, tmp_path, variant):
    """Every variant trains its 4 tiny steps (even inception_x5 needs more than that to die) and
    records the variant it is."""
    overrides = tiny_data("fig2_fashion_mnist", tmp_path / "data")
    # (the no-BN variants would stop at their plateau: 4 tiny steps of flat accuracy are one)
    cfg = make_cfg("experiment=fig2_fashion_mnist", f"variant={variant}", *TINY, *overrides, "trainer.stop_at_plateau=false")
    summary = run_one(cfg, tmp_path / "run")
    assert (summary["status"], summary["steps"], summary["variant"]) == ("completed", 4, variant)
    assert 0 < summary["final"]["test/loss"] < 10 and summary["final"]["test/accuracy"] >= 0


@pytest.mark.parametrize("experiment, overrides", [
    ("placement_mlp", ["model.activation=sigmoid", "bn.placement=after"]),
    ("placement_conv", ["model.activation=relu", "bn.placement=after"]),
    ("placement_conv", ["bn.norm=instance", "bn.placement=before"]),
    ("norm_batchsize", ["bn.norm=group", "trainer.batch_size=2", "trainer.max_steps=3"]),
    # the headers' other commands: placement_conv on CIFAR-10, norm_batchsize on the conv model
    ("placement_conv", ["data=cifar10", "data.pad_to=null", "data.test_size=null", "bn.placement=after"]),
    ("norm_batchsize", ["data=fashion_mnist", "model=inception_small", "model.init_std=null", "model.dropout=0",
                        "model.lrn=false", "data.pad_to=32", "data.test_size=1000", "bn.norm=instance"]),
])
def test_placement_and_norm_experiments_record_norm_outputs(make_cfg, tmp_path, experiment, overrides):
    data = tiny_data("fig2_cifar10" if "data=cifar10" in overrides else
                     "placement_conv" if "model=inception_small" in overrides else experiment, tmp_path / "data")
    cfg = make_cfg(f"experiment={experiment}", *TINY, *data, *overrides)
    assert run_one(cfg, tmp_path / "run")["status"] == "completed"
    names = set(pd.read_csv(tmp_path / "run" / "metrics.csv").name)
    assert any(n.endswith("/norm_unit_p85") for n in names) and any(n.endswith("/unit_p15") for n in names)


def test_experiment_keeps_command_line_overrides(make_cfg):
    cfg = make_cfg("experiment=fig1_mnist", "data=fashion_mnist", "optim.lr=0.01")
    assert cfg.data.name.value == "fashion_mnist" and cfg.optim.lr == 0.01
    assert cfg.trainer.batch_size == 60 and cfg.model.depth == 3


def test_paper_bn_impl_runs(make_cfg, tmp_path):
    assert run_one(make_cfg(*SMOKE, "bn.impl=paper", "bn.population=average", "bn.population_batches=3"),
               tmp_path)["status"] == "completed"


@pytest.mark.parametrize("override, error", [
    ("trainer.max_step=10", ConfigCompositionException),   # typo'd key
    ("trainer.max_steps=ten", ConfigCompositionException),  # wrong type
    ("model.activation=relu6", ConfigCompositionException),  # unknown choice
    ("variant=bn_x99", MissingConfigException),             # unknown variant
    ("data=svhn", MissingConfigException),                  # unknown data set
])
def test_bad_config_fails_at_composition(make_cfg, override, error):
    with pytest.raises(error):
        make_cfg(override)


def test_diverging_run_is_recorded_and_exits_zero(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "experiments/train.py", *SMOKE, "variant=baseline", "model.activation=relu", "optim.lr=1e10",
         f"hydra.run.dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
    metrics = pd.read_csv(out / "metrics.csv")
    assert ((metrics.name == "diverged") & (metrics.value == 1)).any()
    step = int(metrics[metrics.name == "diverged"].step.iloc[0])
    # the console says so on the step it happens, and where the run is, at its start and end
    assert f"diverged at step {step} (the loss became" in proc.stderr, proc.stderr[-2000:]
    assert f"writing to {out}" in proc.stderr and f"diverged: output in {out}" in proc.stderr


def test_missing_data_is_one_clear_error_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments/train.py"), "data=mnist", "data.root=/nonexistent",
         "data.download=false", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "MNIST" in proc.stderr and "/nonexistent" in proc.stderr and "data.download=true" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before any file is written: its directory is gone too
    assert not (tmp_path / "outputs").exists()  # nothing in the working directory


def test_fig1_experiment_on_mnist_files(make_cfg, tmp_path):
    """The Figure 1 experiment as the paper ran it, on tiny MNIST files in torchvision's layout."""
    from tests.datafiles import write_mnist

    write_mnist(tmp_path / "data" / "MNIST" / "raw", n_train=300, n_test=100)
    smoke = [o for o in SMOKE if not o.startswith("data=")]
    cfg = make_cfg("experiment=fig1_mnist", "variant=bn", f"data.root={tmp_path / 'data'}", *smoke)
    summary = run_one(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["data"] == "mnist"
    assert summary["data_source"] == str(tmp_path / "data" / "MNIST" / "raw")


@pytest.mark.parametrize("override", ["trainer.eval_every=0", "trainer.batch_size=-1", "optim.lr=0"])
def test_non_positive_counts_are_a_clear_error(make_cfg, tmp_path, override):
    from bnrepro.errors import BnreproError

    with pytest.raises(BnreproError, match=override.split("=")[0]):
        run_one(make_cfg(*SMOKE, override), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
