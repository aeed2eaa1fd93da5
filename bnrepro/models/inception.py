"""The convolutional networks of Sec. 4.2 (Figures 2 and 3).

`BNInception`: the paper's own network (Sec. 4.2 and its appendix table), known as BN-Inception or
Inception-v2. `InceptionSmall`: the small CIFAR-scale Inception of Zhang et al. (2017), which
runs the same Figure 2 protocol on one GPU. Every conv-BN-nonlinearity unit is a `conv_block`
(blocks.py), so `bn.placement`, `bn.impl`, the activation, the probes and `fold_batchnorm` treat
these models exactly like the MLP of Sec. 4.1.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from bnrepro.models.blocks import conv_block


def scale_width(channels: int, width_mult: float) -> int:
    """`width_mult` applied to a channel count: rounded, at least 1; 0 (an absent branch) stays 0."""
    return 0 if channels == 0 else max(1, round(channels * width_mult))


def concat(branches: list, members: int = 1):
    """The branches' feature maps side by side (dim 1). With several stacked members
    (models/stacked_conv.py: member-major channels) each member's branches are joined on their own."""
    if members == 1:
        return torch.cat(branches, dim=1)
    n, _, h, w = branches[0].shape
    if all(b.is_contiguous(memory_format=torch.channels_last) for b in branches):
        # (B, S*C, H, W) channels_last is (B, H, W, S, C) in memory: join along C.
        joined = torch.cat([b.permute(0, 2, 3, 1).reshape(n, h, w, members, -1) for b in branches], dim=4)
        return joined.reshape(n, h, w, -1).permute(0, 3, 1, 2)
    joined = torch.cat([b.reshape(n, members, -1, h, w) for b in branches], dim=2)
    return joined.reshape(n, -1, h, w)


def _lrn() -> nn.Module:
    # GoogLeNet's local response normalization (Szegedy et al. 2015, Table 1 / the Caffe model);
    # Sec. 4.2.1 removes it from the BN networks.
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def conv_init(init: str, activation: str) -> str:
    """`model.init=auto` made concrete: He for ReLU, Glorot for the saturating nonlinearities."""
    if init != "auto":
        return init
    return "he" if activation == "relu" else "glorot"


def _init(model: nn.Module, init_std: float | None, init: str = "he") -> None:
    """N(0, init_std) weights when given; else variance-preserving convs, matched to the
    nonlinearity (`conv_init`): He-normal (fan_in, ReLU gain) or Glorot-normal (gain 1); or
    LeCun-normal (1/fan_in) when model.init=lecun asks for it.

    Not torch's default: its conv init shrinks the signal's variance ~3x per layer, which over
    the ~20 convs of these networks leaves a no-BN baseline with nothing to learn from, a
    handicap the paper's Inception did not have (GoogLeNet used a variance-preserving init).
    He's gain sqrt(2) is derived for ReLU; given to a sigmoid network it drives the units into
    saturation, a confound for Inception-Sigmoid (Glorot & Bengio 2010 derive gain 1 for it).
    Biases start at zero either way.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init_std is not None:
                nn.init.normal_(m.weight, std=init_std)
            elif isinstance(m, nn.Conv2d) and init == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.Conv2d) and init == "glorot":
                nn.init.xavier_normal_(m.weight)
            elif isinstance(m, nn.Conv2d) and init == "lecun":  # N(0, 1/fan_in), the MLP's lecun
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class InceptionModule(nn.Module):
    """One row of the paper's appendix table: concat(1x1, 3x3 reduce -> 3x3,
    double-3x3 reduce -> 3x3 -> 3x3, pool [-> 1x1 proj]).

    The double-3x3 branch is GoogLeNet's 5x5 branch with the 5x5 replaced by two stacked 3x3
    convs (Sec. 4.2). stride=2 (modules 3c and 4e) downsamples inside the module, replacing the
    pooling layers GoogLeNet had between modules; those modules have no 1x1 branch (n1x1=0) and a
    max-pool "pass-through" with no projection (proj=0), as in the table.
    """

    members = 1  # stacked members side by side (models/stacked_conv.py); 1 for a plain network

    def __init__(self, c_in: int, n1x1: int, n3r: int, n3: int, ndr: int, nd: int, pool: str,
                 proj: int, stride: int = 1, *, unit):
        super().__init__()
        if n1x1:
            self.branch1x1 = unit(c_in, n1x1, 1)
        # Children are named so that only conv_blocks have a child called `conv`.
        self.branch3x3 = nn.Sequential(OrderedDict(reduce=unit(c_in, n3r, 1),
                                                   conv3x3=unit(n3r, n3, 3, stride)))
        self.branch3x3dbl = nn.Sequential(OrderedDict(reduce=unit(c_in, ndr, 1), conv3x3a=unit(ndr, nd, 3),
                                                      conv3x3b=unit(nd, nd, 3, stride)))
        # Pools use padding 1, like the 3x3 convs, so every branch has the same output size at
        # any input size (the original Caffe model used ceil-mode pooling instead).
        pool_layer = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[pool](3, stride, 1)
        layers = OrderedDict(pool=pool_layer)
        if proj:
            layers["proj"] = unit(c_in, proj, 1)
        self.branch_pool = nn.Sequential(layers)
        self.out_channels = n1x1 + n3 + nd + (proj or c_in)

    def probe_act(self) -> nn.Module:
        """The nonlinearity probed for this module: the 1x1 branch's, else the 3x3 reduce's."""
        first = self.branch1x1 if hasattr(self, "branch1x1") else self.branch3x3.reduce
        return first.act

    def forward(self, x):
        branches = [self.branch3x3, self.branch3x3dbl, self.branch_pool]
        if hasattr(self, "branch1x1"):
            branches.insert(0, self.branch1x1)
        return concat([b(x) for b in branches], self.members)


# The paper's appendix table, modules 3a..5b:
# (#1x1, #3x3 reduce, #3x3, double-#3x3 reduce, double-#3x3, pool, proj, stride).
# The original table's output-size column (not copied into PAPER.md) lists 576 channels for 4c
# and 4d, but their widths sum to 160+160+160+128 = 608 and 96+192+192+128 = 608, so 4e gives
# 1056, not 1024. We follow the widths, which is what gives the ~11.3M below.
# Parameters at 1000 classes, 224 px (measured, tests/test_inception.py): 11,285,224 with BN
# before every act (11,275,208 without BN), of which 1,025,000 is the classifier -- the ~11.3M of
# common reimplementations, not the ~13.6M Sec. 4.2 states. The paper does not say what its
# count includes. GoogLeNet-style auxiliary heads (1x1 conv 128, FC 1024, FC 1000) on 4a/4d would
# add ~3.2M each (14.5M with one, 17.7M with two), so they do not explain 13.6M exactly either.
BN_INCEPTION_MODULES = OrderedDict([
    ("3a", (64, 64, 64, 64, 96, "avg", 32, 1)),
    ("3b", (64, 64, 96, 64, 96, "avg", 64, 1)),
    ("3c", (0, 128, 160, 64, 96, "max", 0, 2)),
    ("4a", (224, 64, 96, 96, 128, "avg", 128, 1)),
    ("4b", (192, 96, 128, 96, 128, "avg", 128, 1)),
    ("4c", (160, 128, 160, 128, 160, "avg", 128, 1)),
    ("4d", (96, 128, 192, 160, 192, "avg", 128, 1)),
    ("4e", (0, 128, 192, 192, 256, "max", 0, 2)),
    ("5a", (352, 192, 320, 160, 224, "avg", 128, 1)),
    ("5b", (352, 192, 320, 192, 224, "max", 128, 1)),
])


class _InceptionNet(nn.Module):
    """What both networks share after their modules: global average pooling, optional dropout, a
    linear classifier, the init, and probe points (the stem's last nonlinearity, then each
    module's first branch's)."""

    def _finish(self, stem: OrderedDict, modules: OrderedDict, channels: int, num_classes: int,
                dropout: float, init_std: float | None, init: str) -> None:
        self.stem = nn.Sequential(stem)
        self.inception = nn.Sequential(modules)
        self.pool = nn.AdaptiveAvgPool2d(1)  # BN-Inception's 7x7 average pool at 224 px; any size here
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)
        _init(self, init_std, init)

    def probe_points(self) -> dict[str, nn.Module]:
        points = OrderedDict(stem=[m for m in self.stem.children() if hasattr(m, "act")][-1].act)
        points.update((name, m.probe_act()) for name, m in self.inception.named_children())
        return points

    def forward(self, x):
        x = self.pool(self.inception(self.stem(x))).flatten(1)
        return self.classifier(self.dropout(x))


class BNInception(_InceptionNet):
    """The Inception network of Sec. 4.2 (appendix table): BN-Inception / "Inception-v2".

    224 px stem: conv 7x7/2 64 -> maxpool 3x3/2 -> conv 1x1 64 -> conv 3x3 192 -> maxpool 3x3/2,
    so 3a-3c run at 28x28, 4a-4e at 14x14 and 5a-5b at 7x7 (3c and 4e halve the size inside the
    module). Then global average pooling, optional dropout and the only fully-connected layer,
    the classifier (Sec. 4.2: "no fully-connected layer but the final softmax").

    small_input=True swaps in a stem for 28-64 px images (CIFAR, padded Fashion-MNIST):
    conv 3x3/1 64 -> conv 3x3/1 192, no downsampling, so a 32 px image enters 3a at 32x32, 4a at
    16x16 and 5a at 8x8, the same 4x total reduction by 3c and 4e as at 224 px.

    lrn=True puts GoogLeNet's LRN where GoogLeNet had it: after the first conv (after its max
    pool, in the 224 px stem) and after the 3x3 conv. activation, placement, bn_* and noise
    (Santurkar et al.'s noise layer maker, bnrepro/nn/noise.py) apply to every conv.
    Parameter count at 1000 classes, 224 px: 11.29M, see BN_INCEPTION_MODULES.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, width_mult: float = 1.0,
                 small_input: bool = False, dropout: float = 0.0, lrn: bool = False,
                 activation: str = "relu", placement: str = "before", bn_impl: str = "torch",
                 bn_eps: float = 1e-5, bn_momentum: float | None = 0.1, init_std: float | None = None,
                 norm: str = "batch", norm_groups: int = 32, init: str = "auto", noise=None, bn_variant=None):
        super().__init__()
        unit = partial(conv_block, activation=activation, placement=placement, norm=norm, groups=norm_groups,
                       impl=bn_impl, eps=bn_eps, momentum=bn_momentum, noise=noise,
                       variant=bn_variant)
        w = partial(scale_width, width_mult=width_mult)
        stem = OrderedDict()
        if small_input:
            stem["conv1"] = unit(in_channels, w(64), 3)
            if lrn:
                stem["lrn1"] = _lrn()
        else:
            stem["conv1"] = unit(in_channels, w(64), 7, 2)
            stem["pool1"] = nn.MaxPool2d(3, 2, 1)
            if lrn:
                stem["lrn1"] = _lrn()
            stem["conv2_reduce"] = unit(w(64), w(64), 1)
        stem["conv2"] = unit(w(64), w(192), 3)
        if lrn:
            stem["lrn2"] = _lrn()
        if not small_input:
            stem["pool2"] = nn.MaxPool2d(3, 2, 1)
        c = w(192)
        modules = OrderedDict()
        for name, (n1, n3r, n3, ndr, nd, pool, proj, stride) in BN_INCEPTION_MODULES.items():
            modules[name] = InceptionModule(c, w(n1), w(n3r), w(n3), w(ndr), w(nd), pool, w(proj), stride, unit=unit)
            c = modules[name].out_channels
        self._finish(stem, modules, c, num_classes, dropout, init_std, conv_init(init, activation))


class SmallInceptionModule(nn.Module):
    """Zhang et al. (2017), appendix: concat(conv 1x1 c1, conv 3x3 c3)."""

    members = 1  # stacked members side by side (models/stacked_conv.py); 1 for a plain network

    def __init__(self, c_in: int, c1: int, c3: int, *, unit):
        super().__init__()
        self.branch1x1 = unit(c_in, c1, 1)
        self.branch3x3 = unit(c_in, c3, 3)
        self.out_channels = c1 + c3

    def probe_act(self) -> nn.Module:
        return self.branch1x1.act

    def forward(self, x):
        return concat([self.branch1x1(x), self.branch3x3(x)], self.members)


class DownsampleModule(nn.Module):
    """Zhang et al. (2017), appendix: concat(conv 3x3/2 c3, maxpool 3x3/2).

    Both without padding ("valid"), as in the common Keras reimplementations of this network
    (the paper's figure gives no padding): 32 -> 15 -> 7 px.
    """

    members = 1  # stacked members side by side (models/stacked_conv.py); 1 for a plain network

    def __init__(self, c_in: int, c3: int, *, unit):
        super().__init__()
        self.branch3x3 = unit(c_in, c3, 3, 2, 0)
        self.branch_pool = nn.MaxPool2d(3, 2)
        self.out_channels = c3 + c_in

    def probe_act(self) -> nn.Module:
        return self.branch3x3.act

    def forward(self, x):
        return concat([self.branch3x3(x), self.branch_pool(x)], self.members)


# (name, kind, widths) after the first conv, in order.
SMALL_INCEPTION_MODULES = [
    ("1a", "inception", (32, 32)), ("1b", "inception", (32, 48)), ("down1", "downsample", (80,)),
    ("2a", "inception", (112, 48)), ("2b", "inception", (96, 64)), ("2c", "inception", (80, 80)),
    ("2d", "inception", (48, 96)), ("down2", "downsample", (96,)),
    ("3a", "inception", (176, 160)), ("3b", "inception", (176, 160)),
]


class InceptionSmall(_InceptionNet):
    """The small Inception of Zhang, Bengio, Hardt, Recht & Vinyals, "Understanding deep learning
    requires rethinking generalization" (ICLR 2017), appendix (Figure 3 there):

    conv 3x3 96 -> Inception(32,32) -> Inception(32,48) -> Downsample(80) -> Inception(112,48)
    -> Inception(96,64) -> Inception(80,80) -> Inception(48,96) -> Downsample(96)
    -> Inception(176,160) -> Inception(176,160) -> global average pool -> [dropout] -> Linear.

    Every ConvModule is conv -> BN -> act, i.e. a `conv_block`. At 10 classes this has 1,649,402
    parameters without BN (conv biases, no BN), which is the count in that paper's Table 1;
    1,651,114 with BN before each act (no conv biases, BN's gamma and beta). It stands in for BNInception in the CIFAR-scale Figure 2
    (configs/experiment/fig2_cifar10.yaml). lrn=True adds LRN after the first conv.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0,
                 dropout: float = 0.0, lrn: bool = False, activation: str = "relu",
                 placement: str = "before", bn_impl: str = "torch", bn_eps: float = 1e-5,
                 bn_momentum: float | None = 0.1, init_std: float | None = None, norm: str = "batch",
                 norm_groups: int = 32, init: str = "auto", noise=None, bn_variant=None):
        super().__init__()
        unit = partial(conv_block, activation=activation, placement=placement, norm=norm, groups=norm_groups,
                       impl=bn_impl, eps=bn_eps, momentum=bn_momentum, noise=noise,
                       variant=bn_variant)
        w = partial(scale_width, width_mult=width_mult)
        stem = OrderedDict(conv1=unit(in_channels, w(96), 3))
        if lrn:
            stem["lrn1"] = _lrn()
        c = w(96)
        modules = OrderedDict()
        for name, kind, widths in SMALL_INCEPTION_MODULES:
            cls = SmallInceptionModule if kind == "inception" else DownsampleModule
            modules[name] = cls(c, *map(w, widths), unit=unit)
            c = modules[name].out_channels
        self._finish(stem, modules, c, num_classes, dropout, init_std, conv_init(init, activation))
