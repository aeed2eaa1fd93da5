"""The fully-connected network of Sec. 4.1 (Figure 1): hidden layers of sigmoid units."""
from __future__ import annotations

import math
from typing import Callable, Optional

from torch import nn

from bnrepro.models.blocks import has_bias, norm_act


def hidden_block(fan_in: int, width: int, activation: str, placement: str,
                 noise: Optional[Callable[[int], nn.Module]] = None, **bn_kw) -> nn.Sequential:
    """One hidden layer, Sequential(linear, [bn,] [noise,] act); the probes read the input of `act`,
    which is what Figure 1(b, c) plots."""
    linear = nn.Linear(fan_in, width, bias=has_bias(placement, bn_kw.get("norm", "batch")))
    return norm_act(linear, "linear", width, activation, placement, spatial=False, noise=noise, **bn_kw)


INITS = ("auto", "lecun", "he", "glorot")


def gaussian_std(linear: nn.Linear, init: str) -> float:
    """The std of `model.init`'s Gaussian for one layer (used when model.init_std is null).

    Sec. 4.1 says only "small random Gaussian values"; these scale the std by the layer's size:
    lecun N(0, 1/fan_in) (LeCun et al. 1998, "Efficient BackProp": unit-variance pre-activations
    for unit-variance inputs, the 1/sqrt(fan_in) point of the Figure 1 sensitivity map), he
    N(0, 2/fan_in) (ReLU's gain) and glorot N(0, 2/(fan_in + fan_out)). `auto` never gets here: for
    the MLP it keeps torch's default init, which every committed MLP result without init_std used."""
    fan_out, fan_in = linear.weight.shape
    if init == "lecun":
        return 1 / math.sqrt(fan_in)
    if init == "he":
        return math.sqrt(2 / fan_in)
    if init == "glorot":
        return math.sqrt(2 / (fan_in + fan_out))
    raise ValueError(f"MLP init must be one of {', '.join(INITS)}, not {init!r}")


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, then a linear layer to the class logits.

    Sec. 4.1: 3 hidden layers of 100 sigmoid units, weights from small random Gaussians, and
    the last hidden layer feeding a 10-way softmax (the softmax lives in the loss).
    bn_variant: the statistics options of bnrepro/nn/bn_variants.py (make_norm's `variant`), or None.
    noise: a maker of Santurkar et al.'s noise layer (bnrepro/nn/noise.py, `noise_factory`), or None.
    Weights: N(0, init_std^2) when init_std is given; else `init` (`gaussian_std`), where `auto`
    is torch's default. Biases start at zero whenever the weights are Gaussian.
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
        init: str = "auto",
        bn_variant: Optional[dict] = None,
    ):
        super().__init__()
        bn_kw = dict(norm=norm, groups=norm_groups, impl=bn_impl, eps=bn_eps, momentum=bn_momentum,
                     variant=bn_variant)
        widths = [in_features] + [width] * depth
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(
            *(hidden_block(a, b, activation, placement, noise, **bn_kw) for a, b in zip(widths, widths[1:]))
        )
        self.classifier = nn.Linear(widths[-1], num_classes)
        if init_std is not None or init != "auto":
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=init_std if init_std is not None else gaussian_std(m, init))
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def probe_points(self) -> dict[str, nn.Module]:
        """The modules whose input Figure 1 plots: each hidden layer's nonlinearity."""
        return {f"layer{i}": block.act for i, block in enumerate(self.hidden, start=1)}

    def forward(self, x):
        return self.classifier(self.hidden(self.flatten(x)))
