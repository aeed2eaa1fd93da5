"""ImageNet class subsets (Sec. 4.2 protocols, scaled): ImageFolder trees read by a DataLoader.

Layout: ROOT/imagenet/train/<wnid>/*.JPEG and ROOT/imagenet/val/<wnid>/*.JPEG. Training uses
Inception-style random-resized crops and flips; validation one center crop, the paper's
single-crop accuracy.

Unreadable images are refused at load, never skipped. Before any training, every image the
subset uses (training and validation) is opened far enough to parse its header and size (PIL
reads the markers up to the frame header, not the pixels), and a JPEG must end with its
end-of-image marker (a truncated download lacks it); this costs well under a millisecond per
file, a few seconds for a 100-class subset, against a crash hours into training when the bad
file is first drawn. Refusing, with the list of bad files, rather than skipping them: a skipped
file silently changes the data set (train and val sizes, class balance) that runs are compared
on, and the fix (replace or delete the files) is the user's to make, once. A file that passes
these checks and still fails to decode (damage inside the compressed data) stops the run with
an error naming it, when it is drawn.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import pil_loader

from bnrepro.data.locate import locate_imagenet
from bnrepro.data.tensors import Batch, EpochBatches, epoch_generator
from bnrepro.errors import BnreproError, DataCorruptError, DataNotFoundError
from bnrepro.schema import DataConfig, ImageNetOptions

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as torchvision's models use


class SubsetFolder(ImageFolder):
    """An ImageFolder over `classes` only, labelled 0..K-1 in their sorted order (so train and val
    agree), keeping the first `per_class` files of each class in sorted order (None: all)."""

    def __init__(self, root: Path, classes: list[str], transform, per_class: int | None = None):
        self.subset, self.per_class = sorted(classes), per_class
        super().__init__(str(root), transform=transform, loader=read_image)

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
    train, val = _folder(top / "train", classes, train_tf, opts.images_per_class), _folder(top / "val", classes, val_tf)
    check_images([path for folder in (train, val) for path, _ in folder.samples], top)
    return train, val, str(top)


def check_images(paths: list[str], top: Path, shown: int = 10) -> None:
    """Refuse the subset if any of its images cannot be opened (module docstring: why refuse)."""
    with ThreadPoolExecutor(8) as pool:  # file opens overlap on network storage
        bad = [(p, why) for p, why in zip(paths, pool.map(image_problem, paths)) if why]
    if bad:
        listed = "; ".join(f"{p} ({why})" for p, why in bad[:shown])
        more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
        raise DataCorruptError(
            f"{len(bad)} of the {len(paths)} images of the ImageNet subset under {top} cannot be read: "
            f"{listed}{more}. Each would crash training when first drawn, so nothing was trained (bad images "
            "are refused, not skipped, so that the data set never changes silently). To fix it: replace "
            "those files with good copies, or delete them, and rerun.")


def image_problem(path: str) -> str | None:
    """Why `path` is not a readable image (its header, and for a JPEG its end), or None."""
    try:
        with Image.open(path) as image:
            image.size  # parsed by open; no pixels are decoded
            jpeg = image.format == "JPEG"
        if jpeg:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 1024))
                if b"\xff\xd9" not in f.read():  # EOI; 0xFF is byte-stuffed in the coded data
                    return "truncated: no JPEG end-of-image marker"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def read_image(path: str) -> Image.Image:
    """torchvision's loader, naming the file if it fails to decode after all (see module docstring)."""
    try:
        return pil_loader(path)
    except (OSError, SyntaxError, ValueError) as err:
        raise DataCorruptError(f"The image {path} could not be decoded ({type(err).__name__}: {err}), "
                               "though its header passed the check at load. Replace or delete it and rerun.") from err


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
