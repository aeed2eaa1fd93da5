"""The normalization family, for the slot where BN goes (`bn.norm`, placed by `bn.placement`).

Every member computes x_hat = (x - mean) / sqrt(var + eps) and y = gamma * x_hat + beta with one
gamma/beta per feature (per channel in conv nets); they differ only in which values share a mean
and a variance (Wu & He, "Group Normalization", 2018, Fig. 2):

| norm     | conv features (N, C, H, W): statistics over  | MLP features (N, C): statistics over      |
| -------- | -------------------------------------------- | ----------------------------------------- |
| batch    | the batch and the positions, per channel     | the batch, per feature (Algorithm 1)      |
| layer    | one example's channels and positions         | one example's C features                  |
| group    | one example's positions and C/G channels     | one example's C/G features, G groups      |
| instance | one example's positions, per channel         | undefined: refused (see below)            |
| none     | no normalization layer at all                | no normalization layer at all             |
| renorm   | as batch (Batch Renormalization, Ioffe 2017) | as batch                                  |

Only `batch` depends on the other examples of the mini-batch (seed 004: with small batches its
statistics get noisy); the others normalize each example alone, identically in training and at
inference. For MLP features, layer and group norm treat the C units of a hidden layer as the
values to pool, as Ba et al. (2016) define layer normalization for fully-connected layers; G=1
is layer norm. Instance norm pools one channel's spatial positions; a fully-connected unit has a
single position, so x_hat would be 0 and every output beta: the layer would erase its input.
The MLP therefore refuses `norm=instance` with an error rather than train a network that cannot learn.

Modules are torch's (nn.LayerNorm for MLP features, nn.GroupNorm(1, C) -- layer norm with a
per-channel gamma/beta -- for conv features, nn.GroupNorm, nn.InstanceNorm2d with affine
gamma/beta and per-example statistics at inference too); `batch` is bnrepro.bn's when bn.impl=paper.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from bnrepro.nn.bn import make_batchnorm
from bnrepro.nn.bn_variants import make_variant
from bnrepro.schema import choice
from bnrepro.errors import BnreproError

NORMS = ("batch", "layer", "group", "instance", "none", "renorm")


def group_count(channels: int, groups: int) -> int:
    """The number of groups a layer of `channels` gets: the largest divisor of `channels` that is at
    most `groups` (GroupNorm needs equal groups; Wu & He use G=32, which narrow layers cannot have)."""
    if groups < 1:
        raise BnreproError(f"bn.groups={groups} must be a positive integer (e.g. bn.groups=32).")
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def make_norm(num_features: int, spatial: bool, norm: str = "batch", impl: str = "torch",
              eps: float = 1e-5, momentum: Optional[float] = 0.1, groups: int = 32,
              variant: Optional[dict] = None) -> nn.Module:
    """The normalization layer `norm` for (N, C, H, W) inputs if spatial else (N, C).

    impl and momentum apply to `batch` and `renorm` only (the others keep no running statistics);
    `variant` (ghost_batch, eval_weight: bnrepro/nn/bn_variants.py) makes `batch` a BN whose
    statistics those options change; None keeps the plain BN layer."""
    norm = choice(norm)
    if norm == "renorm" or (norm == "batch" and variant is not None):
        return make_variant(num_features, spatial, impl=impl, eps=eps, momentum=momentum,
                            renorm=norm == "renorm", **(variant or {}))
    if norm == "batch":
        return make_batchnorm(num_features, spatial=spatial, impl=impl, eps=eps, momentum=momentum)
    if norm == "layer":
        return nn.GroupNorm(1, num_features, eps=eps) if spatial else nn.LayerNorm(num_features, eps=eps)
    if norm == "group":
        return nn.GroupNorm(group_count(num_features, groups), num_features, eps=eps)
    if norm == "instance":
        if not spatial:
            raise BnreproError(
                "bn.norm=instance needs feature maps with positions (a conv model): it normalizes each "
                "channel of each example over its positions, and a fully-connected unit has only one, so "
                "every output would be beta. For the MLP use bn.norm=layer or bn.norm=group (see bnrepro/nn/norms.py).")
        return nn.InstanceNorm2d(num_features, eps=eps, affine=True)
    raise ValueError(f"bn.norm must be one of {NORMS}, got {norm!r}")
