"""Issue 18's BN statistics options (bnrepro/nn/bn_variants.py), each against a hand computation on
a small tensor: ghost batches, FrozenBN, Batch Renormalization and its schedule, inference example
weighing, PreciseBN (beside Algorithm 2's average); and the stacked paths' refusals."""
import re

import pytest
import torch
from torch import nn

from bnrepro.errors import BnreproError
from bnrepro.nn.bn import recompute_population_stats
from bnrepro.nn.bn_variants import BatchRenorm, BNSchedule, make_variant, recompute_precise_stats
from tests.conftest import SMOKE, run_one

EPS = 1e-8  # small enough that the hand values below (variances 1 and more) hold to 1e-6


@pytest.mark.parametrize("impl", ["torch", "paper"])
def test_ghost_batches_normalize_each_sub_batch_and_update_per_ghost_batch(impl):
    # Two ghost batches of 2: feature 0 is (1, 3) then (0, 2), feature 1 (0, 2) then (4, 8).
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 8.0]])
    bn = make_variant(2, spatial=False, impl=impl, eps=EPS, momentum=0.5, ghost_batch=2).train()
    y = bn(x)
    # each ghost batch of two values a < b normalizes to (-1, +1), whatever the whole batch's statistics
    assert torch.allclose(y, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, -1.0], [1.0, 1.0]]), atol=1e-5)
    # running = 0.5 * running + 0.5 * stat, once per ghost batch: means (2, 1) then (1, 6)
    assert torch.allclose(bn.running_mean, torch.tensor([0.5 * (0.5 * 2) + 0.5 * 1, 0.5 * (0.5 * 1) + 0.5 * 6]))
    # unbiased variances with m = 2: (1 * 2, 1 * 2) then (1 * 2, 4 * 2), from 1
    assert torch.allclose(bn.running_var, torch.tensor([0.5 * (0.5 + 0.5 * 2) + 0.5 * 2,
                                                        0.5 * (0.5 + 0.5 * 2) + 0.5 * 8]))
    assert int(bn.num_batches_tracked) == 2


def test_ghost_batches_of_conv_features_pool_positions_per_sub_batch():
    x = torch.arange(16.0).view(4, 1, 2, 2)  # examples 0,1: values 0..7; examples 2,3: 8..15
    bn = make_variant(1, spatial=True, impl="torch", eps=EPS, ghost_batch=2).train()
    y = bn(x)
    first = (torch.arange(8.0) - 3.5) / torch.arange(8.0).var(unbiased=False).sqrt()
    assert torch.allclose(y[:2].flatten(), first, atol=1e-5) and torch.allclose(y[2:].flatten(), first, atol=1e-5)


def test_frozen_bn_trains_with_population_statistics_and_keeps_them():
    bn = make_variant(1, spatial=False, impl="paper", eps=EPS).train()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
    bn.frozen = True
    x = torch.tensor([[3.0], [5.0], [-1.0]])
    y = bn(x)
    assert torch.allclose(y, 2.0 * (x - 1.0) / 2.0 + 0.5)  # = x - 0.5, not the batch's (x - mu_B) / sigma_B
    y.sum().backward()
    assert bn.weight.grad.item() == pytest.approx(((x - 1.0) / 2.0).sum().item(), abs=1e-6)  # gamma still trains
    assert bn.running_mean.item() == 1.0 and bn.running_var.item() == 4.0 and int(bn.num_batches_tracked) == 0


def test_batch_renorm_corrects_by_clipped_constants():
    bn = BatchRenorm(1, eps=EPS, momentum=0.1).train()
    bn.running_var.fill_(0.25)  # sigma = 0.5, mu = 0
    bn.r_max, bn.d_max = 1.5, 1.0
    x = torch.tensor([[0.0], [2.0]], requires_grad=True)  # mu_B = 1, sigma_B = 1
    y = bn(x)
    # r = clip(1 / 0.5, 1/1.5, 1.5) = 1.5; d = clip((1 - 0) / 0.5, -1, 1) = 1; x_hat = (x - 1) * 1.5 + 1
    assert torch.allclose(y.detach(), torch.tensor([[-0.5], [2.5]]), atol=1e-6)
    # r and d are constants for the gradient: the input gradient is r times BN's
    c = torch.tensor([[1.0], [3.0]])
    (y * c).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    (nn.functional.batch_norm(x2, None, None, training=True, eps=EPS) * c).sum().backward()
    assert torch.allclose(x.grad, 1.5 * x2.grad, atol=1e-5)
    # running statistics as BN's: momentum 0.1, the unbiased var_B * 2/1
    assert bn.running_mean.item() == pytest.approx(0.1)
    assert bn.running_var.item() == pytest.approx(0.9 * 0.25 + 0.1 * 2.0)


def test_batch_renorm_at_rmax_1_dmax_0_is_bn_and_infers_as_bn():
    x = torch.randn(8, 3)
    brn, bn = BatchRenorm(3), nn.BatchNorm1d(3)
    assert torch.allclose(brn.train()(x), bn.train()(x), atol=1e-5)
    assert torch.allclose(brn.running_var, bn.running_var, atol=1e-6)
    assert torch.allclose(brn.eval()(x), bn.eval()(x), atol=1e-5)


def test_schedule_ramps_rmax_dmax_and_freezes_the_tail():
    model = nn.Sequential(BatchRenorm(2))
    schedule = BNSchedule(model, max_steps=100, freeze_after=0.9, rmax=3.0, dmax=5.0, warmup=0.5)
    layer = model[0]
    schedule(1)
    assert (layer.r_max, layer.d_max, layer.frozen) == (1.0, 0.0, False)
    schedule(26)  # progress 0.25 of a 0.5 warmup: half way
    assert (layer.r_max, layer.d_max) == pytest.approx((2.0, 2.5))
    schedule(90)
    assert (layer.r_max, layer.d_max, layer.frozen) == (3.0, 5.0, False)
    schedule(91)  # steps after round(0.9 * 100)
    assert layer.frozen
    assert not BNSchedule(model, max_steps=100).frozen_at(100)  # freeze_after=null: never


def test_example_weighing_mixes_population_and_own_statistics():
    bn = make_variant(1, spatial=True, impl="torch", eps=EPS, eval_weight=0.5).eval()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(1.0)
    x = torch.tensor([0.0, 2.0, 4.0, 6.0]).view(1, 1, 2, 2)  # mu_i = 3, var_i = 5
    y = bn(x)  # mu = 0.5 * 1 + 0.5 * 3 = 2, var = 0.5 * 1 + 0.5 * 5 = 3
    assert torch.allclose(y, (x - 2.0) / 3.0 ** 0.5, atol=1e-6)
    bn.eval_weight = 0.0
    assert torch.allclose(bn(x), x - 1.0, atol=1e-6)  # alpha = 0: Algorithm 2
    with pytest.raises(BnreproError, match="bn.eval_weight needs feature maps"):
        make_variant(1, spatial=False, eval_weight=0.5).eval()(torch.ones(2, 1))


def test_precise_statistics_are_the_population_moments_unlike_algorithm_2():
    batches = [torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0], [6.0]])]
    model = nn.Sequential(nn.BatchNorm1d(1)).eval()
    assert recompute_precise_stats(model, iter(batches), 2) == 4
    # E[x] = 3; E[x^2] - E[x]^2 = 14 - 9 = 5, times n/(n-1) = 4/3
    assert model[0].running_mean.item() == pytest.approx(3.0)
    assert model[0].running_var.item() == pytest.approx(5.0 * 4 / 3)
    assert not model.training and not model[0].training and int(model[0].num_batches_tracked) == 0
    # Algorithm 2: the mean of the batch means (3) and of the unbiased batch variances (2, 2)
    recompute_population_stats(model, iter(batches), 2)
    assert model[0].running_mean.item() == pytest.approx(3.0) and model[0].running_var.item() == pytest.approx(2.0)


def test_precise_statistics_see_the_inputs_of_deeper_layers():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1), nn.Linear(1, 1), nn.BatchNorm1d(1)).train()
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[2].weight.fill_(3.0)
        model[2].bias.fill_(1.0)
    recompute_precise_stats(model, iter([torch.tensor([[0.0], [1.0], [2.0], [3.0]])]), 1)
    assert model[1].running_mean.item() == pytest.approx(3.0)  # 2x: (0, 2, 4, 6)
    assert model[3].running_mean.item() == pytest.approx(1.0)  # 3 * x_hat + 1, x_hat of mean 0
    assert model[3].running_var.item() == pytest.approx(9.0 * 4 / 3, rel=1e-4)  # 9 * Var[x_hat] (1), * n/(n-1)
    assert model.training


@pytest.mark.parametrize("override, named", [
    ("bn.population=precise", "bn.population=precise (stacked: ema)"),
    ("bn.ghost_batch=8", "bn.ghost_batch=8 (stacked"),
    ("bn.freeze_after=0.9", "bn.freeze_after=0.9 (stacked"),
    ("bn.norm=renorm", "bn.norm=renorm (the stacked MLP"),
])
def test_stacked_paths_refuse_the_new_options(make_cfg, tmp_path, override, named):
    with pytest.raises(BnreproError, match=re.escape("The stacked seed path (seeds=[...]) does not support: ")
                       + ".*" + re.escape(named)):
        run_one(make_cfg(*SMOKE, "variant=bn", "seeds=[0,1]", override), tmp_path / "run")


@pytest.mark.parametrize("overrides", [
    ["bn.norm=renorm", "bn.ghost_batch=4", "bn.population=precise", "bn.precise_examples=64"],
    ["bn.impl=paper", "bn.ghost_batch=8", "bn.population=average", "bn.population_batches=2"],
    # FrozenBN on PreciseBN's statistics (recomputed at the freeze step). At this learning rate (0.5)
    # the same run diverges once frozen on the EMA of 10 steps at momentum 0.1 (a third of it still
    # the initial (0, 1)), and on precise statistics of only 64 examples: frozen, nothing renormalizes.
    ["bn.freeze_after=0.5", "bn.population=precise", "bn.precise_examples=256"],
])
def test_options_train_end_to_end(make_cfg, tmp_path, overrides):
    cfg = make_cfg(*SMOKE, "variant=bn", "model.activation=relu", "probe.every=0", *overrides)
    summary = run_one(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["final"]["test/accuracy"] > 0.5
