"""Tiny data sets in the real on-disk formats, for tests: IDX (MNIST family), CIFAR pickles and
ImageFolder trees. Images carry their label (a bright block whose place depends on it, or a
class colour), so a model can learn them and a test can check labels against pixels.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def labelled_images(labels: np.ndarray, channels: int, side: int, cell: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, channels, side, side): dim noise plus one bright cell x cell block, whose channel
    and grid position encode the label (channel = label % channels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 64, size=(len(labels), channels, side, side), dtype=np.uint8)
    per_row = side // cell
    for image, label in zip(images, labels):
        row, col = divmod(int(label) // channels, per_row)
        image[label % channels, row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = 255
    return images


def write_mnist(directory: Path, n_train: int = 100, n_test: int = 50, gz: bool = False,
                num_classes: int = 10) -> list[Path]:
    """The four IDX files of an MNIST-format data set, 28x28, written flat into `directory`.

    torchvision's layout: write_mnist(ROOT / "MNIST" / "raw") (or "FashionMNIST");
    Debian's dataset-fashion-mnist layout, or torchvision's downloads: gz=True.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, num_classes, size=n, dtype=np.uint8)
        images = labelled_images(labels, 1, 28, 7, seed=n)[:, 0]
        # IDX: magic 0x0000 08 (uint8) 0N (N dims), then the dims as big-endian int32, then data.
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            payload = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            path = directory / f"{prefix}-{kind}-ubyte{'.gz' if gz else ''}"
            with (gzip.open if gz else open)(path, "wb") as f:
                f.write(payload + array.tobytes())
            paths.append(path)
    return paths


def write_cifar(root: Path, n_train: int = 100, n_test: int = 50, cifar100: bool = False) -> Path:
    """CIFAR-10's (or CIFAR-100's) python pickles under ROOT, as torchvision expects them."""
    num_classes = 100 if cifar100 else 10
    directory = Path(root) / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    label_key = "fine_labels" if cifar100 else "labels"

    def batch(name: str, n: int, seed: int) -> None:
        labels = rng.integers(0, num_classes, size=n)
        data = labelled_images(labels, 3, 32, 4, seed=seed).reshape(n, 3 * 32 * 32)
        entry = {"batch_label": name, label_key: labels.tolist(), "data": data,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        if cifar100:
            entry["coarse_labels"] = (labels // 5).tolist()
        with open(directory / name, "wb") as f:
            pickle.dump(entry, f)

    if cifar100:
        batch("train", n_train, 0)
        meta = {"fine_label_names": [f"class{i}" for i in range(100)],
                "coarse_label_names": [f"super{i}" for i in range(20)]}
    else:
        for i, n in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            batch(f"data_batch_{i}", len(n), i)
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": n_train // 5}
    batch("test" if cifar100 else "test_batch", n_test, 9)
    with open(directory / ("meta" if cifar100 else "batches.meta"), "wb") as f:
        pickle.dump(meta, f)
    return directory


def class_colour(i: int) -> tuple[int, int, int]:
    """The solid colour of the i-th class of write_imagenet_tree: red channel 30 + 20 * i."""
    return 30 + 20 * i, 128, 200 - 15 * i


def write_imagenet_tree(root: Path, wnids: list[str], n_train: int = 4, n_val: int = 2,
                        size: int = 40) -> Path:
    """ROOT/imagenet/{train,val}/<wnid>/*.JPEG: solid images of each class's colour (at most 10
    classes), slightly non-square so that resizing and cropping matter."""
    top = Path(root) / "imagenet"
    for split, n in (("train", n_train), ("val", n_val)):
        for i, wnid in enumerate(wnids):
            folder = top / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(n):
                Image.new("RGB", (size + 8, size), class_colour(i)).save(folder / f"{wnid}_{j:04d}.JPEG", quality=95)
    return top
