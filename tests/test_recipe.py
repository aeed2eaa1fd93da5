"""Sec. 4.2's recipe: the variants as compositions of knobs, the schedule, the batch augmentation."""
import math

import pytest
import torch
from torch import nn

from bnrepro.data.augment import BatchAugment
from bnrepro.data.tensors import TensorBatches, pad_to
from bnrepro.training.optim import build_optimizer

# variant -> (placement, activation, dropout, lrn, lr_scale, wd_scale, decay_speedup, reshuffle, jitter_scale)
VARIANTS = {
    "inception": ("none", "relu", 0.4, True, 1, 1, 1, False, 1),
    "bn_baseline": ("before", "relu", 0.4, True, 1, 1, 1, False, 1),
    "bn_x5": ("before", "relu", 0.0, False, 5, 0.2, 6, True, 0.25),
    "bn_x30": ("before", "relu", 0.0, False, 30, 0.2, 6, True, 0.25),
    "bn_x5_sigmoid": ("before", "sigmoid", 0.0, False, 5, 0.2, 6, True, 0.25),
    "inception_x5": ("none", "relu", 0.4, True, 5, 1, 1, False, 1),
    "inception_sigmoid": ("none", "sigmoid", 0.4, True, 1, 1, 1, False, 1),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_is_the_paper_s_composition_of_knobs(make_cfg, variant):
    c = make_cfg(f"variant={variant}")
    got = (c.bn.placement.value, c.model.activation.value, c.model.dropout, c.model.lrn, c.optim.lr_scale,
           c.optim.weight_decay_scale, c.optim.lr_decay_speedup, c.data.reshuffle, c.data.augment.jitter_scale)
    assert got == VARIANTS[variant] and c.variant == variant


def test_a_knob_can_be_ablated_on_top_of_a_variant(make_cfg):
    c = make_cfg("variant=bn_x5", "model.dropout=0.4")
    assert c.model.dropout == 0.4 and c.optim.lr_scale == 5


def test_schedule_scales_and_decays_stepwise(make_cfg):
    cfg = make_cfg("optim.lr=0.1", "optim.lr_scale=5", "optim.weight_decay=1e-4", "optim.weight_decay_scale=0.2",
                   "optim.lr_decay=0.5", "optim.lr_decay_every=60", "optim.lr_decay_speedup=6", "optim.momentum=0.9").optim
    model = nn.Linear(2, 2)
    optimizer, schedule = build_optimizer(model, cfg)
    group = optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == pytest.approx(2e-5)
    lrs = []
    for _ in range(25):
        lrs.append(group["lr"])
        optimizer.step()
        schedule.step()
    # interval = 60 / 6 = 10 steps; lr = 0.5 * 0.5 ** (step // 10)
    assert lrs[0] == lrs[9] == pytest.approx(0.5)
    assert lrs[10] == pytest.approx(0.25) and lrs[20] == pytest.approx(0.125)


def test_constant_rate_without_decay(make_cfg):
    optimizer, schedule = build_optimizer(nn.Linear(2, 2), make_cfg("optim.lr=0.3").optim)
    for _ in range(5):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3)


def test_crop_flip_jitter_on_whole_batches():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    crop = BatchAugment(crop_padding=2, seed=0)(x)
    assert crop.shape == x.shape
    # each crop is a shifted window of the zero-padded image: its non-zero values stay in order
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = padded.unfold(2, 6, 1).unfold(3, 6, 1)  # (n, c, 5, 5, 6, 6)
    for i in range(2):
        assert any(torch.equal(windows[i, :, r, c], crop[i]) for r in range(5) for c in range(5))
    flipped = BatchAugment(flip=True, seed=1)(x)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    jittered = BatchAugment(jitter=0.5, seed=2)(x)
    assert not torch.equal(jittered, x) and jittered.shape == x.shape
    assert torch.equal(BatchAugment(2, True, 0.5, seed=3)(x), BatchAugment(2, True, 0.5, seed=3)(x))


def test_augment_from_config_is_none_when_nothing_asked(make_cfg):
    assert BatchAugment.from_config(make_cfg().data.augment, 0, torch.device("cpu")) is None
    cfg = make_cfg("data.augment.jitter=0.4", "data.augment.jitter_scale=0.25").data.augment
    assert BatchAugment.from_config(cfg, 0, torch.device("cpu")).jitter == pytest.approx(0.1)


def test_reshuffle_off_repeats_the_first_epoch_order():
    x, y = torch.arange(12.0).view(12, 1), torch.arange(12)
    fixed = TensorBatches(x, y, 4, seed=0, reshuffle=False)
    epochs = [torch.cat([next(fixed)[1] for _ in range(3)]) for _ in range(3)]
    assert torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[1], epochs[2])
    moving = TensorBatches(x, y, 4, seed=0)
    epochs = [torch.cat([next(moving)[1] for _ in range(3)]) for _ in range(3)]
    assert not (torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[1], epochs[2]))


def test_pad_to_centres_the_image():
    x = torch.ones(2, 1, 28, 28)
    padded = pad_to(x, 32)
    assert padded.shape == (2, 1, 32, 32) and padded.sum() == x.sum() and padded[0, 0, 2, 2] == 1
    with pytest.raises(ValueError, match="pad_to"):
        pad_to(x, 20)


def test_fast_trainer_knobs_run_on_cpu(make_cfg, tmp_path):
    """The `fast` trainer's channels_last and bf16 autocast through the runner, on the CPU (compile
    is checked on a GPU: scripts/bench.py --device cuda)."""
    from tests.conftest import SMOKE, run_one

    cfg = make_cfg(*SMOKE, "trainer=fast", "trainer.compile=false", "model=inception_small", "model.width_mult=0.125",
                   "data.synthetic.shape=[3,32,32]", "trainer.max_steps=4", "trainer.eval_every=2", "probe.every=2")
    assert cfg.trainer.channels_last and cfg.trainer.amp and cfg.trainer.cudnn_benchmark
    summary = run_one(cfg, tmp_path)
    assert summary["status"] == "completed" and math.isfinite(summary["final"]["test/loss"])


def test_faithful_is_the_default_trainer(make_cfg):
    t = make_cfg().trainer
    assert not (t.channels_last or t.amp or t.compile or t.cudnn_benchmark)


@pytest.mark.parametrize("which, decayed", [("all", {"hidden.0.linear.weight", "hidden.0.bn.weight", "hidden.0.bn.bias",
                                                     "classifier.weight", "classifier.bias"}),
                                            ("weights", {"hidden.0.linear.weight", "classifier.weight"})])
def test_weight_decay_applies_to_the_stated_parameters(make_cfg, which, decayed):
    """optim.weight_decay_params: every parameter (torch's default) or the weights only; with zero
    gradients one SGD step moves exactly the decayed parameters."""
    from bnrepro.models.mlp import MLP

    model = MLP(6, 3, depth=1, width=4, placement="before")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # no zeros (BN's beta starts at 0), so decay shows wherever it acts
    cfg = make_cfg("optim.lr=0.5", "optim.weight_decay=0.1", f"optim.weight_decay_params={which}").optim
    optimizer, _ = build_optimizer(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == decayed
    for n in moved:  # p <- p - lr * wd * p
        torch.testing.assert_close(dict(model.named_parameters())[n], before[n] * (1 - 0.5 * 0.1))


def test_weight_decay_on_weights_only_for_the_stacked_model(make_cfg):
    from bnrepro.models.mlp import MLP
    from bnrepro.models.stacked import StackedMLP

    stacked = StackedMLP([MLP(6, 3, depth=1, width=4, placement="before") for _ in range(2)])
    cfg = make_cfg("optim.lr=0.5", "optim.weight_decay=0.1", "optim.weight_decay_params=weights").optim
    optimizer, _ = build_optimizer(stacked, cfg)
    w, other = stacked.flat_weights.detach().clone(), stacked.flat_other.detach().clone()
    stacked.flat_weights.grad.zero_(), stacked.flat_other.grad.zero_()
    optimizer.step()
    torch.testing.assert_close(stacked.flat_weights.detach(), w * 0.95)
    assert torch.equal(stacked.flat_other.detach(), other)


def test_amp_runs_convs_in_bf16_and_keeps_bn_float32(make_cfg):
    """trainer.amp on the CPU: the convs compute in bf16, BN (both impls) keeps float32 statistics,
    and a training step learns (finite loss, parameters move)."""
    from bnrepro.training.members import SingleModel

    for impl in ("torch", "paper"):
        cfg = make_cfg("model=inception_small", "model.width_mult=0.125", "variant=bn_baseline", f"bn.impl={impl}")
        from bnrepro.models import build_model

        model = build_model(cfg.model, cfg.bn, (3, 32, 32), 10)
        members = SingleModel(model, amp=True)
        dtypes = []
        model.stem.conv1.conv.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
        optimizer, _ = build_optimizer(model, cfg.optim)
        before = model.stem.conv1.conv.weight.detach().clone()
        loss = members.forward_backward(torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)))
        optimizer.step()
        bn = model.stem.conv1.bn
        assert dtypes == [torch.bfloat16] and bn.running_mean.dtype == torch.float32 and bn.num_batches_tracked == 1
        assert torch.isfinite(loss).all() and not torch.equal(model.stem.conv1.conv.weight, before)
