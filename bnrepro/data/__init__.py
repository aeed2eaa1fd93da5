"""The data layer: `build_data(data_config, ...)` gives any data set as a `DataBundle`.

MNIST, Fashion-MNIST, CIFAR-10/100 and `synthetic` are held whole on the device as tensors
(`tensors.py`); ImageNet subsets are read from ImageFolder trees by a DataLoader
(`imagenet.py`). Either way, training draws from `bundle.train_batches(seed or seeds)`, an infinite
iterator of full batches (of one run, or of several seeds' runs at once) whose position (`epoch`, `index`, `state_dict()`) resumes exactly,
and evaluation makes one pass over `bundle.test_batches()`. Where files are looked for, and
what is said when they are missing or corrupt, is `locate.py`.

Nothing is silently wrong: every check of the data (complete sets from one place, labels in
range, finite inputs, readable images) runs here, before training starts, and fails as one
`BnreproError` paragraph naming the file or setting. What is adjusted rather than refused (a
`data.test_size` beyond the held-out split) is said in `bundle.notes`, also printed on stderr.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import torch
from bnrepro.data import imagenet, tensors
from bnrepro.data.augment import AugmentedBatches, BatchAugment, StackedAugmentedBatches
from bnrepro.data.tensors import Batch, EpochBatches
from bnrepro.errors import BnreproError
from bnrepro.schema import AugmentOptions, DataConfig, choice

__all__ = ["DataBundle", "EpochBatches", "build_data"]


@dataclass(frozen=True)
class DataBundle:
    name: str
    input_shape: tuple[int, ...]  # one example, (C, H, W)
    num_classes: int
    train_size: int
    test_size: int
    source: str  # the directory the files were read from, or "synthetic"
    device: torch.device
    augment: AugmentOptions
    order: Callable[[int], EpochBatches]  # seed -> that seed's infinite iterator of (x, y) on the device
    stacked: Callable[[list[int]], tensors.StackedBatches] | None  # seeds -> all their batches at once
    test_batches: Callable[[], Iterator[Batch]]  # one pass over the held-out split, on the device
    notes: tuple[str, ...] = ()  # how the data differs from what was asked, where it was adjusted
    val_size: int = 0  # data.val_size examples held out of the training split (train_size excludes them)
    val_batches: Callable[[], Iterator[Batch]] | None = None  # one pass over them, when val_size > 0

    def train_batches(self, seed: int | list[int], augment: bool = True):
        """The training batches of one run (a seed: (N, C, H, W)) or of a stack of runs (a list of
        seeds: (S, N, C, H, W) from resident data, each seed's own order), augmented as
        `data.augment` says, each run by its own seed. Either resumes exactly from its `state_dict()`."""
        if isinstance(seed, list):
            if self.stacked is None:
                raise BnreproError(f"Several seeds at once (seeds=[...]) need a data set held whole on the device; "
                                   f"{self.name} is read from files by a DataLoader. Sweep seed=0,1,... with -m instead.")
            augments = [BatchAugment.from_config(self.augment, s, self.device) for s in seed] if augment else [None]
            stacked = self.stacked(seed)
            return StackedAugmentedBatches(stacked, augments) if augments[0] else stacked
        aug = BatchAugment.from_config(self.augment, seed, self.device) if augment else None
        batches = self.order(seed)
        return AugmentedBatches(batches, aug) if aug else batches


def build_data(cfg: DataConfig, batch_size: int, eval_batch_size: int, device: torch.device | str) -> DataBundle:
    name = choice(cfg.name)
    device = torch.device(device)
    if name == "imagenet_subset":
        if cfg.val_size:
            raise BnreproError(
                f"data.val_size={cfg.val_size} is not supported for imagenet_subset yet: its held-out split is "
                "ImageNet's own validation set. Hold out training classes' images in the folder tree instead, "
                "or use data.val_size=0.")
        train, val, source = imagenet.load(cfg)
        size, workers = cfg.imagenet.image_size, cfg.imagenet.num_workers
        notes = () if cfg.test_size is None else (
            f"data.test_size={cfg.test_size} does not apply to imagenet_subset: all {len(val)} validation "
            "images of the subset are evaluated.",)
        bundle = DataBundle(
            name, (3, size, size), len(train.classes), len(train), len(val), source, device, cfg.augment,
            order=partial(imagenet.LoaderBatches, train, batch_size, device, workers, reshuffle=cfg.reshuffle),
            stacked=None,
            test_batches=partial(imagenet.val_batches, val, eval_batch_size, device, workers),
            notes=notes,
        )
    else:
        splits = tensors.load(cfg, device, batch_size)
        bundle = DataBundle(
            name, tuple(splits.x_train.shape[1:]), splits.num_classes, len(splits.y_train),
            len(splits.y_test), splits.source, device, cfg.augment,
            order=partial(tensors.TensorBatches, splits.x_train, splits.y_train, batch_size, reshuffle=cfg.reshuffle),
            stacked=partial(tensors.StackedBatches, splits.x_train, splits.y_train, batch_size, reshuffle=cfg.reshuffle),
            test_batches=partial(tensors.chunks, splits.x_test, splits.y_test, eval_batch_size),
            notes=splits.notes,
            val_size=len(splits.y_val),
            val_batches=partial(tensors.chunks, splits.x_val, splits.y_val, eval_batch_size),
        )
    if bundle.train_size < batch_size:
        # Incomplete batches are dropped, so an epoch would hold no batch at all.
        raise BnreproError(f"trainer.batch_size={batch_size} exceeds the {bundle.train_size} training "
                           f"examples of {name} ({bundle.source}); choose a smaller batch size.")
    return bundle
