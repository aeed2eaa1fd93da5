"""Finding a data set's files: `data.root`, then a system copy, then torchvision's download.

Every data set is read by its torchvision class from torchvision's own layout under one root
directory. This module finds (or makes, by extracting .gz files) such a root, or raises a
`DataNotFoundError` whose one paragraph names every place looked and how to fix it.

One data set's files always come from one place. A `data.root` folder holding some but not all
of them (raw or .gz) is refused, never completed from the next source: a partial copy is an
interrupted copy or the wrong folder, and mixing would train on one source's files and test on
another's while the record names the user's folder. Only a folder with none of them falls
through. A `data.root` that is a file, or a folder this user cannot read, is refused too (either
would otherwise look empty and fall through silently).
"""
from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import zlib
from http.client import HTTPException
from pathlib import Path

from torchvision.datasets import CIFAR10, CIFAR100, MNIST, FashionMNIST

from bnrepro.errors import DataCorruptError, DataNotFoundError
from bnrepro.files import atomic_open
from bnrepro.schema import DataConfig

TORCHVISION = {"mnist": MNIST, "fashion_mnist": FashionMNIST, "cifar10": CIFAR10, "cifar100": CIFAR100}
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
          "cifar100": "CIFAR-100", "imagenet_subset": "The ImageNet subset"}

# Directories where a distribution package installs a data set as the four IDX .gz files, flat
# (the very files torchvision downloads). Tests monkeypatch this.
SYSTEM_COPIES = {"fashion_mnist": ["/usr/share/datasets/fashion-mnist"]}
APT_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
# The one place the suite writes data (BNREPRO_DATA_CACHE overrides it): files extracted from .gz
# (a folder per source, so a cache filled from one never stands in for another) and torchvision's
# downloads. Never a source folder (a system copy, the user's data.root) or the working directory.
CACHE_DIR = "~/.cache/bnrepro"
DOWNLOADS = "torchvision-downloads"


def cache_dir() -> Path:
    """The data cache (CACHE_DIR, or the BNREPRO_DATA_CACHE environment variable), absolute."""
    return Path(os.environ.get("BNREPRO_DATA_CACHE") or CACHE_DIR).expanduser().absolute()


def data_root(cfg: DataConfig) -> Path:
    """`data.root` as an absolute path; a relative one is taken from the current directory.
    A file there is refused: nothing under it could be found, so every data set would silently
    come from the next source."""
    root = Path(str(cfg.root)).expanduser().absolute()
    try:
        os.stat(root)
    except FileNotFoundError:
        if root.is_symlink():  # pointing nowhere: not the same as a root not made yet
            raise DataNotFoundError(
                f"data.root={cfg.root} is {root}, a symbolic link to {os.readlink(root)}, which does not exist, so "
                "none of the data sets could be found there and they would silently come from the next source. "
                "Point the link (or data.root, or BNREPRO_DATA) at the directory that holds the data sets.") from None
    except OSError as err:
        if err.errno != errno.ELOOP:  # e.g. a path through a file: nothing there, as for a missing root
            return root
        raise DataNotFoundError(
            f"data.root={cfg.root} is {root}, which cannot be resolved ({err.strerror}: a symbolic link that leads "
            "back to itself), so none of the data sets could be found there and they would silently "
            "come from the next source. Point data.root (or BNREPRO_DATA) at the directory that holds the data "
            "sets, or fix the link.") from None
    if root.exists() and not root.is_dir():
        raise DataNotFoundError(
            f"data.root={cfg.root} is {root}, a file, not a directory. data.root (or the BNREPRO_DATA "
            "environment variable) names the directory that holds the data sets in torchvision's layout "
            "(DIR/MNIST/raw/..., DIR/cifar-10-batches-py/..., DIR/imagenet/train/...): point it at that "
            "directory, not at a file in it.")
    return root


def check_readable(*paths: Path) -> None:
    """Refuse an existing directory this user cannot list or enter, or a file it cannot read:
    either would otherwise look absent (or fail mid-read with a traceback)."""
    for path in paths:
        if not path.exists():
            continue
        mode = os.R_OK | (os.X_OK if path.is_dir() else 0)
        if not os.access(path, mode):
            kind = "directory" if path.is_dir() else "file"
            raise DataNotFoundError(
                f"The {kind} {path} exists but this user cannot read it (permissions "
                f"{stat.filemode(path.stat().st_mode)}), so the data set's files there cannot be used. "
                f"To fix it: make it readable (`chmod -R u+rX {path}` as its owner), or point data.root "
                "(or BNREPRO_DATA) at a readable copy.")


def data_dir(cls: type, root: Path) -> Path:
    """The directory under `root` that torchvision's `cls` reads its files from."""
    if issubclass(cls, MNIST):
        return root / cls.__name__ / "raw"
    return root / cls.base_folder


def expected_files(cls: type) -> dict[str, str | None]:
    """File name -> the md5 torchvision lists for it (None for MNIST's: its md5s are of the .gz)."""
    if issubclass(cls, MNIST):
        return {name.removesuffix(".gz"): None for name, _ in cls.resources}
    return {**dict(cls.train_list + cls.test_list), cls.meta["filename"]: cls.meta["md5"]}


def archive_of(path: Path) -> Path | None:
    """The file a file of the data cache was extracted from (cache/<source folder>/<layout>/raw/NAME
    from /<source folder>/NAME.gz, or NAME copied), if it is one and its source is still there."""
    try:
        rel = Path(path).absolute().relative_to(cache_dir())
    except ValueError:
        return None
    if len(rel.parts) < 4 or rel.parts[0] == DOWNLOADS:
        return None
    source_dir = Path("/", *rel.parts[:-3])
    return next((p for p in (source_dir / f"{rel.name}.gz", source_dir / rel.name) if p.is_file()), None)


def corrupt(name: str, path: Path, problem: str) -> DataCorruptError:
    """The error for one bad file: which, what is wrong, and how to get a good copy. A bad file the
    data cache extracted is named by its archive, which is what must be replaced (deleting the
    extracted copy alone would extract the same bytes again), and is removed from the cache, so
    that the next run extracts the replaced archive."""
    if (archive := archive_of(path)) is not None:
        Path(path).unlink(missing_ok=True)
        problem = f"(extracted to {path}, now removed from the data cache) {problem}"
        path = archive
    package = APT_PACKAGES.get(name)
    if package and any(Path(path).is_relative_to(d) for d in SYSTEM_COPIES.get(name, [])):
        fix = f"It belongs to a system copy: reinstall it with `sudo apt-get install --reinstall {package}`."
    else:
        fix = ("Replace it: delete it and rerun with data.download=true where the network allows, or copy a "
               f"good file into place (what the run extracts from a .gz goes to the data cache, {cache_dir()}, "
               "and is extracted again on the next run).")
    return DataCorruptError(f"{TITLES[name]} file {path} {problem}. {fix}")


def locate(name: str, cfg: DataConfig) -> Path:
    """The root to hand to torchvision's class for `name`, whose files are all present."""
    cls = TORCHVISION[name]
    root = data_root(cfg)
    folder = data_dir(cls, root)
    check_readable(root, folder.parent, folder)
    files = expected_files(cls)
    sources = _sources(cls, folder, files)
    if sources:  # data.root holds this data set: all of it, or it is refused
        if len(sources) < len(files):
            raise DataNotFoundError(_partial(name, cls, folder, files, sources))
        return root if not _missing(cls, root, files) else _extract(name, folder)
    gz = " or .gz" if issubclass(cls, MNIST) else ""
    looked = [f"data.root: {folder} (none of its files{gz})"]
    if issubclass(cls, MNIST):
        for copy in map(Path, SYSTEM_COPIES.get(name, [])):
            extracted = _extract(name, copy)
            if extracted:
                return extracted
            looked.append(f"the system copy {copy}" + (" (not there)" if not copy.is_dir()
                                                          else " (no complete set of .gz files)"))
    downloads = cache_dir() / DOWNLOADS  # an earlier download, whole, serves without the network
    if not _missing(cls, downloads, files):
        return downloads
    if cfg.download:
        failure = _download(cls, downloads)
        if not _missing(cls, downloads, files):
            return downloads
        looked.append(f"torchvision's download into {downloads} (failed: {failure or 'files still missing'})")
    else:
        looked.append(f"the data cache {downloads}; torchvision's download (disabled: data.download=false)")
    raise DataNotFoundError(_not_found(name, cls, looked))


def locate_imagenet(cfg: DataConfig) -> Path:
    """ROOT/imagenet, which must hold train/ and val/ ImageFolder trees (nothing downloads them)."""
    top = data_root(cfg) / "imagenet"
    check_readable(top.parent, top, top / "train", top / "val")
    missing = [str(top / split) for split in ("train", "val") if not (top / split).is_dir()]
    if missing:
        raise DataNotFoundError(
            f"The ImageNet subset (imagenet_subset) was not found: looked for {' and '.join(missing)} "
            f"(data.root: {top.parent}). ImageNet's licence rules out torchvision's download, so "
            "data.download does not apply. To fix it: put the images in torchvision's ImageFolder "
            "layout, DIR/imagenet/train/<wnid>/*.JPEG and DIR/imagenet/val/<wnid>/*.JPEG, with the "
            "validation images sorted into the same <wnid> class folders (the official validation "
            "archive is flat; torchvision.datasets.imagenet.parse_val_archive sorts it with the "
            "devkit's labels), then point data.root=DIR (or the BNREPRO_DATA environment variable) "
            "at that directory."
        )
    return top


def _missing(cls: type, root: Path, files: dict[str, str | None]) -> list[str]:
    return [f for f in files if not (data_dir(cls, root) / f).is_file()]


def _sources(cls: type, directory: Path, files: dict[str, str | None]) -> dict[str, Path]:
    """File name -> where `directory` (flat) holds it: the file itself, or (MNIST family) its .gz."""
    found = {}
    for f in files:
        candidates = [directory / f] + ([directory / f"{f}.gz"] if issubclass(cls, MNIST) else [])
        check_readable(*candidates)
        found.update({f: p for p in reversed(candidates) if p.is_file()})
    return found


def _partial(name: str, cls: type, folder: Path, files: dict[str, str | None], sources: dict[str, Path]) -> str:
    lacking = [f for f in files if f not in sources]
    nexts = (["the system copy"] if name in SYSTEM_COPIES else []) + ["torchvision's download"]
    return (f"{TITLES[name]} ({name}): data.root holds only part of it, so none of it was used: {folder} has "
            f"{', '.join(p.name for p in sources.values())} but lacks {', '.join(lacking)}"
            + (" (neither the file nor its .gz)" if issubclass(cls, MNIST) else "")
            + ". A data set's files are never taken from different places (a partial copy is usually an "
            "interrupted copy or the wrong folder). To fix it: put the missing files there, or move that "
            f"folder away so that {' or '.join(nexts)} provides the whole data set.")


def _extract(name: str, source_dir: Path) -> Path | None:
    """Make the data cache's folder of source_dir hold every file of `name` in torchvision's layout,
    from source_dir's flat files or their .gz; that root, or None if source_dir lacks some file."""
    cls = TORCHVISION[name]
    files = expected_files(cls)
    # A cache folder per source, so that a cache filled from one source never stands in for another.
    target = cache_dir() / str(source_dir).lstrip("/")
    if not _missing(cls, target, files):  # extracted whole before: the source itself is not needed
        return target
    sources = _sources(cls, source_dir, files)
    if len(sources) < len(files):
        return None
    raw = data_dir(cls, target)
    raw.mkdir(parents=True, exist_ok=True)
    for f in _missing(cls, target, files):
        _extract_atomic(name, sources[f], raw / f)
    return target


def _extract_atomic(name: str, source: Path, dest: Path) -> None:
    # Written under a temporary name and renamed when complete (bnrepro.files), so an interrupted
    # run never leaves a truncated file that the next run would take for a good one.
    try:
        with (gzip.open if source.suffix == ".gz" else open)(source, "rb") as src, atomic_open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise corrupt(name, source, f"is not a complete gzip file ({err})") from err


def _download(cls: type, root: Path) -> str | None:
    """torchvision's download into root; None, or the one-line reason it failed."""
    try:
        cls(str(root), train=True, download=True)
    except (OSError, RuntimeError, HTTPException) as err:
        # torchvision's MNIST error lists every mirror tried; the last line is the last reason.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        return f"{type(err).__name__}: {lines[-1] if lines else 'no message'}"
    return None


def _not_found(name: str, cls: type, looked: list[str]) -> str:
    layout = data_dir(cls, Path("DIR"))
    fixes = []
    if name in APT_PACKAGES:
        fixes.append(f"install the system copy with `sudo apt-get install {APT_PACKAGES[name]}` (Debian/Ubuntu)")
    fixes += [
        "rerun with data.download=true where the network allows",
        "point data.root=DIR (or the BNREPRO_DATA environment variable) at a directory holding "
        + ", ".join(str(layout / f) for f in expected_files(cls))
        + (" (or the same files with .gz appended)" if issubclass(cls, MNIST) else ""),
    ]
    return (f"{TITLES[name]} ({name}) was not found. Looked in: {'; '.join(looked)}. "
            f"To fix it: {'; or '.join(fixes)}.")
