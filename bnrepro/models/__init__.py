"""Model zoo: `build_model(model, bn, input_shape, num_classes)` picks a network by `model.name`.

`stacked.StackedMLP` trains several seeds of the MLP as one model (`seeds=[...]`)."""
from __future__ import annotations

import math

from torch import nn

from bnrepro.errors import BnreproError
from bnrepro.schema import BNConfig, ModelConfig, choice
from bnrepro.models.inception import BNInception, InceptionSmall
from bnrepro.models.mlp import MLP
from bnrepro.nn.noise import noise_factory

MODELS = ("mlp", "bn_inception", "inception_small")


def bn_variant(bn: BNConfig) -> dict | None:
    """The statistics options of bnrepro/nn/bn_variants.py that change the BN layer's class, or None
    when none is set (then every BN is the plain one every earlier result was trained with)."""
    frozen = bn.freeze_after is not None and bn.freeze_after < 1.0
    if bn.ghost_batch is None and not bn.eval_weight and not frozen:
        return None
    return dict(ghost_batch=bn.ghost_batch, eval_weight=bn.eval_weight)


def build_model(model: ModelConfig, bn: BNConfig, input_shape: tuple[int, ...], num_classes: int,
                seed: int = 0) -> nn.Module:
    """The network `model` describes, with BN as `bn` says (norm, placement, impl, eps, momentum, groups,
    and Santurkar et al.'s noise, whose own generator `seed` seeds: bnrepro/nn/noise.py)."""
    name = model.name
    common = dict(
        num_classes=num_classes,
        activation=choice(model.activation),
        placement=choice(bn.placement),
        bn_impl=choice(bn.impl),
        bn_eps=bn.eps,
        bn_momentum=bn.momentum,
        init_std=model.init_std,
        norm=choice(bn.norm),
        norm_groups=bn.groups,
        noise=noise_factory(bn.noise, seed),
        bn_variant=bn_variant(bn),
    )
    if name == "mlp":
        return MLP(in_features=math.prod(input_shape), depth=model.depth, width=model.width,
                   init=choice(model.init), **common)
    if name in ("bn_inception", "inception_small"):  # the conv nets of Sec. 4.2
        conv = dict(in_channels=input_shape[0], width_mult=model.width_mult, dropout=model.dropout,
                    lrn=model.lrn, init=choice(model.init), **common)
        if name == "bn_inception":
            return BNInception(small_input=model.small_input, **conv)
        return InceptionSmall(**conv)  # its stem is already for 32 px; small_input does not apply
    raise BnreproError(
        f"Unknown model.name={name!r}. Choose one of: {', '.join(MODELS)} "
        "(e.g. `model=mlp` on the command line)."
    )
