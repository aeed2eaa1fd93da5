"""The data layer on tiny files in the real formats: locating, extracting, errors, batches."""
import pickle
import shutil
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.datasets import CIFAR10, MNIST, FashionMNIST

from bnrepro.schema import DataConfig, SyntheticOptions
from bnrepro.data import build_data, imagenet, locate
from bnrepro.data.tensors import TensorBatches
from bnrepro.errors import BnreproError, DataCorruptError, DataNotFoundError
from tests.datafiles import IDX_FILES, class_colour, write_cifar, write_imagenet_tree, write_mnist

FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def data_cfg(name, root, **overrides):
    """A data config as the runner hands it over (Hydra-composed, schema-checked, typed), reading from `root`."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig),
                                               {"name": name, "root": str(root), **overrides}))


def build(cfg, batch_size=16, eval_batch_size=20):
    return build_data(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def system_copy(monkeypatch, tmp_path):
    """The system copy is looked for here (never the machine's own), extracted to a tmp cache."""
    copy = tmp_path / "usr-share" / "fashion-mnist"
    monkeypatch.setattr(locate, "SYSTEM_COPIES", {"fashion_mnist": [str(copy)]})
    monkeypatch.setattr(locate, "CACHE_DIR", str(tmp_path / "cache"))
    return copy


# --- MNIST family ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_family_loads_from_root(tmp_path, name):
    raw = tmp_path / "data" / FOLDERS[name] / "raw"
    write_mnist(raw, n_train=120, n_test=50)
    bundle = build(data_cfg(name, tmp_path / "data"))

    assert (bundle.name, bundle.input_shape, bundle.num_classes) == (name, (1, 28, 28), 10)
    assert (bundle.train_size, bundle.test_size, bundle.source) == (120, 50, str(raw))
    x, y = next(bundle.train_batches(0))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.device.type == "cpu" and 0 <= x.min() and x.max() <= 1
    test = list(bundle.test_batches())
    assert [len(y) for _, y in test] == [20, 20, 10]
    # The pixels are the file's, scaled: the label's bright block is where write_mnist put it.
    x_test, y_test = torch.cat([x for x, _ in test]), torch.cat([y for _, y in test])
    row, col = divmod(int(y_test[0]), 4)
    assert (x_test[0, 0, row * 7:row * 7 + 7, col * 7:col * 7 + 7] == 1).all()


def test_root_relative_to_cwd_and_user_expanded(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data" / "MNIST" / "raw")
    monkeypatch.chdir(tmp_path)
    assert build(data_cfg("mnist", "data")).source == str(tmp_path / "data" / "MNIST" / "raw")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert build(data_cfg("mnist", "~/data")).source == str(tmp_path / "data" / "MNIST" / "raw")


def test_gz_files_in_root_are_extracted(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_mnist(raw, gz=True)
    bundle = build(data_cfg("mnist", tmp_path / "data"))
    # Extracted into the data cache, never into the user's folder (issue 33, item 7).
    cached = tmp_path / "cache" / str(raw).lstrip("/") / "MNIST" / "raw"
    assert bundle.train_size == 100 and bundle.source == str(cached)
    assert all((cached / f).is_file() for f in IDX_FILES) and not any((raw / f).exists() for f in IDX_FILES)


def test_fashion_mnist_from_system_copy(tmp_path, system_copy):
    write_mnist(system_copy, n_train=80, gz=True)
    root = tmp_path / "data"
    bundle = build(data_cfg("fashion_mnist", root))
    raw = tmp_path / "cache" / str(system_copy).lstrip("/") / "FashionMNIST" / "raw"
    assert bundle.source == str(raw) and bundle.train_size == 80 and not root.exists()  # the cache, not ./data
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)  # no temporary leftovers
    shutil.rmtree(system_copy)  # the second load needs only what the first extracted
    assert build(data_cfg("fashion_mnist", root)).train_size == 80


def test_system_copy_goes_to_cache_when_root_is_not_writable(tmp_path, system_copy, monkeypatch):
    write_mnist(system_copy, gz=True)
    (tmp_path / "a_file").write_text("")
    root = tmp_path / "a_file" / "data"  # nothing can be created under a file, even as root
    # A cache folder per source (the system copy's path under the cache), never shared by two sources.
    cached = tmp_path / "cache" / str(system_copy).lstrip("/") / "FashionMNIST" / "raw"
    assert build(data_cfg("fashion_mnist", root)).source == str(cached)

    def no_extraction(*args):
        raise AssertionError("extracted again")

    monkeypatch.setattr(locate, "_extract_atomic", no_extraction)
    assert build(data_cfg("fashion_mnist", root)).train_size == 100


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_not_found_names_every_place_and_the_fixes(tmp_path, name, system_copy):
    with pytest.raises(DataNotFoundError) as err:
        build(data_cfg(name, tmp_path / "data"))
    msg = str(err.value)
    assert str(tmp_path / "data") in msg and "data.download=false" in msg
    assert "data.download=true" in msg and "data.root=" in msg and "BNREPRO_DATA" in msg
    first_file = {"mnist": "MNIST/raw/train-images-idx3-ubyte", "fashion_mnist": "FashionMNIST/raw/train-images-idx3-ubyte",
                  "cifar10": "cifar-10-batches-py/data_batch_1", "cifar100": "cifar-100-python/train"}[name]
    assert f"DIR/{first_file}" in msg
    has_system_copy = name == "fashion_mnist"
    assert (str(system_copy) in msg) == has_system_copy
    assert ("sudo apt-get install dataset-fashion-mnist" in msg) == has_system_copy
    assert "\n" not in msg


@pytest.mark.parametrize("cls, name, error", [
    (FashionMNIST, "fashion_mnist", RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried "
                                                 "https://a/, got:\n<urlopen error [Errno -3] name resolution>\n")),
    (CIFAR10, "cifar10", URLError("[Errno -3] name resolution")),
])
def test_not_found_gives_the_download_failure(tmp_path, monkeypatch, cls, name, error):
    def fail(self):
        raise error

    monkeypatch.setattr(cls, "download", fail)
    with pytest.raises(DataNotFoundError, match=r"download into .*failed: .*\[Errno -3\] name resolution"):
        build(data_cfg(name, tmp_path / "data", download=True))


def test_download_fills_root(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "download", lambda self: write_mnist(Path(self.raw_folder), n_train=60))
    assert build(data_cfg("mnist", tmp_path / "data", download=True)).train_size == 60


def test_truncated_gz_is_corrupt_and_leaves_no_partial_file(tmp_path, system_copy):
    write_mnist(system_copy, gz=True)
    gz = system_copy / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    with pytest.raises(DataCorruptError, match="train-images-idx3-ubyte.gz") as err:
        build(data_cfg("fashion_mnist", tmp_path / "data"))
    assert "apt-get install --reinstall dataset-fashion-mnist" in str(err.value)
    raw = tmp_path / "cache" / str(system_copy).lstrip("/") / "FashionMNIST" / "raw"
    assert "train-images-idx3-ubyte" not in [p.name for p in raw.iterdir()]
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("file, damage", [
    ("train-images-idx3-ubyte", lambda b: b[:-100]),  # truncated
    ("t10k-labels-idx1-ubyte", lambda b: b"\x00\x00\x07\x01" + b[4:]),  # wrong magic number
    ("t10k-images-idx3-ubyte", lambda b: b + b"\x00" * 28),  # longer than its header says
])
def test_bad_idx_file_is_corrupt(tmp_path, file, damage):
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_mnist(raw)
    (raw / file).write_bytes(damage((raw / file).read_bytes()))
    with pytest.raises(DataCorruptError, match=f"{raw / file} is truncated or not in the expected format"):
        build(data_cfg("mnist", tmp_path / "data"))


# --- CIFAR ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cifar100", [False, True])
def test_cifar_loads(tmp_path, cifar100):
    directory = write_cifar(tmp_path / "data", n_train=60, n_test=30, cifar100=cifar100)
    bundle = build(data_cfg("cifar100" if cifar100 else "cifar10", tmp_path / "data", verify_checksums=False))
    assert (bundle.input_shape, bundle.num_classes) == ((3, 32, 32), 100 if cifar100 else 10)
    assert (bundle.train_size, bundle.test_size, bundle.source) == (60, 30, str(directory))
    x, y = next(bundle.test_batches())
    with open(directory / ("test" if cifar100 else "test_batch"), "rb") as f:
        entry = pickle.load(f)
    assert torch.equal(x[:5] * 255, torch.tensor(entry["data"][:5], dtype=torch.float32).view(5, 3, 32, 32))
    assert y[:5].tolist() == entry["fine_labels" if cifar100 else "labels"][:5]


def test_cifar_checksum_mismatch_is_corrupt(tmp_path):
    write_cifar(tmp_path / "data")
    with pytest.raises(DataCorruptError, match=r"cifar-10-batches-py/data_batch_1 does not match torchvision's md5"):
        build(data_cfg("cifar10", tmp_path / "data", verify_checksums=True))


def test_cifar_bad_pickle_is_corrupt(tmp_path):
    directory = write_cifar(tmp_path / "data")
    (directory / "test_batch").write_bytes((directory / "test_batch").read_bytes()[:300])
    with pytest.raises(DataCorruptError, match=f"{directory / 'test_batch'} is truncated"):
        build(data_cfg("cifar10", tmp_path / "data", verify_checksums=False))


# --- preprocessing --------------------------------------------------------------------------

def test_binarize(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw")
    grey = build(data_cfg("mnist", tmp_path))
    binary = build(data_cfg("mnist", tmp_path, preprocess="binarize", binarize_threshold=0.3))
    x_grey, x_binary = next(grey.test_batches())[0], next(binary.test_batches())[0]
    assert set(x_binary.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x_binary, (x_grey > 0.3).float())


def test_standardize_uses_training_statistics(tmp_path):
    write_cifar(tmp_path)  # 100 training examples: a batch of 100 is the whole split
    raw = build(data_cfg("cifar10", tmp_path, verify_checksums=False), batch_size=100)
    std = build(data_cfg("cifar10", tmp_path, verify_checksums=False, preprocess="standardize"), batch_size=100)
    x_raw, x_std = next(raw.train_batches(0))[0], next(std.train_batches(0))[0]
    assert torch.allclose(x_std.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x_std.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5)
    mean, scale = x_raw.mean(dim=(0, 2, 3), keepdim=True), x_raw.std(dim=(0, 2, 3), keepdim=True)
    assert torch.allclose(next(std.test_batches())[0], (next(raw.test_batches())[0] - mean) / scale, atol=1e-5)


# --- batches --------------------------------------------------------------------------------

def labels_of(batches, n):
    return [next(batches)[1].tolist() for _ in range(n)]


def test_batches_are_seeded_epoch_permutations():
    n, b = 100, 16  # 6 full batches an epoch, 4 examples dropped
    ids = torch.arange(n)
    batches = TensorBatches(ids.float().view(n, 1, 1, 1), ids, b, seed=0)
    epochs = [sum(labels_of(batches, 6), []) for _ in range(3)]
    assert (batches.epoch, batches.index) == (2, 6)
    for epoch in epochs:
        assert len(epoch) == len(set(epoch)) == 96 and set(epoch) <= set(range(n))
    assert epochs[0] != epochs[1] != epochs[2]
    next(batches)
    assert (batches.epoch, batches.index) == (3, 1)
    assert sum(labels_of(TensorBatches(ids, ids, b, seed=0), 18), []) == sum(epochs, [])
    assert labels_of(TensorBatches(ids, ids, b, seed=1), 6) != labels_of(TensorBatches(ids, ids, b, seed=0), 6)


@pytest.mark.parametrize("position", [4, 6, 13])  # mid-epoch, at an epoch's end, in a later epoch
def test_state_dict_resumes_the_same_sequence(position):
    ids = torch.arange(100)
    batches = TensorBatches(ids, ids, 16, seed=5)
    labels_of(batches, position)
    state = batches.state_dict()
    assert state == {"epoch": (position - 1) // 6, "index": (position - 1) % 6 + 1}
    expected = labels_of(batches, 10)
    resumed = TensorBatches(ids, ids, 16, seed=5)
    resumed.load_state_dict(state)
    assert labels_of(resumed, 10) == expected


def test_batches_of_an_epoch_are_views_of_one_gather():
    bundle = build(data_cfg("synthetic", "unused"))
    batches = bundle.train_batches(0)
    first, second = next(batches)[0], next(batches)[0]
    assert first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()


def test_batch_larger_than_training_split_is_refused():
    with pytest.raises(BnreproError, match="batch_size=3000 exceeds the 2000 training examples"):
        build(data_cfg("synthetic", "unused"), batch_size=3000)


# --- synthetic ------------------------------------------------------------------------------

def test_synthetic_is_fixed_and_learnable():
    # Plain strings, as a user of the library may write them, work like the schema's enums.
    cfg = DataConfig(name="synthetic", preprocess="none", synthetic=SyntheticOptions(
        shape=[1, 8, 8], num_classes=5, train_size=500, test_size=200, noise=1.0))
    assert isinstance(cfg.name, str)
    a, b = build(cfg, batch_size=500, eval_batch_size=200), build(cfg, batch_size=500, eval_batch_size=200)
    assert (a.input_shape, a.num_classes, a.train_size, a.test_size, a.source) == ((1, 8, 8), 5, 500, 200, "synthetic")
    (x_test, y_test), (x_test_b, _) = next(a.test_batches()), next(b.test_batches())
    assert torch.equal(x_test, x_test_b)  # the run seed never changes the data
    assert 0 <= x_test.min() and x_test.max() <= 1
    # Learnable: nearest class mean of the training split classifies the test split well.
    x, y = next(a.train_batches(0))
    assert not torch.equal(y, next(b.train_batches(1))[1])
    means = torch.stack([x[y == k].mean(0) for k in range(5)]).flatten(1)
    accuracy = (torch.cdist(x_test.flatten(1), means).argmin(1) == y_test).float().mean()
    assert accuracy > 0.9  # chance is 0.2


# --- ImageNet subsets -----------------------------------------------------------------------

WNIDS = ["n01440764", "n01530575", "n02085620", "n03000134", "n04254680", "n09999999"]


@pytest.fixture
def imagenet_root(tmp_path):
    write_imagenet_tree(tmp_path, WNIDS, n_train=4, n_val=2, size=24)
    return tmp_path


def imagenet_cfg(root, **options):
    return data_cfg("imagenet_subset", root, imagenet={"image_size": 16, "resize_size": 20, "num_workers": 0,
                                                       **options})


def colour_index(x):
    """Which WNIDS entry's colour an (N, 3, H, W) normalized batch shows (its mean red)."""
    red = (x[:, 0].mean(dim=(1, 2)) * imagenet.STD[0] + imagenet.MEAN[0]) * 255
    return ((red - class_colour(0)[0]) / 20).round().long().tolist()


def test_imagenet_subset_by_list(imagenet_root):
    classes = ["n04254680", "n01440764"]
    bundle = build(imagenet_cfg(imagenet_root, classes=classes, num_classes=None), batch_size=3, eval_batch_size=3)
    assert (bundle.num_classes, bundle.train_size, bundle.test_size) == (2, 8, 4)
    assert bundle.input_shape == (3, 16, 16) and bundle.source == str(imagenet_root / "imagenet")
    subset = sorted(classes)
    train = bundle.train_batches(0)
    for x, y in [next(train), next(train), *bundle.test_batches()]:
        assert x.shape[1:] == (3, 16, 16)
        # Labels are positions in the sorted subset, the same for train and val.
        assert [subset.index(WNIDS[i]) for i in colour_index(x)] == y.tolist()


def test_imagenet_subset_evenly_spaced_and_capped(imagenet_root):
    train, val, _ = imagenet.load(imagenet_cfg(imagenet_root, num_classes=3, images_per_class=2))
    assert train.classes == val.classes == [WNIDS[0], WNIDS[2], WNIDS[4]]
    assert train.class_to_idx == val.class_to_idx
    assert [Path(p).name for p, _ in train.samples[:2]] == [f"{WNIDS[0]}_0000.JPEG", f"{WNIDS[0]}_0001.JPEG"]
    assert (len(train), len(val)) == (6, 6)
    assert imagenet.load(imagenet_cfg(imagenet_root, num_classes=None))[0].classes == WNIDS


def test_imagenet_batches_resume(imagenet_root):
    bundle = build(imagenet_cfg(imagenet_root, num_classes=None), batch_size=5)
    batches = bundle.train_batches(3)
    labels_of(batches, 5)
    state = batches.state_dict()
    expected = labels_of(batches, 4)
    resumed = bundle.train_batches(3)
    resumed.load_state_dict(state)
    assert labels_of(resumed, 4) == expected


def test_imagenet_errors(tmp_path, imagenet_root):
    with pytest.raises(DataNotFoundError, match="n00000001"):
        build(imagenet_cfg(imagenet_root, classes=["n00000001", WNIDS[0]]))
    shutil.rmtree(imagenet_root / "imagenet" / "val" / WNIDS[1])
    with pytest.raises(DataNotFoundError, match=f"{imagenet_root / 'imagenet' / 'val'} lacks images .*{WNIDS[1]}"):
        build(imagenet_cfg(imagenet_root, num_classes=None))
    with pytest.raises(DataNotFoundError, match=r"imagenet/val/<wnid>/\*\.JPEG.*class folders") as err:
        build(imagenet_cfg(tmp_path / "empty"))
    assert str(tmp_path / "empty" / "imagenet" / "train") in str(err.value)


def test_empty_gz_is_named_and_fixing_it_is_enough(tmp_path):
    """Issue 33, item 15: an empty .gz extracts to an empty file; the error named that extracted file
    and said to delete it, which extracted the same empty file again. It names the archive, and
    replacing the archive is all it takes."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_mnist(raw, gz=True)
    good = (raw / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataCorruptError) as err:
        build(data_cfg("mnist", tmp_path / "data"))
    msg = str(err.value)
    assert msg.startswith(f"MNIST file {raw / 't10k-labels-idx1-ubyte.gz'} (extracted to ") and "now removed" in msg
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(good)
    assert build(data_cfg("mnist", tmp_path / "data")).test_size == 50
