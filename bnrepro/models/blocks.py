"""The unit every network here is built from: a linear or conv layer, BN, and a nonlinearity,
in the order `bn.placement` says. Children are named `linear`/`conv`, `bn`, `act`, so probes
and BN folding find them the same way in every model. The `bn` slot holds whichever member of
the normalization family `bn.norm` names (bnrepro/nn/norms.py); BN by default."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

from torch import nn

from bnrepro.nn.norms import make_norm

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}
PLACEMENTS = ("none", "before", "after")


def norm_act(layer: nn.Module, name: str, width: int, activation: str, placement: str, spatial: bool,
             noise: Optional[Callable[[int], nn.Module]] = None, **bn_kw) -> nn.Sequential:
    """`layer` followed by BN and the nonlinearity.

    before: z = g(BN(Wu)), the paper's choice (Sec. 3.2). The layer should have no bias: BN
            subtracts the mean and its beta takes over the bias's role (`has_bias` below).
    after:  z = BN(g(Wu + b)), the alternative the seeds discuss.
    none:   z = g(Wu + b), the baseline; so is any placement with norm="none".
    noise:  a maker of Santurkar et al.'s noise layer for this width (bnrepro/nn/noise.py), a child
            `noise` right after the norm, or where the norm would be without one (before the
            nonlinearity, unless placement is after): Algorithm 1 perturbs BN's output, and the
            paper's control puts the same noise at the same place in the network without BN.
    bn_kw: norm, groups, impl, eps, momentum for bnrepro.nn.norms.make_norm.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"bn.placement must be one of {PLACEMENTS}, got {placement!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    act = ("act", ACTIVATIONS[activation]())
    slot = [("noise", noise(width))] if noise is not None else []
    if placement != "none" and bn_kw.get("norm", "batch") != "none":
        slot.insert(0, ("bn", make_norm(width, spatial=spatial, **bn_kw)))
    order = [(name, layer), act, *slot] if placement == "after" else [(name, layer), *slot, act]
    return nn.Sequential(OrderedDict(order))


def has_bias(placement: str, norm: str = "batch") -> bool:
    """Sec. 3.2: with BN on Wu the bias b is redundant, its effect is cancelled by the mean subtraction.
    The same holds for instance norm; layer and group norm cancel a bias up to its mean over the
    pooled features, and their per-feature beta adds the shift back, so no norm keeps one."""
    return placement != "before" or norm == "none"


def conv_block(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | None = None, *,
               activation: str = "relu", placement: str = "before",
               noise: Optional[Callable[[int], nn.Module]] = None, **bn_kw) -> nn.Sequential:
    """Conv (same padding by default) -> BN [-> noise] -> nonlinearity; per-feature-map BN (Sec. 3.2)."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2 if padding is None else padding,
                     bias=has_bias(placement, bn_kw.get("norm", "batch")))
    return norm_act(conv, "conv", c_out, activation, placement, spatial=True, noise=noise, **bn_kw)
