"""Model zoo: `build_model(cfg, input_shape, num_classes)` picks a network by `cfg.model.name`."""
from __future__ import annotations

import math

from omegaconf import DictConfig
from torch import nn

from bnrepro.config import choice
from bnrepro.errors import BnreproError
from bnrepro.models.inception import BNInception, InceptionSmall
from bnrepro.models.mlp import MLP

MODELS = ("mlp", "bn_inception", "inception_small")


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network of `cfg.model`, with BN as `cfg.bn` says (norm, placement, impl, eps, momentum, groups)."""
    name = cfg.model.name
    common = dict(
        num_classes=num_classes,
        activation=choice(cfg.model.activation),
        placement=choice(cfg.bn.placement),
        bn_impl=choice(cfg.bn.impl),
        bn_eps=cfg.bn.eps,
        bn_momentum=cfg.bn.momentum,
        init_std=cfg.model.init_std,
        norm=choice(cfg.bn.norm),
        norm_groups=cfg.bn.groups,
    )
    if name == "mlp":
        return MLP(in_features=math.prod(input_shape), depth=cfg.model.depth, width=cfg.model.width, **common)
    if name in ("bn_inception", "inception_small"):  # the conv nets of Sec. 4.2
        conv = dict(in_channels=input_shape[0], width_mult=cfg.model.width_mult, dropout=cfg.model.dropout,
                    lrn=cfg.model.lrn, **common)
        if name == "bn_inception":
            return BNInception(small_input=cfg.model.small_input, **conv)
        return InceptionSmall(**conv)  # its stem is already for 32 px; small_input does not apply
    raise BnreproError(
        f"Unknown model.name={name!r}. Choose one of: {', '.join(MODELS)} "
        "(e.g. `model=mlp` on the command line)."
    )
