"""Data sets held whole on the device: MNIST, Fashion-MNIST, CIFAR-10/100 and `synthetic`.

They are small enough to live in (GPU) memory, so there is no per-sample DataLoader: an epoch
gathers the training split once in its shuffled order, and each step is then a view of it,
with no indexing kernel and no host sync.

Everything a run would trip over later is checked here, at load, by a few whole-tensor ops:
as many labels as images, labels in 0..num_classes-1 (out of range, cross_entropy would fail
mid-training), a non-empty test split, and finite inputs after preprocessing (a NaN or inf
pixel, or a constant channel under `standardize`, would otherwise show up as the paper's
"divergence"). Each refusal names the file, or the split and the setting, and the value found.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import CIFAR10
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import check_integrity

from bnrepro.data.locate import TITLES, TORCHVISION, corrupt, data_dir, expected_files, locate
from bnrepro.errors import BnreproError, DataCorruptError
from bnrepro.schema import DataConfig, SyntheticOptions, choice

Batch = tuple[Tensor, Tensor]

# The synthetic data set is part of an experiment's definition, so its seed is fixed: the run
# seed changes the initialization and the batch order, never the data.
SYNTHETIC_SEED = 20150211
# What torchvision's readers raise on a truncated file or a wrong magic number / header.
_READ_ERRORS = (AssertionError, RuntimeError, ValueError, TypeError, KeyError, EOFError, pickle.UnpicklingError)


@dataclass(frozen=True)
class Splits:
    x_train: Tensor  # float32 (N, C, H, W) on the device
    y_train: Tensor  # int64 (N,)
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    source: str
    notes: tuple[str, ...] = ()  # what the run should know about how its data was taken
    x_val: Tensor | None = None  # data.val_size examples held out of the training split (maybe none)
    y_val: Tensor | None = None


# The validation split is the same examples in every run, whatever its seed: a fixed permutation.
VAL_SEED = 2015


def hold_out(x: Tensor, y: Tensor, val_size: int, batch_size: int, where: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_val, y_val): `val_size` examples drawn once from the training split by
    a fixed permutation (VAL_SEED), the rest in their original order for training."""
    if batch_size > len(y):  # no split of any size would leave a batch: the batch size is what is wrong
        raise BnreproError(
            f"trainer.batch_size={batch_size} exceeds the {len(y)} training examples of {where}, so not one "
            f"batch could be drawn; choose trainer.batch_size={len(y) - val_size if len(y) > val_size else len(y)}"
            " or less" + (f" (data.val_size={val_size} of them are held out besides)." if val_size else "."))
    if val_size == 0:
        return x, y, x[:0], y[:0]
    if val_size > len(y) - batch_size:
        raise BnreproError(
            f"data.val_size={val_size} with trainer.batch_size={batch_size} leaves fewer than one batch of the "
            f"{len(y)} training examples of {where} to train on; choose data.val_size="
            f"{max(0, len(y) - batch_size) // 2} or less, or trainer.batch_size={max(1, len(y) - val_size)} or less.")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(VAL_SEED)).to(y.device)
    val, train = order[:val_size], order[val_size:].sort().values
    return x[train], y[train], x[val], y[val]


def load(cfg: DataConfig, device: torch.device, batch_size: int = 1) -> Splits:
    name = choice(cfg.name)
    splits = synthetic(cfg.synthetic) if name == "synthetic" else _read_torchvision(name, cfg, device)
    # Held out before preprocessing, so the statistics come from the training examples only.
    x_train, y_train, x_val, y_val = hold_out(splits.x_train.to(device), splits.y_train.to(device), cfg.val_size,
                                              batch_size, f"{name} ({_where(cfg, splits.source)})")
    x_train, held = preprocess(x_train, torch.cat([x_val, splits.x_test.to(device)]), cfg, splits.source)
    if cfg.pad_to:  # e.g. 28 -> 32 px with a zero border, so 32 px networks take MNIST-family images
        x_train, held = (pad_to(x, cfg.pad_to) for x in (x_train, held))
    x_val, x_test = held[:len(y_val)], held[len(y_val):]
    for split, x in (("training", x_train), ("validation", x_val), ("test", x_test)):
        check_finite(x, f"the {split} split of {name} ({_where(cfg, splits.source)})")
    notes = splits.notes
    n_test = cfg.test_size or len(x_test)  # a fixed prefix of the held-out split, for cheap CPU-scale evals
    if n_test > len(x_test):
        # Clamped rather than refused: the experiments' CPU-scale test_size (1000) must keep
        # working on smaller stand-ins; the note says what was evaluated.
        notes += (f"data.test_size={n_test} exceeds the {len(x_test)} examples of {name}'s test split "
                  f"({splits.source}): all {len(x_test)} are evaluated.",)
    return replace(splits, x_train=x_train, y_train=y_train, x_test=x_test[:n_test],
                   y_test=splits.y_test.to(device)[:n_test], notes=notes, x_val=x_val, y_val=y_val)


def check_finite(x: Tensor, what: str) -> None:
    """Refuse NaN or inf inputs. The sum is finite iff every element is (barring overflow of huge
    finite values, which the exact mask then clears): one reduction, ~20 ms for MNIST's 47M
    pixels on a CPU, where `isfinite(x).all()` takes ~25x as long; the counts only on failure."""
    if bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all()):
        return
    bad = ~torch.isfinite(x)
    nan = int(torch.isnan(x).sum())
    raise DataCorruptError(
        f"{what} holds {int(bad.sum())} non-finite input value(s) ({nan} NaN, {int(bad.sum()) - nan} inf) "
        f"in {int(bad.flatten(1).any(1).sum())} of its {len(x)} examples. Training on them would end "
        "as a false 'divergence', so nothing was trained. To fix it: repair or replace those files, "
        "or change the setting that produced the values.")


def _where(cfg: DataConfig, source: str) -> str:
    if source == "synthetic":
        return f"data.synthetic.noise={cfg.synthetic.noise}"
    return f"{source}, data.preprocess={choice(cfg.preprocess)}"


def pad_to(x: Tensor, size: int) -> Tensor:
    h, w = x.shape[-2:]
    if size < max(h, w):
        # bnrepro/validation.py refuses this before any data is read; a guard for direct callers.
        raise ValueError(f"data.pad_to={size} is smaller than the {h}x{w} images")
    top, left = (size - h) // 2, (size - w) // 2
    return torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top))


def preprocess(x_train: Tensor, x_test: Tensor, cfg: DataConfig, source: str = "the data") -> tuple[Tensor, Tensor]:
    kind = choice(cfg.preprocess)
    if kind == "standardize":
        # The training split's statistics for both splits: the test split must not leak into them.
        mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
        std = x_train.std(dim=(0, 2, 3), keepdim=True)
        if not bool((std > 0).all()):  # 0/0: a constant channel would become NaN everywhere
            constant = torch.nonzero(std.flatten() <= 0).flatten().tolist()
            raise DataCorruptError(
                f"data.preprocess=standardize cannot scale {source}: channel(s) {constant} of the "
                f"training split are constant (value {mean.flatten()[constant[0]].item():.4g} in every "
                "pixel, std 0), which would make every input NaN or inf. To fix it: check the files "
                "(a constant channel is usually a broken export), or use data.preprocess=none.")
        return (x_train - mean) / std, (x_test - mean) / std
    if kind == "binarize":
        return (x_train > cfg.binarize_threshold).float(), (x_test > cfg.binarize_threshold).float()
    return x_train, x_test


def synthetic(opts: SyntheticOptions) -> Splits:
    """Fixed random class-mean images plus Gaussian noise, squashed into [0, 1] like pixels; or, for
    kind=linear_teacher, x ~ N(0, I) labelled argmax(A x) with A a fixed N(0, 1) matrix, classes x inputs
    (Santurkar et al. 2018, Sec. 2.2: their deep linear network fits A x, a random Gaussian A, under a
    squared loss; this runner's loss is cross-entropy, so the same teacher gives labels instead)."""
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    shape = tuple(opts.shape)
    if choice(opts.kind) == "linear_teacher":
        a = torch.randn(opts.num_classes, math.prod(shape), generator=g)

        def teacher(n: int) -> tuple[Tensor, Tensor]:
            x = torch.randn(n, *shape, generator=g)
            return x, (x.flatten(1) @ a.T).argmax(1)
        return Splits(*teacher(opts.train_size), *teacher(opts.test_size), opts.num_classes, "synthetic")
    means = torch.randn(opts.num_classes, *shape, generator=g)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(opts.num_classes, (n,), generator=g)
        return torch.sigmoid(means[y] + opts.noise * torch.randn(n, *shape, generator=g)), y

    return Splits(*draw(opts.train_size), *draw(opts.test_size), opts.num_classes, "synthetic")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch `epoch`'s order: a pure function of (seed, epoch), so that a position
    (epoch, index) resumes exactly, with no generator state to save."""
    # SeedSequence mixes the pair, so neighbouring (seed, epoch) pairs give unrelated streams;
    # % 2**64 admits negative seeds.
    mixed = np.random.SeedSequence([seed % 2**64, epoch]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


class EpochBatches:
    """Infinite iterator of full training batches, reshuffled each epoch.

    The last incomplete batch of an epoch is dropped (BN needs full batches). `epoch` is the
    epoch of the latest batch, `index` how many of that epoch's batches have been drawn;
    `state_dict()` holds just these two, and `load_state_dict` continues with the next batch.
    Subclasses say how to turn the epoch's remaining indices into batches.
    """

    def __init__(self, size: int, batch_size: int, seed: int, reshuffle: bool = True):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        # reshuffle=False repeats epoch 0's order, so the same examples always share a batch:
        # the "less thorough shuffling" that Sec. 4.2.1 improved on (within-shard shuffling).
        self.reshuffle = reshuffle
        self.per_epoch = size // batch_size
        self.epoch, self.index = 0, 0
        self._batches: Iterator[Batch] | None = None

    def __iter__(self) -> EpochBatches:
        return self

    def __next__(self) -> Batch:
        if self.index == self.per_epoch:
            self.epoch, self.index, self._batches = self.epoch + 1, 0, None
        if self._batches is None:
            # Drawn on the CPU, so that a seed gives the same order on every device.
            order = torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch if self.reshuffle else 0))
            self._batches = self._epoch_batches(order[self.index * self.batch_size:self.per_epoch * self.batch_size])
        batch = next(self._batches)
        self.index += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index, self._batches = int(state["epoch"]), int(state["index"]), None

    def _epoch_batches(self, indices: Tensor) -> Iterator[Batch]:
        raise NotImplementedError


class TensorBatches(EpochBatches):
    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int, reshuffle: bool = True):
        super().__init__(len(y), batch_size, seed, reshuffle)
        self.x, self.y = x, y

    def _epoch_batches(self, indices: Tensor) -> Iterator[Batch]:
        # One gather for the whole epoch; its batches are then views.
        indices = indices.to(self.x.device)
        return zip(self.x[indices].split(self.batch_size), self.y[indices].split(self.batch_size))


def chunks(x: Tensor, y: Tensor, size: int) -> Iterator[Batch]:
    """One pass over a held-out split in order, the last chunk possibly smaller."""
    return zip(x.split(size), y.split(size))


def _read_torchvision(name: str, cfg: DataConfig, device: torch.device) -> Splits:
    cls = TORCHVISION[name]
    root = locate(name, cfg)
    directory = data_dir(cls, root)
    if cfg.verify_checksums:
        for file, md5 in expected_files(cls).items():
            if md5 and not check_integrity(str(directory / file), md5):
                raise corrupt(name, directory / file, f"does not match torchvision's md5 {md5} (truncated or altered)")
    train, test = (_open(name, _unchecked(cls), root, split) for split in (True, False))
    num_classes = len(train.classes)
    return Splits(*_tensors(name, cls, train, directory, num_classes, device),
                  *_tensors(name, cls, test, directory, num_classes, device), num_classes, str(directory))


def _unchecked(cls: type) -> type:
    # torchvision re-hashes every CIFAR file on each load and cannot tell a missing file from a
    # corrupt one; the checks above do both, file by file (or are skipped for tiny test files).
    if not issubclass(cls, CIFAR10):
        return cls
    return type(cls.__name__, (cls,), {
        "train_list": [[f, None] for f, _ in cls.train_list],
        "test_list": [[f, None] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _open(name: str, cls: type, root: Path, train: bool):
    try:
        return cls(str(root), train=train)
    except PermissionError as err:
        raise DataCorruptError(f"{TITLES[name]} file {err.filename} cannot be read by this user ({err}). "
                               "To fix it: make it readable (`chmod u+r` as its owner), or point data.root "
                               "at a readable copy.") from err
    except _READ_ERRORS as err:
        raise _culprit(name, cls, root, err) from err


def _culprit(name: str, cls: type, root: Path, err: Exception) -> Exception:
    """The error naming the first file that fails to read on its own (torchvision's does not)."""
    def read(path: Path) -> object:
        if not issubclass(cls, CIFAR10):
            return (read_image_file if "images" in path.name else read_label_file)(str(path))
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")

    for file in expected_files(cls):
        path = data_dir(cls, root) / file
        try:
            read(path)
        except _READ_ERRORS as file_err:
            problem = f"{type(file_err).__name__}: {file_err}"
            return corrupt(name, path, f"is truncated or not in the expected format ({problem})")
    return corrupt(name, data_dir(cls, root), f"holds files torchvision cannot read ({type(err).__name__}: {err})")


def _tensors(name: str, cls: type, dataset, directory: Path, num_classes: int, device: torch.device) -> Batch:
    x = torch.as_tensor(dataset.data)
    # MNIST's images are (N, H, W); CIFAR's are (N, H, W, C).
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    y = torch.as_tensor(dataset.targets, dtype=torch.int64)
    _check_split(name, cls, dataset.train, directory, x, y, num_classes)
    # Scaled on the device, so that what crosses to it is uint8: a quarter of the bytes.
    return x.contiguous().to(device).float().div_(255), y


def _check_split(name: str, cls: type, train: bool, directory: Path, x: Tensor, y: Tensor, num_classes: int) -> None:
    """Counts and label range of one split, read from `directory`; the culprit file on failure."""
    split = "training" if train else "test"
    files = _split_files(cls, train)
    if len(x) != len(y):
        counts = _counts(cls, directory, train)
        culprit = next((f for f, n, m in counts if n != m), counts[-1][0]).split(" / ")[-1]
        listed = "; ".join(f"{f}: {n} images, {m} labels" for f, n, m in counts)
        raise corrupt(name, directory / culprit, f"does not hold one label per image: the {split} split has "
                      f"{len(x)} images but {len(y)} labels ({listed})")
    if len(y) == 0:
        raise corrupt(name, directory / files[-1], f"holds no {split} examples")
    low, high = torch.aminmax(y)  # one pass; the mask below only on failure
    if low < 0 or high >= num_classes:
        bad = (y < 0) | (y >= num_classes)
        first = int(torch.nonzero(bad)[0])
        culprit = directory / _file_of(cls, directory, train, first, images=False)
        raise corrupt(name, culprit, f"holds {int(bad.sum())} label(s) outside 0..{num_classes - 1} "
                      f"(the first, {int(y[first])}, at {split} example {first}); {name} has {num_classes} classes")
    # CIFAR-like pickles may hold float pixels (IDX and CIFAR's own are uint8, always finite).
    if x.is_floating_point() and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        first = int(torch.nonzero(~torch.isfinite(x).flatten(1).all(1))[0])
        culprit = directory / _file_of(cls, directory, train, first, images=True)
        check_finite(x, f"{culprit} (the {split} split of {name}; the first bad example is {first})")


def _split_files(cls: type, train: bool) -> list[str]:
    if issubclass(cls, CIFAR10):
        return [f for f, _ in (cls.train_list if train else cls.test_list)]
    prefix = "train" if train else "t10k"
    return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]


def _counts(cls: type, directory: Path, train: bool) -> list[tuple[str, int, int]]:
    """(file, images, labels) per file of a split, read again (failure path only)."""
    if not issubclass(cls, CIFAR10):
        images, labels = _split_files(cls, train)
        return [(f"{images} / {labels}", len(read_image_file(str(directory / images))),
                 len(read_label_file(str(directory / labels))))]
    counts = []
    for f in _split_files(cls, train):
        with open(directory / f, "rb") as file:
            entry = pickle.load(file, encoding="latin1")
        counts.append((f, len(entry["data"]), len(entry.get("labels", entry.get("fine_labels", [])))))
    return counts


def _file_of(cls: type, directory: Path, train: bool, index: int, images: bool) -> str:
    """The file holding example `index` of a split (its images or labels file, for the MNIST family)."""
    if not issubclass(cls, CIFAR10):
        return _split_files(cls, train)[0 if images else 1]
    for f, _, labels in _counts(cls, directory, train):
        if index < labels:
            return f
        index -= labels
    return _split_files(cls, train)[-1]


class IndexBatches(EpochBatches):
    """One seed's training batches as index tensors, in exactly `TensorBatches`'s order."""

    def __init__(self, size: int, batch_size: int, seed: int, reshuffle: bool, device: torch.device):
        super().__init__(size, batch_size, seed, reshuffle)
        self.device = device

    def _epoch_batches(self, indices: Tensor) -> Iterator[Tensor]:
        return iter(indices.to(self.device).split(self.batch_size))


class StackedBatches:
    """Several seeds' next batches at once, gathered from a resident training split: x (S, N, C, H, W),
    y (S, N), each member's batches in its single run's order (`TensorBatches` with its seed).

    The gather writes into the same buffer each step (a step's batch is dead by the next step).
    Every member has the same split and batch size, so all stand at the same (epoch, index)."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seeds: list[int], reshuffle: bool = True):
        self.x, self.y, self.example = x.flatten(1), y, tuple(x.shape[1:])
        self.members = [IndexBatches(len(y), batch_size, s, reshuffle, y.device) for s in seeds]
        self.buffer = self.x.new_empty(len(seeds) * batch_size, self.x.size(1))
        self.shape = (len(seeds), batch_size)

    def __iter__(self) -> "StackedBatches":
        return self

    def __next__(self) -> Batch:
        index = torch.cat([next(b) for b in self.members])
        x = torch.index_select(self.x, 0, index, out=self.buffer)
        return x.view(*self.shape, *self.example), self.y[index].view(self.shape)

    @property
    def epoch(self) -> int:
        return self.members[0].epoch

    def state_dict(self) -> dict[str, int]:
        return self.members[0].state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        for member in self.members:
            member.load_state_dict(state)
