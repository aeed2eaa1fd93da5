"""The choices of the typed configuration (`bnrepro/schema.py` uses and re-exports them): one Enum
per option that takes one of a fixed set of values, so that Hydra refuses any other when it
composes the config (`model.activation=relu6`).
"""
from __future__ import annotations

from enum import Enum


class Dataset(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagenet_subset = "imagenet_subset"
    synthetic = "synthetic"


class Preprocess(str, Enum):
    none = "none"  # pixels scaled to [0, 1]
    standardize = "standardize"  # per channel, with the training split's mean and std
    binarize = "binarize"  # Sec. 4.1 says "binary" MNIST inputs: pixel > threshold -> 1


class Activation(str, Enum):
    sigmoid = "sigmoid"
    relu = "relu"
    tanh = "tanh"
    # none at all: Santurkar et al. 2018's deep linear network (Sec. 2.2, Fig. 3; configs/model/deep_linear.yaml)
    identity = "identity"


class SyntheticKind(str, Enum):
    """What data=synthetic draws (bnrepro/data/tensors.py:synthetic)."""

    class_means = "class_means"  # fixed random class-mean images plus Gaussian noise (smoke runs, tests)
    # x ~ N(0, I), label argmax(A x) for a fixed random Gaussian A: Santurkar et al.'s DLN data
    # (x ~ N(0, I), target A x, squared loss) made a classification task for this runner's loss
    linear_teacher = "linear_teacher"


class Init(str, Enum):
    """The weight init when model.init_std is null (conv nets: bnrepro/models/inception.py:_init;
    the MLP: bnrepro/models/mlp.py:gaussian_std). Biases start at zero for all but the MLP's auto."""

    # conv nets: matched to the nonlinearity, he for relu, glorot for sigmoid and tanh;
    # the MLP: torch's default (uniform, bound 1/sqrt(fan_in)), what its committed results used
    auto = "auto"
    he = "he"  # N(0, 2/fan_in)
    glorot = "glorot"  # N(0, 2/(fan_in + fan_out))
    lecun = "lecun"  # N(0, 1/fan_in): Figure 1's sensitivity map's 1/sqrt(fan_in) point


class Placement(str, Enum):
    none = "none"  # no BN (the paper's baselines)
    before = "before"  # z = g(BN(Wu)), the paper's choice (Sec. 3.2)
    after = "after"  # z = BN(g(Wu)), the alternative the seeds discuss


class Norm(str, Enum):
    """The normalization in BN's slot (bnrepro/nn/norms.py says what each pools, for MLP and conv features)."""

    batch = "batch"  # the paper's BN (bn.impl picks torch's or ours)
    layer = "layer"  # per example, over all of a layer's features
    group = "group"  # per example, over groups of features (bn.groups)
    instance = "instance"  # per example and channel, over positions (conv models only)
    # Batch Renormalization (Ioffe 2017): BN whose training output is corrected towards the
    # population statistics by r, d (bn.renorm_*; bnrepro/nn/bn_variants.py); inference is BN's.
    renorm = "renorm"
    none = "none"  # no normalization, wherever bn.placement says


class BNImpl(str, Enum):
    torch = "torch"  # nn.BatchNorm1d/2d
    paper = "paper"  # bnrepro.nn.bn.BatchNorm: Algorithm 1 with the paper's backward pass


class Population(str, Enum):
    ema = "ema"  # running averages kept during training (bn.momentum)
    # Algorithm 2: before every evaluation, recomputed as the average over bn.population_batches
    # training batches (own stream, training order untouched) with the m/(m-1) correction.
    average = "average"
    # PreciseBN (Wu & Johnson 2021, Sec. 3.1): before every evaluation, the true mean and variance of
    # each BN's input over bn.precise_examples training examples, weights frozen (E[x], E[x^2] - E[x]^2;
    # bnrepro/nn/bn_variants.py, recompute_precise_stats, says how it differs from `average`).
    precise = "precise"


class Progress(str, Enum):
    auto = "auto"  # a bar on a terminal, lines otherwise, nothing under CI
    bar = "bar"
    lines = "lines"
    none = "none"


class ProbeMode(str, Enum):
    train = "train"  # BN normalizes with the probe batch's statistics, as the training network does
    eval = "eval"  # BN uses its population statistics


class DecayParams(str, Enum):
    all = "all"  # every parameter: weights, biases, BN's gamma and beta (torch.optim.SGD's default)
    # only the weights of linear and conv layers (tensors of 2+ dimensions); biases and BN's
    # gamma/beta are not decayed ("no bias decay", He et al. 2019, "Bag of Tricks", Sec. 3.1)
    weights = "weights"


def choice(option) -> str:
    """A config choice as a plain string, whether an Enum member or already a str."""
    return str(getattr(option, "value", option))
