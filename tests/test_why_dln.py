"""Issue 32: Santurkar et al.'s deep linear network (configs/model/deep_linear.yaml) and its two
experiments, why_noisy_bn_dln and why_ics_dln: the network is 25 linear layers, the data a linear
teacher, both experiments run a few steps with their probes, and their claims carry the twin's names."""
import pandas as pd
import pytest
import torch
from torch import nn

from bnrepro.analysis import why

FEW = ["trainer.max_steps=6", "trainer.eval_every=3", "trainer.log_every=3", "trainer.progress=none",
       "trainer.device=cpu", "trainer.stop_at_plateau=false", "probe.every=3", "probe.batch_size=64",
       "data.synthetic.train_size=300", "data.val_size=100", "data.synthetic.test_size=100", "trainer.batch_size=200"]


def test_the_network_is_25_linear_layers_with_bn_after_each_hidden_one(make_cfg):
    from bnrepro.models import build_model

    cfg = make_cfg("experiment=why_ics_dln", "variant=bn")
    model = build_model(cfg.model, cfg.bn, (1, 1, 10), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 25 and all(tuple(m.weight.shape) == (10, 10) for m in linears)
    assert not any(isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh)) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm1d) or type(m).__name__.endswith("BatchNorm") for m in model.modules()) == 24
    # no BN: the product of the layers is one linear map (a deep *linear* network)
    base = make_cfg("experiment=why_ics_dln", "variant=baseline")
    plain = build_model(base.model, base.bn, (1, 1, 10), 10).eval()
    x = torch.randn(4, 1, 1, 10)
    assert torch.allclose(plain(2 * x), 2 * plain(x) - plain(torch.zeros_like(x)), atol=1e-5)


def test_the_data_is_a_fixed_linear_teacher(make_cfg):
    from bnrepro.data.tensors import synthetic

    opts = make_cfg("experiment=why_noisy_bn_dln").data.synthetic
    a, b = synthetic(opts), synthetic(opts)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)  # the data set is fixed
    assert a.x_train.shape == (2500, 1, 1, 10) and a.y_train.unique().numel() == 10
    # the labels are a linear function's argmax: a least-squares linear fit of one-hot targets separates most
    x = a.x_train.flatten(1)
    w = torch.linalg.lstsq(x, torch.nn.functional.one_hot(a.y_train, 10).float()).solution
    assert ((x @ w).argmax(1) == a.y_train).float().mean() > 0.6


def test_the_protocol_is_in_the_config(make_cfg):
    noisy, ics = make_cfg("experiment=why_noisy_bn_dln", "variant=noisy_bn"), make_cfg("experiment=why_ics_dln")
    assert noisy.trainer.stop_at_plateau and noisy.trainer.plateau_min_steps == 1000
    assert noisy.trainer.max_steps == 4000 and noisy.bn.noise.enabled
    assert not ics.trainer.stop_at_plateau and ics.trainer.max_steps == 2000 and ics.probe.ics_every == 100
    assert noisy.trainer.batch_size == noisy.data.synthetic.train_size - noisy.data.val_size  # full batch


@pytest.mark.parametrize("experiment, variant, split", [
    ("why_noisy_bn_dln", "noisy_bn", "probe"), ("why_noisy_bn_dln", "noise", "probe"),
    ("why_ics_dln", "bn", "ics")])
def test_the_dln_experiments_run_a_few_steps(make_cfg, tmp_path, experiment, variant, split):
    from bnrepro.training.session import run

    extra = ["probe.ics_every=3"] if split == "ics" else []
    [summary] = run(make_cfg(f"experiment={experiment}", f"variant={variant}", *FEW, *extra), tmp_path / "run")
    assert summary["status"] in ("completed", "diverged")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    names = set(metrics.name[metrics.split == split])
    if summary["status"] == "completed":
        assert any(n.startswith("layer24/") for n in names)  # every one of the 24 hidden layers is probed
    assert why.study(experiment) == experiment.removesuffix("_dln")


def test_the_twins_claims_carry_their_names():
    assert [c["claim"] for c in why.claims("why_ics_dln", None)] == ["why_ics_dln_not_lower_rel_diff",
                                                                      "why_ics_dln_not_lower_one_minus_cos"]
    assert why.claims("why_noisy_bn_dln", None)[1]["claim"] == "why_noisy_bn_dln_noise_without_bn_fails"
    assert why.LABELS["why_ics_dln"].endswith("25-layer linear net")
    with pytest.raises(ValueError, match="unknown experiment"):
        why.study("why_landscape_dlnx")
