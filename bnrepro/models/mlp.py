"""The fully-connected network of Sec. 4.1 (Figure 1): hidden layers of sigmoid units."""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from bnrepro.models.blocks import has_bias, norm_act


def hidden_block(fan_in: int, width: int, activation: str, placement: str,
                 noise: Optional[Callable[[int], nn.Module]] = None, **bn_kw) -> nn.Sequential:
    """One hidden layer, Sequential(linear, [bn,] [noise,] act); the probes read the input of `act`,
    which is what Figure 1(b, c) plots."""
    linear = nn.Linear(fan_in, width, bias=has_bias(placement, bn_kw.get("norm", "batch")))
    return norm_act(linear, "linear", width, activation, placement, spatial=False, noise=noise, **bn_kw)


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, then a linear layer to the class logits.

    Sec. 4.1: 3 hidden layers of 100 sigmoid units, weights from small random Gaussians, and
    the last hidden layer feeding a 10-way softmax (the softmax lives in the loss).
    noise: a maker of Santurkar et al.'s noise layer (bnrepro/nn/noise.py, `noise_factory`), or None.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        depth: int = 3,
        width: int = 100,
        activation: str = "sigmoid",
        placement: str = "none",
        bn_impl: str = "torch",
        bn_eps: float = 1e-5,
        bn_momentum: float | None = 0.1,
        init_std: float | None = None,
        norm: str = "batch",
        norm_groups: int = 32,
        noise: Optional[Callable[[int], nn.Module]] = None,
    ):
        super().__init__()
        bn_kw = dict(norm=norm, groups=norm_groups, impl=bn_impl, eps=bn_eps, momentum=bn_momentum)
        widths = [in_features] + [width] * depth
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(
            *(hidden_block(a, b, activation, placement, noise, **bn_kw) for a, b in zip(widths, widths[1:]))
        )
        self.classifier = nn.Linear(widths[-1], num_classes)
        if init_std is not None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=init_std)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def probe_points(self) -> dict[str, nn.Module]:
        """The modules whose input Figure 1 plots: each hidden layer's nonlinearity."""
        return {f"layer{i}": block.act for i, block in enumerate(self.hidden, start=1)}

    def forward(self, x):
        return self.classifier(self.hidden(self.flatten(x)))
