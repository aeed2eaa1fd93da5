"""The unit every network here is built from: a linear or conv layer, BN, and a nonlinearity,
in the order `bn.placement` says. Children are named `linear`/`conv`, `bn`, `act`, so probes
and BN folding find them the same way in every model. The `bn` slot holds whichever member of
the normalization family `bn.norm` names (bnrepro/nn/norms.py); BN by default."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from bnrepro.nn.norms import make_norm

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}
PLACEMENTS = ("none", "before", "after")


def norm_act(layer: nn.Module, name: str, width: int, activation: str, placement: str, spatial: bool,
             **bn_kw) -> nn.Sequential:
    """`layer` followed by BN and the nonlinearity.

    before: z = g(BN(Wu)), the paper's choice (Sec. 3.2). The layer should have no bias: BN
            subtracts the mean and its beta takes over the bias's role (`has_bias` below).
    after:  z = BN(g(Wu + b)), the alternative the seeds discuss.
    none:   z = g(Wu + b), the baseline; so is any placement with norm="none".
    bn_kw: norm, groups, impl, eps, momentum for bnrepro.nn.norms.make_norm.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"bn.placement must be one of {PLACEMENTS}, got {placement!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    act = ACTIVATIONS[activation]()
    if placement == "none" or bn_kw.get("norm", "batch") == "none":
        return nn.Sequential(OrderedDict([(name, layer), ("act", act)]))
    bn = make_norm(width, spatial=spatial, **bn_kw)
    order = [(name, layer), ("bn", bn), ("act", act)] if placement == "before" else [(name, layer), ("act", act), ("bn", bn)]
    return nn.Sequential(OrderedDict(order))


def has_bias(placement: str, norm: str = "batch") -> bool:
    """Sec. 3.2: with BN on Wu the bias b is redundant, its effect is cancelled by the mean subtraction.
    The same holds for instance norm; layer and group norm cancel a bias up to its mean over the
    pooled features, and their per-feature beta adds the shift back, so no norm keeps one."""
    return placement != "before" or norm == "none"


def conv_block(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | None = None, *,
               activation: str = "relu", placement: str = "before", **bn_kw) -> nn.Sequential:
    """Conv (same padding by default) -> BN -> nonlinearity; per-feature-map BN (Sec. 3.2)."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2 if padding is None else padding,
                     bias=has_bias(placement, bn_kw.get("norm", "batch")))
    return norm_act(conv, "conv", c_out, activation, placement, spatial=True, **bn_kw)
