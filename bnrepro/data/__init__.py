"""The data layer: `build_data(cfg.data, ...)` gives any data set as a `DataBundle`.

MNIST, Fashion-MNIST, CIFAR-10/100 and `synthetic` are held whole on the device as tensors
(`tensors.py`); ImageNet subsets are read from ImageFolder trees by a DataLoader
(`imagenet.py`). Either way, training draws from `bundle.train_batches(seed)`, an infinite
iterator of full batches whose position (`epoch`, `index`, `state_dict()`) resumes exactly,
and evaluation makes one pass over `bundle.test_batches()`. Where files are looked for, and
what is said when they are missing or corrupt, is `locate.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import torch
from omegaconf import DictConfig

from bnrepro.config import choice
from bnrepro.data import imagenet, tensors
from bnrepro.data.tensors import Batch, EpochBatches
from bnrepro.errors import BnreproError

__all__ = ["DataBundle", "EpochBatches", "build_data"]


@dataclass(frozen=True)
class DataBundle:
    name: str
    input_shape: tuple[int, ...]  # one example, (C, H, W)
    num_classes: int
    train_size: int
    test_size: int
    source: str  # the directory the files were read from, or "synthetic"
    train_batches: Callable[[int], EpochBatches]  # seed -> infinite iterator of (x, y) on the device
    test_batches: Callable[[], Iterator[Batch]]  # one pass over the held-out split, on the device


def build_data(cfg: DictConfig, batch_size: int, eval_batch_size: int, device: torch.device | str) -> DataBundle:
    name = choice(cfg.name)
    device = torch.device(device)
    if name == "imagenet_subset":
        train, val, source = imagenet.load(cfg)
        size, workers = cfg.imagenet.image_size, cfg.imagenet.num_workers
        bundle = DataBundle(
            name, (3, size, size), len(train.classes), len(train), len(val), source,
            train_batches=partial(imagenet.LoaderBatches, train, batch_size, device, workers, reshuffle=cfg.reshuffle),
            test_batches=partial(imagenet.val_batches, val, eval_batch_size, device, workers),
        )
    else:
        splits = tensors.load(cfg, device)
        bundle = DataBundle(
            name, tuple(splits.x_train.shape[1:]), splits.num_classes, len(splits.y_train),
            len(splits.y_test), splits.source,
            train_batches=partial(tensors.TensorBatches, splits.x_train, splits.y_train, batch_size,
                                  reshuffle=cfg.reshuffle),
            test_batches=partial(tensors.chunks, splits.x_test, splits.y_test, eval_batch_size),
        )
    if bundle.train_size < batch_size:
        # Incomplete batches are dropped, so an epoch would hold no batch at all.
        raise BnreproError(f"trainer.batch_size={batch_size} exceeds the {bundle.train_size} training "
                           f"examples of {name} ({bundle.source}); choose a smaller batch size.")
    return bundle
