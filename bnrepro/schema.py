"""The typed configuration of a run: one dataclass per config group, plain Python.

The library takes a `Config` (or one of its groups) and nothing else; it never sees Hydra or
OmegaConf. `bnrepro/config.py` registers these classes as Hydra's schema (`config_schema`, first
in `configs/train.yaml`'s defaults), so every value a YAML file or a command-line override sets is
checked against these types at composition: a typo'd key (`trainer.max_step=...`), a wrong type
(`trainer.max_steps=abc`) or an unknown choice (`model.activation=relu6`) fails before any data is
read, and `config.typed` refuses a key appended with `+` that the schema lacks. `validate` checks
what types cannot say (ranges, finiteness, rules between fields: `RULES` and `_cross_field`); the
runner calls it before it writes anything or reads any data.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterator, List, Optional

from bnrepro.errors import BnreproError

MISSING: Any = "???"  # OmegaConf's marker of a value the composition must provide (omegaconf.MISSING)


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
    none = "none"  # no normalization, wherever bn.placement says


class BNImpl(str, Enum):
    torch = "torch"  # nn.BatchNorm1d/2d
    paper = "paper"  # bnrepro.nn.bn.BatchNorm: Algorithm 1 with the paper's backward pass


class Population(str, Enum):
    ema = "ema"  # running averages kept during training (bn.momentum)
    # Algorithm 2: before every evaluation, recomputed as the average over bn.population_batches
    # training batches (own stream, training order untouched) with the m/(m-1) correction.
    average = "average"


@dataclass
class SyntheticOptions:
    """A learnable stand-in for smoke runs: fixed random class-mean images plus Gaussian noise."""

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
    reshuffle: bool = True  # a new order every epoch; false repeats the first (Sec. 4.2.1's shuffling knob)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)
    imagenet: ImageNetOptions = field(default_factory=ImageNetOptions)


@dataclass
class BNConfig:
    impl: BNImpl = BNImpl.torch
    placement: Placement = Placement.none
    norm: Norm = Norm.batch  # impl, momentum and population apply to norm=batch only
    groups: int = 32  # norm=group: at most this many groups per layer (the largest divisor of its width)
    eps: float = 1e-5
    # The one statement of the momentum convention, used everywhere in this suite: PyTorch's.
    # running = (1 - momentum) * running + momentum * batch_stat, so momentum weights the NEW
    # batch (Keras's 0.99 weights the OLD value: Keras 0.99 == ours 0.01). momentum=null gives
    # the cumulative average over all batches seen, which is what Algorithm 2 asks for.
    momentum: Optional[float] = 0.1
    population: Population = Population.ema
    population_batches: int = 100
    # Several processes (torchrun): true = SyncBatchNorm, statistics over the whole global batch;
    # false = each process normalizes over its own batch_size / world_size slice (bnrepro/training/distributed.py).
    sync: bool = False


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | bn_inception | inception_small
    activation: Activation = Activation.sigmoid
    init_std: Optional[float] = None  # Gaussian weight std; null keeps torch's default init
    # mlp
    depth: int = 3  # hidden layers
    width: int = 100
    # convolutional models (Sec. 4.2)
    width_mult: float = 1.0  # every layer's channel count scaled by this (rounded, at least 1)
    small_input: bool = False  # bn_inception: a stem for 28-64 px inputs instead of 224 px
    dropout: float = 0.0  # before the classifier (GoogLeNet: 0.4; Sec. 4.2.1 removes it)
    lrn: bool = False  # local response normalization in the stem (Sec. 4.2.1 removes it)


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
    eval_every: int = 500  # test accuracy on the held-out split every this many steps
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
    """Figure 1(b, c): percentiles of each hidden nonlinearity's input over training."""

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


def scaled_lr(rule, lr, ref_batch, batch_size) -> float:
    """`${scaled_lr:RULE,LR,REF,${trainer.batch_size}}`: LR at batch size REF, scaled to this batch size
    by RULE: linear (lr * B / REF, Goyal et al. 2017) or sqrt (lr * sqrt(B / REF))."""
    ratio = int(batch_size) / int(ref_batch)
    if rule == "linear":
        return float(lr) * ratio
    if rule == "sqrt":
        return float(lr) * ratio ** 0.5
    raise BnreproError(f"scaled_lr: rule must be linear or sqrt, got {rule!r}.")


def choice(option) -> str:
    """A config choice as a plain string, whether an Enum member or already a str."""
    return str(getattr(option, "value", option))


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


# --- validation: what a valid value is, field by field ---------------------------------------------
@dataclass(frozen=True)
class Check:
    """One rule for a value: `ok(value)` says whether it is valid, `need` says in words what is."""

    ok: Callable[[Any], bool]
    need: str


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(lo) -> str:
    """How a bound's type names the field's values: at_least(1) is for counts, above(0.0) for floats."""
    return "an integer" if isinstance(lo, int) else "a finite number"


def at_least(lo) -> Check:
    return Check(lambda v: _number(v) and v >= lo, f"{_kind(lo)} >= {lo}")


def above(lo) -> Check:
    return Check(lambda v: _number(v) and v > lo, f"{_kind(lo)} > {lo}")


def within(lo, hi, *, open_hi: bool = False) -> Check:
    return Check(lambda v: _number(v) and lo <= v and (v < hi if open_hi else v <= hi),
                 f"in [{lo}, {hi}{')' if open_hi else ']'}")


def optional(check: Check) -> Check:
    return Check(lambda v: v is None or check.ok(v), f"{check.need}, or null")


def each(check: Check, *, nonempty: bool = True) -> Check:
    return Check(lambda v: (bool(v) or not nonempty) and all(check.ok(x) for x in v),
                 f"a {'non-empty ' if nonempty else ''}list of values each {check.need}")


def one_of(*values: str) -> Check:
    return Check(lambda v: v in values, "one of " + ", ".join(values))


# What a valid value is, for every field whose type does not already say it all (enums, bools and
# free strings such as data.root or variant need no rule; tests/test_bad_input.py checks that every
# other field is listed). Each row: key, check, a valid example for the error message.
RULES: list[tuple[str, Check, str]] = [
    ("data.binarize_threshold", within(0, 1, open_hi=True), "0.5"),  # pixels are in [0, 1]
    ("data.pad_to", optional(at_least(1)), "32"),  # and at least the images' size: _cross_field
    ("data.test_size", optional(at_least(1)), "1000 (null: the whole held-out split)"),  # 0 would silently mean "all"
    ("data.augment.crop_padding", at_least(0), "4"),
    ("data.augment.jitter", within(0, 1, open_hi=True), "0.2"),  # contrast 1 +/- jitter stays positive
    ("data.augment.jitter_scale", at_least(0.0), "0.25"),
    ("data.synthetic.shape", Check(lambda v: len(v) == 3 and all(isinstance(x, int) and x >= 1 for x in v),
                                   "three positive sizes [channels, height, width]"), "[1,28,28]"),
    ("data.synthetic.num_classes", at_least(2), "10"),
    ("data.synthetic.train_size", at_least(1), "2000"),
    ("data.synthetic.test_size", at_least(1), "500"),
    ("data.synthetic.noise", at_least(0.0), "1.0"),
    ("data.imagenet.classes", optional(Check(lambda v: bool(v) and len(set(v)) == len(v), "a non-empty list of "
                                             "distinct class ids")), "[n01440764,n01443537]"),
    ("data.imagenet.num_classes", optional(at_least(1)), "100"),
    ("data.imagenet.images_per_class", optional(at_least(1)), "260"),
    ("data.imagenet.image_size", at_least(1), "224"),
    ("data.imagenet.resize_size", at_least(1), "256"),  # and at least image_size: _cross_field
    ("data.imagenet.num_workers", at_least(0), "4"),
    ("bn.groups", at_least(1), "32"),
    ("bn.eps", above(0.0), "1e-5"),
    ("bn.momentum", optional(within(0, 1)), "0.1 (null: the cumulative average)"),
    ("bn.population_batches", at_least(1), "100"),
    ("model.name", one_of("mlp", "bn_inception", "inception_small"), "mlp"),
    ("model.init_std", optional(above(0.0)), "0.1"),  # 0 would start every weight at zero
    ("model.depth", at_least(1), "3"),
    ("model.width", at_least(1), "100"),
    ("model.width_mult", above(0.0), "0.25"),
    ("model.dropout", within(0, 1, open_hi=True), "0.4"),
    ("optim.name", one_of("sgd"), "sgd"),
    ("optim.lr", above(0.0), "0.5"),
    ("optim.lr_scale", above(0.0), "5"),
    ("optim.momentum", within(0, 1, open_hi=True), "0.9"),
    ("optim.weight_decay", at_least(0.0), "4e-5"),
    ("optim.weight_decay_scale", at_least(0.0), "0.2"),
    ("optim.lr_decay", within(0, 1), "0.94"),  # a decay: the rate never grows
    ("optim.lr_decay_every", at_least(0), "0"),
    ("optim.lr_decay_speedup", above(0.0), "6"),
    *((f"trainer.{key}", at_least(1), example) for key, example in
      (("max_steps", "50000"), ("batch_size", "60"), ("eval_every", "500"), ("eval_batch_size", "10000"),
       ("log_every", "100"), ("checkpoint_keep", "2"))),
    # Only the string's form: whether that device exists is asked when the run starts.
    ("trainer.device", Check(lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None,
                             "auto, cpu, cuda or cuda:N"), "cpu"),
    ("trainer.threads", optional(at_least(1)), "4 (null: torch's default)"),
    ("trainer.checkpoint_every", at_least(0), "5000 (0: no checkpoints)"),
    ("probe.every", at_least(0), "200 (0 turns probing off)"),
    ("probe.batch_size", at_least(1), "500"),
    ("probe.percentiles", each(within(0, 100)), "[15,50,85]"),
    ("probe.unit", optional(at_least(0)), "0"),  # and below model.width for the MLP: _cross_field
    ("probe.histogram_every", at_least(0), "0"),
    ("seed", within(0, 2**32 - 1), "0"),  # numpy's seed range
    ("seeds", optional(Check(lambda v: bool(v) and len(set(v)) == len(v) and all(0 <= s < 2**32 for s in v),
                             "a non-empty list of distinct seeds in [0, 2**32)")), "[0,1,2,3,4]"),
]


def show(value) -> str:
    """A value as it is written on the command line: null, [1,2], cuda:0."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(v) for v in value) + "]"
    return choice(value)


def lookup(cfg: Config, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), cfg)


def image_size(data: DataConfig) -> int:
    """The side of the data set's images before padding (what data.pad_to must not be below)."""
    name = choice(data.name)
    if name == "synthetic":
        return max(data.synthetic.shape[-2:])
    if name == "imagenet_subset":
        return data.imagenet.image_size
    return 32 if name.startswith("cifar") else 28


def _cross_field(cfg: Config) -> Iterator[str]:
    """Rules between fields: each problem as one paragraph."""
    data, size = cfg.data, image_size(cfg.data)
    if data.pad_to is not None and data.pad_to < size:
        yield (f"data.pad_to={data.pad_to} is smaller than the {size}x{size} images of data={choice(data.name)}; "
               f"padding can only enlarge them: use data.pad_to={max(size, 32)} or data.pad_to=null.")
    if data.imagenet.resize_size < data.imagenet.image_size:
        yield (f"data.imagenet.resize_size={data.imagenet.resize_size} is below data.imagenet.image_size="
               f"{data.imagenet.image_size}: the center crop would pad instead of crop. Use e.g. "
               f"data.imagenet.resize_size={round(data.imagenet.image_size * 8 / 7)} (256 for 224).")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:
        yield ("optim.nesterov=true needs momentum, but optim.momentum=0.0; set e.g. optim.momentum=0.9, "
               "or optim.nesterov=false.")
    if choice(cfg.bn.population) == "average" and choice(cfg.bn.norm) != "batch" and choice(cfg.bn.placement) != "none":
        yield (f"bn.population=average recomputes batch-norm statistics (Algorithm 2), but "
               f"bn.norm={choice(cfg.bn.norm)} keeps none; use bn.population=ema or bn.norm=batch.")
    if cfg.model.name == "mlp" and cfg.probe.unit is not None and cfg.probe.unit >= cfg.model.width:
        yield (f"probe.unit={cfg.probe.unit} is not a unit of the MLP's layers of model.width={cfg.model.width} "
               f"units; use probe.unit={cfg.model.width // 2} (any of 0..{cfg.model.width - 1}) or probe.unit=null.")


def non_finite(obj, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every NaN or infinite float in `obj`, with its key: a safety net under RULES (a NaN learning rate
    would otherwise be recorded as the paper's divergence)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from non_finite(value, f"{prefix}{f.name}.")
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                yield f"{prefix}{f.name}", value


def problems(cfg: Config) -> list[str]:
    """Everything wrong with `cfg` that its types do not already refuse, one paragraph each."""
    examples = {key: example for key, _, example in RULES}  # every float field has a rule
    found = [f"{key}={show(value)} is not a finite number; give a finite value, e.g. {key}={examples[key]}."
             for key, value in non_finite(cfg)]
    for key, check, example in RULES:
        value = lookup(cfg, key)
        if not check.ok(value) and not any(p.startswith(f"{key}=") for p in found):
            found.append(f"{key}={show(value)} is not valid: {key} must be {check.need}, e.g. {key}={example}.")
    return found or list(_cross_field(cfg))  # cross-field rules assume every field is valid


def validate(cfg: Config) -> None:
    """Refuse a config that would fail later (after data was read) or, worse, run and be silently
    wrong (a negative probe.every turning probes off, a NaN learning rate recorded as a divergence).
    Raises BnreproError: the first problem found, one paragraph naming the key, its value and a valid
    example; its last sentence says how many more there are."""
    found = problems(cfg)
    if found:
        more = f" ({len(found) - 1} more problem(s) in this config: fix this one and rerun.)" if len(found) > 1 else ""
        raise BnreproError(found[0] + more)
