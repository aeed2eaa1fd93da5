"""Bad inputs and faults, tried as a skeptical user would: every row asserts its outcome.

Outcomes (issue 12): a clear error (in-process: a BnreproError whose one paragraph names the key
or path, raised before any data is read; from the command line: exit status 2, no traceback),
a correct acceptance (the run does what was asked), or an exact resume. Each section below is a
table of cases; add a row for every new bad input the suite learns to catch.
"""
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bnrepro.data import build_data, locate
from bnrepro.errors import BnreproError, DataCorruptError, DataNotFoundError
from tests.conftest import REPO, SMOKE, run_one
from tests.datafiles import IDX_FILES, write_cifar, write_imagenet_tree, write_mnist


def cli(args: list[str], cwd, timeout: int = 120) -> subprocess.CompletedProcess:
    """experiments/train.py as a user runs it."""
    return subprocess.run([sys.executable, str(REPO / "experiments" / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def clear_error(proc: subprocess.CompletedProcess, *names: str) -> None:
    """Exit status 2, no traceback, and the message names every one of `names`."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    for name in names:
        assert name in out, (name, out[-2000:])


def refused_in_process(make_cfg, tmp_path, overrides: list[str], match: str) -> None:
    """The run refuses `overrides` with a BnreproError matching `match`."""
    with pytest.raises(BnreproError, match=match):
        run_one(make_cfg(*SMOKE, *overrides), tmp_path / "run")


# --- the config: types, ranges, unknown keys (before any data is read) -------------------------
CONFIG_CASES: list = []

# --- the data: missing, partial, corrupt, non-finite, out-of-range labels ------------------------
# Each row writes tiny files in the real formats under tmp and returns the data overrides and
# either the fragments the error must name (its class is the row's) or a check of the accepted
# bundle. Rows marked run=True go through session.run (the record must say failed, never
# diverged); the others through build_data. All run in-process, well under a second each.
DATA_CASES: list = []


def data_case(error: type | None = None, run: bool = False):
    def register(setup):
        DATA_CASES.append(pytest.param(setup, error, run, id=setup.__name__))
        return setup
    return register


def _system_copy(tmp):
    return tmp / "usr-share" / "fashion-mnist"


def _rewrite_pickle(path, change) -> None:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    change(entry)
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def _rewrite_idx_labels(path, change) -> None:
    raw = bytearray(path.read_bytes())
    labels = np.frombuffer(bytes(raw[8:]), dtype=np.uint8).copy()
    change(labels)
    path.write_bytes(bytes(raw[:8]) + labels.tobytes())


def _cifar(tmp, *more):
    write_cifar(tmp / "data")
    return ["data=cifar10", f"data.root={tmp / 'data'}", "data.verify_checksums=false", *more]


def _imagenet(tmp, *more):
    write_imagenet_tree(tmp / "data", ["n01", "n02", "n03"], n_train=12, n_val=4, size=24)
    return ["data=imagenet_subset", f"data.root={tmp / 'data'}", "data.imagenet.num_classes=null",
            "data.imagenet.image_size=16", "data.imagenet.resize_size=20", "data.imagenet.num_workers=0",
            "trainer.batch_size=8", *more]


@data_case(DataNotFoundError, run=True)
def partial_root_is_not_completed_from_the_system_copy(tmp, monkeypatch):
    """Issue 12's case: one all-zero file in data.root, a complete system copy; it used to
    'complete' at 0.106 accuracy with data_source naming the user's folder."""
    write_mnist(_system_copy(tmp), gz=True)
    raw = tmp / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(1000))
    return (["data=fashion_mnist", f"data.root={tmp / 'data'}"],
            [f"{raw} has t10k-labels-idx1-ubyte but lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, "
             "t10k-images-idx3-ubyte", "never taken from different places", "the system copy"])


@data_case()
def complete_root_of_raw_and_gz_files_is_used_as_is(tmp, monkeypatch):
    write_mnist(_system_copy(tmp), n_train=80, gz=True)  # a different set, which must not be read
    raw = tmp / "data" / "FashionMNIST" / "raw"
    write_mnist(raw, n_train=120)
    for f in IDX_FILES[2:]:  # the test files as .gz only, as a download that stopped before extracting
        (raw / f).unlink()
    write_mnist(tmp / "gz", n_train=120, gz=True)
    for f in IDX_FILES[2:]:
        (tmp / "gz" / f"{f}.gz").rename(raw / f"{f}.gz")

    def check(bundle):
        assert (bundle.source, bundle.train_size, bundle.test_size) == (str(raw), 120, 50)
    return ["data=fashion_mnist", f"data.root={tmp / 'data'}"], check


@data_case(DataNotFoundError)
def partial_cifar_root_names_the_missing_batch(tmp, monkeypatch):
    overrides = _cifar(tmp)
    (tmp / "data" / "cifar-10-batches-py" / "data_batch_3").unlink()
    return overrides, ["cifar-10-batches-py has data_batch_1", "lacks data_batch_3", "download"]


@data_case(DataNotFoundError)
def file_as_data_root(tmp, monkeypatch):
    write_mnist(_system_copy(tmp), gz=True)  # used to be taken silently, through the cache
    (tmp / "fashion.tar").write_bytes(b"not a directory")
    return (["data=fashion_mnist", f"data.root={tmp / 'fashion.tar'}"],
            [f"{tmp / 'fashion.tar'}, a file, not a directory"])


@data_case(DataNotFoundError)
def unreadable_data_folder(tmp, monkeypatch):
    write_mnist(_system_copy(tmp), gz=True)
    raw = tmp / "data" / "FashionMNIST" / "raw"
    write_mnist(raw)
    raw.chmod(0)
    monkeypatch.setattr(os, "access", _honouring_mode_bits(os.access))  # root ignores permissions
    return ["data=fashion_mnist", f"data.root={tmp / 'data'}"], [f"{raw} exists but this user cannot read it",
                                                                  "d---------", "chmod -R u+rX"]


def _honouring_mode_bits(access):
    """os.access as an unprivileged user sees it, for a suite that may run as root."""
    def fake(path, mode, **kwargs):
        if os.geteuid() == 0 and mode & os.R_OK and not os.stat(path).st_mode & 0o444:
            return False
        return access(path, mode, **kwargs)
    return fake


@data_case(DataCorruptError)
def gz_that_is_not_gzip_in_data_root(tmp, monkeypatch):
    raw = tmp / "data" / "MNIST" / "raw"
    write_mnist(raw, gz=True)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>rate limited</html>")
    return ["data=mnist", f"data.root={tmp / 'data'}"], [f"{raw / 'train-labels-idx1-ubyte.gz'} is not a complete gzip"]


@data_case(DataCorruptError)
def idx_label_out_of_range(tmp, monkeypatch):
    raw = tmp / "data" / "MNIST" / "raw"
    write_mnist(raw)
    _rewrite_idx_labels(raw / "train-labels-idx1-ubyte", lambda y: y.__setitem__(slice(7, 10), 10))
    return (["data=mnist", f"data.root={tmp / 'data'}"],
            [f"{raw / 'train-labels-idx1-ubyte'} holds 3 label(s) outside 0..9 (the first, 10, at training example 7)"])


@data_case(DataCorruptError)
def cifar_negative_label(tmp, monkeypatch):
    overrides = _cifar(tmp)
    batch = tmp / "data" / "cifar-10-batches-py" / "data_batch_2"
    _rewrite_pickle(batch, lambda e: e["labels"].__setitem__(3, -1))
    return overrides, [f"{batch} holds 1 label(s) outside 0..9 (the first, -1, at training example 23)"]


@data_case(DataCorruptError)
def cifar100_label_of_a_101st_class(tmp, monkeypatch):
    directory = write_cifar(tmp / "data", cifar100=True)
    _rewrite_pickle(directory / "test", lambda e: e["fine_labels"].__setitem__(0, 100))
    return (["data=cifar100", f"data.root={tmp / 'data'}", "data.verify_checksums=false"],
            [f"{directory / 'test'} holds 1 label(s) outside 0..99 (the first, 100, at test example 0)"])


@data_case(DataCorruptError)
def cifar_batch_with_too_few_labels(tmp, monkeypatch):
    overrides = _cifar(tmp)
    _rewrite_pickle(tmp / "data" / "cifar-10-batches-py" / "data_batch_4", lambda e: e["labels"].pop())
    return overrides, [f"{tmp / 'data' / 'cifar-10-batches-py' / 'data_batch_4'} does not hold one label per image",
                       "100 images but 99 labels", "data_batch_4: 20 images, 19 labels"]


@data_case(DataCorruptError)
def float_cifar_batch_with_a_nan_pixel(tmp, monkeypatch):
    overrides = _cifar(tmp)
    batch = tmp / "data" / "cifar-10-batches-py" / "test_batch"

    def nan_pixel(entry):
        entry["data"] = entry["data"].astype(np.float32)
        entry["data"][5, 17] = np.nan
    _rewrite_pickle(batch, nan_pixel)
    return overrides, [f"{batch} (the test split of cifar10; the first bad example is 5) holds 1 non-finite input value(s)",
                       "1 NaN, 0 inf", "false 'divergence'"]


@data_case(DataCorruptError)
def standardize_on_a_constant_channel(tmp, monkeypatch):
    overrides = _cifar(tmp, "data.preprocess=standardize")
    for i in range(1, 6):
        def blank_blue(entry):
            entry["data"][:, 2048:] = 7
        _rewrite_pickle(tmp / "data" / "cifar-10-batches-py" / f"data_batch_{i}", blank_blue)
    return overrides, ["data.preprocess=standardize", "channel(s) [2]", "std 0", "cifar-10-batches-py"]


@data_case(BnreproError, run=True)
def synthetic_nan_noise_is_refused_not_diverged(tmp, monkeypatch):
    # Refused here or already by the config's validation: either way, never a 'divergence'.
    return ["data.synthetic.noise=nan"], ["data.synthetic.noise=nan"]


@data_case(DataCorruptError)
def empty_test_split(tmp, monkeypatch):
    directory = write_cifar(tmp / "data", n_test=0)  # (an IDX file of 0 images is refused as unreadable)
    return (["data=cifar10", f"data.root={tmp / 'data'}", "data.verify_checksums=false"],
            [f"{directory / 'test_batch'} holds no test examples"])


@data_case(DataCorruptError)
def idx_images_and_labels_disagree(tmp, monkeypatch):
    raw = tmp / "data" / "MNIST" / "raw"
    write_mnist(raw, n_test=50)
    write_mnist(tmp / "other", n_test=40)
    (tmp / "other" / "t10k-labels-idx1-ubyte").rename(raw / "t10k-labels-idx1-ubyte")
    return (["data=mnist", f"data.root={tmp / 'data'}"],
            [f"{raw / 't10k-labels-idx1-ubyte'} does not hold one label per image", "50 images but 40 labels",
             "t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte: 50 images, 40 labels"])


@data_case()
def oversized_test_size_is_clamped_with_a_note(tmp, monkeypatch):
    write_mnist(tmp / "data" / "MNIST" / "raw", n_test=50)

    def check(bundle):
        assert bundle.test_size == 50 == sum(len(y) for _, y in bundle.test_batches())
        assert bundle.notes == (f"data.test_size=1000 exceeds the 50 examples of mnist's test split "
                                f"({tmp / 'data' / 'MNIST' / 'raw'}): all 50 are evaluated.",)
    return ["data=mnist", f"data.root={tmp / 'data'}", "data.test_size=1000"], check


@data_case(DataCorruptError)
def garbage_and_truncated_jpegs_are_listed(tmp, monkeypatch):
    overrides = _imagenet(tmp)
    train = tmp / "data" / "imagenet" / "train"
    (train / "n02" / "n02_0003.JPEG").write_bytes(b"GIF89a, or an HTML error page")
    truncated = train / "n03" / "n03_0001.JPEG"  # a noisy image, cut inside its compressed data
    noise = np.random.default_rng(0).integers(0, 256, (48, 56, 3), dtype=np.uint8)
    Image.fromarray(noise).save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:-2000])
    return overrides, ["2 of the 48 images", f"{train / 'n02' / 'n02_0003.JPEG'} (UnidentifiedImageError",
                       f"{truncated} (truncated: no JPEG end-of-image marker)", "refused, not skipped"]


@data_case(DataNotFoundError)
def empty_imagenet_class_folder(tmp, monkeypatch):
    overrides = _imagenet(tmp)
    for image in (tmp / "data" / "imagenet" / "train" / "n02").iterdir():
        image.unlink()
    return overrides, [f"{tmp / 'data' / 'imagenet' / 'train'} lacks images", "n02"]


@data_case(DataNotFoundError)
def imagenet_class_missing_from_val(tmp, monkeypatch):
    overrides = _imagenet(tmp, "data.imagenet.classes=[n01,n03]")
    shutil.rmtree(tmp / "data" / "imagenet" / "val" / "n03")
    return overrides, [f"{tmp / 'data' / 'imagenet' / 'val'} lacks images", "n03"]


@data_case()
def imagenet_test_size_is_noted_not_ignored_silently(tmp, monkeypatch):
    def check(bundle):
        assert bundle.test_size == 12 and bundle.notes == (
            "data.test_size=5 does not apply to imagenet_subset: all 12 validation images of the subset are evaluated.",)
    return _imagenet(tmp, "data.test_size=5"), check


@pytest.mark.parametrize("setup, error, run", DATA_CASES)
def test_data_case(make_cfg, tmp_path, monkeypatch, setup, error, run):
    monkeypatch.setattr(locate, "SYSTEM_COPIES", {"fashion_mnist": [str(_system_copy(tmp_path))]})
    monkeypatch.setattr(locate, "CACHE_DIR", str(tmp_path / "cache"))
    overrides, expected = setup(tmp_path, monkeypatch)
    if error is None:
        cfg = make_cfg(*SMOKE, *overrides)
        expected(build_data(cfg.data, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, "cpu"))
        return
    with pytest.raises(error) as raised:
        cfg = make_cfg(*SMOKE, *overrides)
        if run:
            run_one(cfg, tmp_path / "run")
        else:
            build_data(cfg.data, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, "cpu")
    message = str(raised.value)
    assert "\n" not in message, message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    if run and (tmp_path / "run" / "summary.json").exists():  # the record: failed, never diverged
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["status"] == "failed" and summary.get("divergence") is None, summary
        assert fragment in summary["error"]

# --- faults: run directories, signals, disks, damaged records, sweeps ---------------------------
FAULT_CASES: list = []
