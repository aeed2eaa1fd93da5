"""The fully-connected network of Sec. 4.1 (Figure 1): hidden layers of sigmoid units."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from bnrepro.bn import make_batchnorm

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


def hidden_block(fan_in: int, width: int, activation: str, placement: str, **bn_kw) -> nn.Sequential:
    """One hidden layer as a Sequential whose children are named `linear`, `bn`, `act`.

    before: z = g(BN(Wu)), the paper's choice (Sec. 3.2). The linear bias is dropped because
    BN subtracts the mean and its beta takes over the bias's role.
    after:  z = BN(g(Wu + b)), the alternative the seeds discuss.
    none:   z = g(Wu + b), the baseline.
    The probes read the input of `act`, which is what Figure 1(b, c) plots.
    """
    if placement not in ("none", "before", "after"):
        raise ValueError(f"bn.placement must be none, before or after, got {placement!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    linear = nn.Linear(fan_in, width, bias=placement != "before")
    act = ACTIVATIONS[activation]()
    if placement == "none":
        return nn.Sequential(OrderedDict(linear=linear, act=act))
    bn = make_batchnorm(width, spatial=False, **bn_kw)
    order = [("linear", linear), ("bn", bn), ("act", act)]
    if placement == "after":
        order = [order[0], order[2], order[1]]
    return nn.Sequential(OrderedDict(order))


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, then a linear layer to the class logits.

    Sec. 4.1: 3 hidden layers of 100 sigmoid units, weights from small random Gaussians, and
    the last hidden layer feeding a 10-way softmax (the softmax lives in the loss).
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
    ):
        super().__init__()
        bn_kw = dict(impl=bn_impl, eps=bn_eps, momentum=bn_momentum)
        widths = [in_features] + [width] * depth
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(
            *(hidden_block(a, b, activation, placement, **bn_kw) for a, b in zip(widths, widths[1:]))
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
