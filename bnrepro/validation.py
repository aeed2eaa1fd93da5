"""What a valid config is, beyond its types: per field a range (and finiteness: NaN and inf are
refused everywhere), and the rules between fields. `validate(cfg)` raises the first problem as one
paragraph (the key, its value, a valid example); a run calls it before it writes or reads anything.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from bnrepro.errors import BnreproError
from bnrepro.schema import Config, DataConfig, choice

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
    ("data.val_size", at_least(0), "5000 (0: no validation split)"),
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
    # issue 18 (bnrepro/nn/bn_variants.py): freeze_after is a fraction of trainer.max_steps; a ghost
    # batch is a count of examples (and divides trainer.batch_size: _cross_field); r_max >= 1 and
    # d_max >= 0 make BRN's clips intervals around BN's r = 1, d = 0; alpha mixes two statistics.
    ("bn.precise_examples", at_least(1), "2048"),
    ("bn.freeze_after", optional(Check(lambda v: _number(v) and 0 < v <= 1, "in (0, 1]")), "0.9 (null: never)"),
    ("bn.ghost_batch", optional(at_least(1)), "8 (null: the whole batch)"),
    ("bn.renorm_rmax", at_least(1.0), "3.0"),
    ("bn.renorm_dmax", at_least(0.0), "5.0"),
    ("bn.renorm_warmup", within(0, 1), "0.25"),
    ("bn.eval_weight", within(0, 1), "0.2 (0: off)"),
    # Santurkar et al.'s noisy BN (bnrepro/nn/noise.py): U(-mean_max, mean_max) and U(1, scale_max)
    # need their bounds in order; a negative width or standard deviation has no meaning.
    ("bn.noise.mean_max", at_least(0.0), "0.5"),
    ("bn.noise.scale_max", at_least(1.0), "1.25"),
    ("bn.noise.mean_width", at_least(0.0), "0.1"),
    ("bn.noise.scale_std", at_least(0.0), "0.1"),
    ("bn.noise.every", at_least(1), "1 (a new mean and scale shift every step)"),
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
    ("trainer.eval_per_decade", at_least(0), "20 (0: every trainer.eval_every steps)"),
    ("trainer.eval_gap_max", at_least(0), "1000 (0: log spacing alone)"),
    ("trainer.plateau_min_steps", at_least(0), "10000 (0: half of trainer.max_steps)"),
    ("probe.every", at_least(0), "200 (0 turns probing off)"),
    ("probe.batch_size", at_least(1), "500"),
    ("probe.percentiles", each(within(0, 100)), "[15,50,85]"),
    ("probe.unit", optional(at_least(0)), "0"),  # and below model.width for the MLP: _cross_field
    ("probe.histogram_every", at_least(0), "0"),
    ("probe.ics_every", at_least(0), "100 (0 turns it off)"),
    ("probe.landscape_every", at_least(0), "100 (0 turns it off)"),
    ("probe.landscape_steps", each(above(0.0)), "[0.5,1,2,4]"),  # multiples of the learning rate
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
    bn, batch_stats = cfg.bn, choice(cfg.bn.norm) in ("batch", "renorm") and choice(cfg.bn.placement) != "none"
    if choice(bn.population) != "ema" and not batch_stats and choice(bn.placement) != "none":
        yield (f"bn.population={choice(bn.population)} recomputes batch-norm statistics, but "
               f"bn.norm={choice(bn.norm)} keeps none; use bn.population=ema or bn.norm=batch.")
    options = [f"{key}={show(value)}" for key, value, off in (
        ("bn.ghost_batch", bn.ghost_batch, None), ("bn.freeze_after", bn.freeze_after, None),
        ("bn.eval_weight", bn.eval_weight, 0.0)) if value != off and not (key == "bn.freeze_after" and value == 1.0)]
    if options and not batch_stats:
        yield (f"{', '.join(options)} change(s) batch-norm statistics, but bn.norm={choice(bn.norm)} with "
               f"bn.placement={choice(bn.placement)} has none; use bn.norm=batch (or renorm) with "
               f"bn.placement=before, or drop {options[0].split('=')[0]}.")
    batch = cfg.trainer.batch_size
    if bn.ghost_batch is not None and (batch % bn.ghost_batch or bn.ghost_batch > batch):
        divisors = [d for d in (2, 4, 8, 16, 32) if batch % d == 0 and d <= batch]
        yield (f"bn.ghost_batch={bn.ghost_batch} does not divide trainer.batch_size={batch} into whole ghost "
               f"batches: every SGD batch must split into equal normalization batches. Use a divisor, e.g. "
               f"bn.ghost_batch={divisors[-1] if divisors else batch}, or bn.ghost_batch=null.")
    if bn.ghost_batch == 1 and cfg.model.name == "mlp":
        yield ("bn.ghost_batch=1 with model.name=mlp normalizes each unit over one value (var_B = 0, x_hat = 0): "
               "the layer would erase its input. Use bn.ghost_batch=2 or more for the MLP.")
    if bn.eval_weight and cfg.model.name == "mlp":
        yield (f"bn.eval_weight={bn.eval_weight} mixes the population statistics with each example's own, "
               f"per channel over its positions (Summers & Dinneen 2020); an MLP unit of one example is a "
               f"single value (its variance is 0), so it is not defined for model.name=mlp. Use a conv model "
               f"(model=inception_small) or bn.eval_weight=0.")
    if cfg.trainer.stop_at_plateau and not data.val_size:
        yield ("trainer.stop_at_plateau=true (configs/variant/inception.yaml sets it for the no-BN reference) stops "
               "when the validation curve has plateaued, but data.val_size=0 holds no validation split out. Set "
               "data.val_size=5000 (any number of held-out training examples), or trainer.stop_at_plateau=false to "
               "train the whole trainer.max_steps.")
    if cfg.trainer.keep_best_val and not data.val_size:
        yield ("trainer.keep_best_val=true keeps the weights of the best validation evaluation, but data.val_size=0 "
               "holds no validation split out, so there is none. Set data.val_size=5000 (any number of held-out "
               "training examples), or trainer.keep_best_val=false.")
    if cfg.seeds is not None and cfg.seed != 0:  # 0 is the default: not told apart from an unset seed
        yield (f"seed={cfg.seed} is set beside seeds={show(cfg.seeds)}, which trains the seeds of its list only, so "
               f"seed={cfg.seed} would be ignored. Drop seed={cfg.seed}, or add it to the list "
               f"(seeds={show(sorted({*cfg.seeds, cfg.seed}))}).")
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



def fit_to_data(cfg: Config, train_size: int, name: str) -> tuple[Config, str | None]:
    """`cfg` with what exceeds the loaded training split capped to it, and the note that says so
    (None when nothing was): bn.precise_examples beyond the split would pass over it again and
    again at every evaluation (180 passes took minutes per evaluation), for no truer statistics."""
    population = choice(cfg.bn.population) if choice(cfg.bn.placement) != "none" else "ema"
    if population != "precise" or cfg.bn.precise_examples <= train_size:
        return cfg, None
    note = (f"bn.precise_examples={cfg.bn.precise_examples} exceeds the {train_size} training examples of {name} "
            f"({cfg.bn.precise_examples / train_size:.1f} passes over them at every evaluation): PreciseBN uses all "
            f"{train_size}, once. Pass bn.precise_examples={train_size} or less to silence this note.")
    return dataclasses.replace(cfg, bn=dataclasses.replace(cfg.bn, precise_examples=train_size)), note
