"""ImageNet class subsets (Sec. 4.2 protocols, scaled): ImageFolder trees read by a DataLoader.

Layout: ROOT/imagenet/train/<wnid>/*.JPEG and ROOT/imagenet/val/<wnid>/*.JPEG. Training uses
Inception-style random-resized crops and flips; validation one center crop, the paper's
single-crop accuracy.
"""
from __future__ import annotations

import os
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from bnrepro.data.locate import locate_imagenet
from bnrepro.data.tensors import Batch, EpochBatches, epoch_generator
from bnrepro.errors import BnreproError, DataNotFoundError
from bnrepro.schema import DataConfig, ImageNetOptions

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as torchvision's models use


class SubsetFolder(ImageFolder):
    """An ImageFolder over `classes` only, labelled 0..K-1 in their sorted order (so train and val
    agree), keeping the first `per_class` files of each class in sorted order (None: all)."""

    def __init__(self, root: Path, classes: list[str], transform, per_class: int | None = None):
        self.subset, self.per_class = sorted(classes), per_class
        super().__init__(str(root), transform=transform)

    def find_classes(self, directory):
        return self.subset, {wnid: i for i, wnid in enumerate(self.subset)}

    def make_dataset(self, directory, class_to_idx, **kwargs):
        samples = super().make_dataset(directory, class_to_idx, **kwargs)
        # torchvision lists the samples class by class, each class's files sorted by name.
        return [s for _, group in groupby(samples, key=itemgetter(1)) for s in islice(group, self.per_class)]


def select_classes(available: list[str], opts: ImageNetOptions) -> list[str]:
    """The subset: `classes` if given, else `num_classes` evenly spaced over the sorted ids, else all.

    Evenly spaced rather than the first N because sorted WordNet ids follow the hierarchy: the
    first ~400 ImageNet classes are all animals, a spread subset samples the whole of it.
    """
    if opts.classes is not None:
        unknown = sorted(set(opts.classes) - set(available))
        if unknown:
            raise DataNotFoundError(
                f"data.imagenet.classes names {len(unknown)} class id(s) with no training folder: "
                f"{', '.join(unknown)}. The training tree has {len(available)} classes "
                f"({', '.join(available[:3])}, ...); fix the list or set data.imagenet.classes=null.")
        return sorted(set(opts.classes))
    if opts.num_classes is None:
        return available
    if not 0 < opts.num_classes <= len(available):
        raise BnreproError(f"data.imagenet.num_classes={opts.num_classes}, but the training tree has "
                           f"{len(available)} classes: choose 1..{len(available)} (or null for all).")
    k = opts.num_classes
    return [available[i * len(available) // k] for i in range(k)]


def load(cfg: DataConfig) -> tuple[SubsetFolder, SubsetFolder, str]:
    """The training and validation sets of the subset, and the directory they come from."""
    top = locate_imagenet(cfg)
    opts = cfg.imagenet
    available = sorted(entry.name for entry in os.scandir(top / "train") if entry.is_dir())
    classes = select_classes(available, opts)
    normalize = [T.ToTensor(), T.Normalize(MEAN, STD)]
    train_tf = T.Compose([T.RandomResizedCrop(opts.image_size), T.RandomHorizontalFlip(), *normalize])
    val_tf = T.Compose([T.Resize(opts.resize_size), T.CenterCrop(opts.image_size), *normalize])
    return (_folder(top / "train", classes, train_tf, opts.images_per_class),
            _folder(top / "val", classes, val_tf), str(top))


def _folder(root: Path, classes: list[str], transform, per_class: int | None = None) -> SubsetFolder:
    try:
        return SubsetFolder(root, classes, transform, per_class)
    except FileNotFoundError as err:
        raise DataNotFoundError(
            f"{root} lacks images of the ImageNet subset: {err}. Every class of the subset needs a "
            f"folder {root}/<wnid>/ of images in both train/ and val/ (validation images sorted "
            "into class folders, not flat).") from err


class LoaderBatches(EpochBatches):
    """Training batches from a DataLoader, with EpochBatches' (seed, epoch) order.

    Resuming from a state_dict continues with exactly the batches left in that epoch (the
    order is recomputed, nothing is decoded to skip); only the random crops and flips of the
    resumed epoch differ from an unbroken run's.
    """

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device, num_workers: int, seed: int,
                 reshuffle: bool = True):
        super().__init__(len(dataset), batch_size, seed, reshuffle)
        self.dataset, self.device, self.num_workers = dataset, device, num_workers

    def _epoch_batches(self, indices: torch.Tensor) -> Iterator[Batch]:
        # The generator seeds the workers' augmentation RNGs from (seed, epoch) too.
        loader = _loader(self.dataset, self.batch_size, self.device, self.num_workers,
                         sampler=indices.tolist(), drop_last=True,
                         generator=epoch_generator(self.seed, self.epoch))
        return _on_device(loader, self.device)


def val_batches(dataset: Dataset, batch_size: int, device: torch.device, num_workers: int) -> Iterator[Batch]:
    """One pass over the validation set in order."""
    return _on_device(_loader(dataset, batch_size, device, num_workers), device)


def _loader(dataset: Dataset, batch_size: int, device: torch.device, num_workers: int, **kwargs) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                      pin_memory=device.type == "cuda", **kwargs)


def _on_device(loader: DataLoader, device: torch.device) -> Iterator[Batch]:
    # Pinned host memory lets these copies overlap with the previous step's compute.
    return ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)
