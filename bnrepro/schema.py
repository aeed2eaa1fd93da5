"""The typed configuration of a run: one dataclass per config group, plain Python.

The library takes a `Config` (or one of its groups) and nothing else; it never sees Hydra or
OmegaConf. `bnrepro/config.py` registers these classes as Hydra's schema (`config_schema`, first
in `configs/train.yaml`'s defaults), so every value a YAML file or a command-line override sets is
checked against these types at composition: a typo'd key (`trainer.max_step=...`), a wrong type
(`trainer.max_steps=abc`) or an unknown choice (`model.activation=relu6`) fails before any data is
read, and `config.typed` refuses a key appended with `+` that the schema lacks.
`bnrepro/validation.py` checks what types cannot say (ranges, finiteness, rules between fields);
a run calls it before it writes anything or reads any data.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from bnrepro.choices import (Activation, BNImpl, Dataset, DecayParams, Init, Norm, Placement, Population,  # noqa: F401
                             Preprocess, ProbeMode, Progress, SyntheticKind, choice)
from bnrepro.errors import BnreproError

MISSING: Any = "???"  # OmegaConf's marker of a value the composition must provide (omegaconf.MISSING)


@dataclass
class SyntheticOptions:
    """A learnable stand-in for smoke runs: fixed random class-mean images plus Gaussian noise; or
    (kind=linear_teacher) Gaussian inputs labelled by a fixed random linear map (bnrepro/data/tensors.py)."""

    kind: SyntheticKind = SyntheticKind.class_means
    shape: List[int] = field(default_factory=lambda: [1, 28, 28])
    num_classes: int = 10
    train_size: int = 2000
    test_size: int = 500
    noise: float = 1.0


@dataclass
class ImageNetOptions:
    """Deterministic class subset of an ImageFolder tree (ROOT/imagenet/{train,val}/<wnid>/)."""

    classes: Optional[List[str]] = None  # explicit class ids (wnids); wins over num_classes
    num_classes: Optional[int] = 100  # else: this many, evenly spaced over the sorted class ids
    images_per_class: Optional[int] = None  # training images per class (first N, sorted); None = all
    image_size: int = 224
    resize_size: int = 256  # validation: resize to this, then one center crop of image_size
    num_workers: int = 4


@dataclass
class AugmentOptions:
    """Training-time augmentation of whole batches on the device (bnrepro/data/augment.py).

    An experiment sets the base amounts; a variant scales the photometric one (Sec. 4.2.1:
    "reduce the photometric distortions")."""

    crop_padding: int = 0  # random crops of the original size from a zero-padded image; 0 = off
    flip: bool = False  # random horizontal flips
    jitter: float = 0.0  # photometric distortion: random brightness and contrast of +/- this much
    jitter_scale: float = 1.0  # the variant's factor on `jitter`


@dataclass
class DataConfig:
    name: Dataset = MISSING
    # Where the files are looked for first. BNREPRO_DATA overrides the default; relative paths are
    # taken from the directory the command was started in, never from the run directory.
    root: str = "${oc.env:BNREPRO_DATA,data}"
    download: bool = False  # torchvision's download, when nothing is found locally
    verify_checksums: bool = True  # torchvision's md5 checks (CIFAR); tests with tiny files turn it off
    preprocess: Preprocess = Preprocess.none
    binarize_threshold: float = 0.5
    pad_to: Optional[int] = None  # zero-pad images to this size (Fashion-MNIST 28 -> 32 for the Inceptions)
    test_size: Optional[int] = None  # evaluate on this many held-out examples (a fixed prefix); null = all
    # Examples held out of the training split as a validation split (the same fixed, seeded choice
    # in every run, never trained on); evaluated beside the test split and logged as `val/...`.
    # What an experiment chooses (rates, thresholds, plateaus) is read from it, never from test.
    val_size: int = 0
    reshuffle: bool = True  # a new order every epoch; false repeats the first (Sec. 4.2.1's shuffling knob)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)
    imagenet: ImageNetOptions = field(default_factory=ImageNetOptions)


@dataclass
class NoiseOptions:
    """Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?", Sec. 2.1 and
    Algorithm 1 ("noisy" BatchNorm): after each normalization layer (without one: where it would be),
    every unit j gets a time-varying shift of its distribution, so that the next layer's input is
    *less* stable than without BN. Per unit, every `every` steps: mu_t ~ U(-mean_max, mean_max),
    sigma_t ~ U(1, scale_max); then per example i: m ~ U(mu_t - mean_width, mu_t + mean_width),
    s ~ N(sigma_t, scale_std), a <- s * a + m. Training only; the defaults are the paper's
    (bnrepro/nn/noise.py)."""

    enabled: bool = False
    mean_max: float = 0.5  # the paper's n_mu
    scale_max: float = 1.25  # n_sigma
    mean_width: float = 0.1  # r_mu
    scale_std: float = 0.1  # r_sigma, a standard deviation
    # Steps between draws of (mu_t, sigma_t); 1 (the paper's "changes at each time step") redraws every step.
    every: int = 1


@dataclass
class BNConfig:
    impl: BNImpl = BNImpl.torch
    placement: Placement = Placement.none
    norm: Norm = Norm.batch  # momentum, population and the statistics options below: norm=batch|renorm only
    groups: int = 32  # norm=group: at most this many groups per layer (the largest divisor of its width)
    eps: float = 1e-5
    # The one statement of the momentum convention, used everywhere in this suite: PyTorch's.
    # running = (1 - momentum) * running + momentum * batch_stat, so momentum weights the NEW
    # batch (Keras's 0.99 weights the OLD value: Keras 0.99 == ours 0.01). momentum=null gives
    # the cumulative average over all batches seen, which is what Algorithm 2 asks for.
    momentum: Optional[float] = 0.1
    population: Population = Population.ema
    population_batches: int = 100
    # population=precise: this many training examples (rounded up to whole trainer.batch_size batches);
    # Wu & Johnson 2021 find 10^3-10^4 enough for ImageNet.
    precise_examples: int = 2048
    # FrozenBN (Wu & Johnson 2021, Sec. 4.2): from round(freeze_after * trainer.max_steps) steps on, BN
    # normalizes with its population statistics in training too and stops updating them (gamma and
    # beta keep training); with population=average|precise they are recomputed once at that step.
    # null (or 1.0) = never.
    freeze_after: Optional[float] = None
    # Ghost batch normalization (Hoffer et al. 2017; Summers & Dinneen 2020, Sec. 2): training
    # normalizes over sub-batches of this many examples of the SGD batch (it must divide
    # trainer.batch_size); the running statistics move once per ghost batch. null = the whole batch.
    ghost_batch: Optional[int] = None
    # norm=renorm (Ioffe 2017, Sec. 3-4): the clips' final values, r_max 1 -> renorm_rmax and d_max
    # 0 -> renorm_dmax linearly over the first renorm_warmup of trainer.max_steps (the paper: r_max
    # 1 -> 3, d_max 0 -> 5 over the first part of its ImageNet run; here scaled to the run's length).
    renorm_rmax: float = 3.0
    renorm_dmax: float = 5.0
    renorm_warmup: float = 0.25
    # Inference example weighing (Summers & Dinneen 2020, Sec. 3.3): at inference normalize with
    # (1 - alpha) * population + alpha * the example's own per-channel mean and variance over its
    # positions; conv models only (a fully-connected unit of one example is one value). 0 = off.
    eval_weight: float = 0.0
    # Several processes (torchrun): true = SyncBatchNorm, statistics over the whole global batch;
    # false = each process normalizes over its own batch_size / world_size slice (bnrepro/training/distributed.py).
    sync: bool = False
    noise: NoiseOptions = field(default_factory=NoiseOptions)  # Santurkar et al.'s noisy BN: off by default


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | bn_inception | inception_small
    activation: Activation = Activation.sigmoid
    init_std: Optional[float] = None  # Gaussian weight std; null: torch's default (mlp), `init` (conv nets)
    # without init_std: he | glorot | lecun | auto (conv nets: he for relu, glorot otherwise; mlp: torch's default)
    init: Init = Init.auto
    # mlp
    depth: int = 3  # hidden layers
    width: int = 100
    # convolutional models (Sec. 4.2)
    width_mult: float = 1.0  # every layer's channel count scaled by this (rounded, at least 1)
    small_input: bool = False  # bn_inception: a stem for 28-64 px inputs instead of 224 px
    dropout: float = 0.0  # before the classifier (GoogLeNet: 0.4; Sec. 4.2.1 removes it)
    lrn: bool = False  # local response normalization in the stem (Sec. 4.2.1 removes it)


@dataclass
class OptimConfig:
    """SGD. An experiment sets the base values; a variant sets the *_scale / speedup factors
    (Sec. 4.2.1: learning rate x5 or x30, weight decay / 5, learning-rate decay 6x faster)."""

    name: str = "sgd"
    lr: float = MISSING  # the base learning rate of the data set / experiment
    lr_scale: float = 1.0  # the variant's factor: lr = lr * lr_scale
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    weight_decay_scale: float = 1.0  # the variant's factor on weight_decay
    # Which parameters weight decay applies to. The paper says only "L2 weight regularization"; `all`
    # keeps what every committed result was trained with (torch's default), `weights` the usual reading.
    weight_decay_params: DecayParams = DecayParams.all
    # The Inception recipe's step-wise exponential decay: lr * lr_decay ** floor(step / interval),
    # interval = lr_decay_every / lr_decay_speedup. lr_decay_every=0 keeps the rate constant.
    lr_decay: float = 1.0
    lr_decay_every: int = 0
    lr_decay_speedup: float = 1.0


@dataclass
class TrainerConfig:
    max_steps: int = 50_000
    batch_size: int = 60
    eval_every: int = 500  # test (and val) accuracy every this many steps
    # > 0: log-spaced evaluations instead, this many per decade from step eval_every on (step
    # eval_every * 10 ** (k / eval_per_decade)), so that "steps to a threshold" is resolved to the same
    # fraction of its value early and late (20 per decade: consecutive evaluations 12% apart).
    eval_per_decade: int = 0
    # > 0, with eval_per_decade: also every this many steps, so that late evaluations are never
    # further apart (a figure over linear steps keeps its resolution at the end; 0: log spacing alone).
    eval_gap_max: int = 0
    # At the end, each member's class probabilities on the test split to test_probs.csv (Figure 4's
    # ensemble averages them: scripts/table_fig4.py).
    save_predictions: bool = False
    # Stop once validation accuracy has plateaued, by Figure 3's rule (bnrepro.analysis.stats.plateau_gain:
    # the run's best rose < 0.3 points over the last 25% of the steps; each stacked member on its own curve,
    # frozen once stopped), checked at each evaluation from step plateau_min_steps on (0: half of max_steps;
    # checked too early, a stall mid-climb passes the rule: configs/experiment/fig2_fashion_mnist.yaml says
    # where it does). The reference a claim is measured against
    # trains to its plateau this way (configs/variant/inception.yaml); needs data.val_size > 0.
    stop_at_plateau: bool = False
    plateau_min_steps: int = 0
    # Protocol v2 (issue 31; configs/experiment/fig2_v2_fashion_mnist.yaml), both off by default so every
    # earlier run is unchanged (bnrepro/training/final_eval.py):
    # keep each member's weights and BN statistics of its best validation evaluation (in memory and in
    # the checkpoints), written to best_val.pt in its run directory when training ends; needs data.val_size > 0.
    keep_best_val: bool = False
    # After training, evaluate the final model (and, with keep_best_val, the best-validation one) on the
    # WHOLE test split, whatever data.test_size evaluated during training: full_test.json; with
    # save_predictions, test_probs.csv then holds the whole split (test_probs_best_val.csv beside it).
    final_test: bool = False
    eval_batch_size: int = 10_000
    log_every: int = 100  # train loss is averaged on the device and read back this often
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: Progress = Progress.auto  # auto (bar on a terminal, lines otherwise, quiet under CI) | bar | lines | none
    threads: Optional[int] = None  # torch.set_num_threads; null keeps torch's default
    deterministic: bool = False
    # bnrepro/training/checkpoint.py: a checkpoint every N steps (0 = none), the newest K kept; rerunning into
    # the same run directory resumes from the newest (resume=false starts over).
    checkpoint_every: int = 5000
    checkpoint_keep: int = 2
    resume: bool = True
    # GPU speed knobs, all off in the `faithful` preset (configs/trainer/faithful.yaml):
    channels_last: bool = False  # NHWC memory format for conv models
    amp: bool = False  # bf16 autocast (for GPUs; runs on CPUs too); BN's parameters and statistics stay float32
    compile: bool = False  # torch.compile the model
    cudnn_benchmark: bool = False


@dataclass
class ProbeConfig:
    """Figure 1(b, c): percentiles of each hidden nonlinearity's input over training; and, beyond the
    paper, the measurements of why BN helps (ics_every, landscape_every)."""

    every: int = 200  # steps between probes; 0 turns probing off
    batch_size: int = 500  # the fixed probe batch: the first examples of the held-out split
    percentiles: List[float] = field(default_factory=lambda: [15.0, 50.0, 85.0])
    unit: Optional[int] = None  # the "typical" unit; null = the median unit at the first probe
    # train: BN normalizes with the probe batch's statistics, as the training network does (the
    # paper plots the training network); eval: BN uses its population statistics.
    mode: ProbeMode = ProbeMode.train
    histogram_every: int = 0  # a TensorBoard histogram of each layer every N probes; 0 = never
    # Also the percentiles of the normalization layer's output ("<layer>/norm_unit_p15", ...), the
    # next layer's input: with BN after a ReLU, the skew the placement debate is about (seed 001).
    norm_output: bool = False
    # Why BN helps, measured on the training batch of the step, before its update
    # (bnrepro/tracking/landscape.py; Santurkar et al. 2018), at step 1 (the initial weights) and
    # every N steps; 0 turns each off:
    # gradient-based internal covariate shift per layer (Def. 2.1): ||G - G'|| and cos(G, G').
    ics_every: int = 0
    # the landscape along the gradient (Sec. 3.2, Fig. 4): loss range, gradient predictiveness,
    # effective beta-smoothness, at steps of landscape_steps x the learning rate.
    landscape_every: int = 0
    landscape_steps: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    bn: BNConfig = field(default_factory=BNConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    variant: str = MISSING  # set by the chosen configs/variant/*.yaml
    experiment: Optional[str] = None  # set by the chosen configs/experiment/*.yaml
    seed: int = 0
    # Train these seeds at once as one stacked model, each into <run dir>/seed=<s>/ (bnrepro/models/stacked.py).
    seeds: Optional[List[int]] = None


def steps_for(examples, batch_size) -> int:
    """`${steps_for:EXAMPLES,${trainer.batch_size}}`: the steps that show the network about EXAMPLES
    training examples at this batch size (at least 1), for schedules fixed in examples, not steps."""
    return max(1, round(int(examples) / int(batch_size)))


def schedule_steps(steps, speedup) -> int:
    """`${schedule_steps:STEPS,${optim.lr_decay_speedup}}`: a budget of STEPS for the base schedule,
    shortened by the factor by which a variant accelerates its learning-rate decay (Sec. 4.2.1's
    6x), so that every variant runs its own schedule to the same point of decay."""
    return max(1, round(int(steps) / float(speedup)))


def scaled_lr(rule, lr, ref_batch, batch_size) -> float:
    """`${scaled_lr:RULE,LR,REF,${trainer.batch_size}}`: LR at batch size REF, scaled to this batch size
    by RULE: linear (lr * B / REF, Goyal et al. 2017) or sqrt (lr * sqrt(B / REF))."""
    ratio = int(batch_size) / int(ref_batch)
    if rule == "linear":
        return float(lr) * ratio
    if rule == "sqrt":
        return float(lr) * ratio ** 0.5
    raise BnreproError(f"scaled_lr: rule must be linear or sqrt, got {rule!r}.")


def plain(obj) -> Any:
    """A config (or any part of it) as plain dicts, lists and scalars: enums as their values.
    What config.yaml, checkpoints and TensorBoard's HParams hold."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj.value if isinstance(obj, Enum) else obj


def member_seeds(cfg: Config) -> list[int]:
    """The seeds one process trains: `seeds` (a stack, bnrepro/models/stacked.py) or `[seed]`."""
    return list(cfg.seeds) if cfg.seeds is not None else [cfg.seed]
