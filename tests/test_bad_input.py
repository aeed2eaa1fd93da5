"""Bad inputs and faults, tried as a skeptical user would: every row asserts its outcome.

Outcomes (issue 12): a clear error (in-process: a BnreproError whose one paragraph names the key
or path, raised before any data is read; from the command line: exit status 2, no traceback),
a correct acceptance (the run does what was asked), or an exact resume. Each section below is a
table of cases; add a row for every new bad input the suite learns to catch.
"""
import dataclasses
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from PIL import Image

from bnrepro.data import build_data, locate
from bnrepro.errors import BnreproError, DataCorruptError, DataNotFoundError
from bnrepro.training.checkpoint import checkpoints
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


def refused_before_setup(make_cfg, tmp_path, overrides: list[str], message: str) -> None:
    """`refused_in_process` with `message` verbatim, and all the run wrote is `failed` summary.json
    files (one per member; none for `seeds=[]`): no config.yaml, so nothing past validation ran
    (no data was read)."""
    refused_in_process(make_cfg, tmp_path, overrides, re.escape(message))
    written = [p for p in tmp_path.joinpath("run").rglob("*") if p.is_file()]
    assert all(p.name == "summary.json" and json.loads(p.read_text())["status"] == "failed" for p in written)
    assert written or "seeds=[]" in overrides


# --- the config: types, ranges, unknown keys (before any data is read) -------------------------
# Each row: (kind, overrides on top of SMOKE, expected). Kinds:
#   refused   the run refuses, before setup: expected is the start of the error's paragraph, verbatim
#   hydra     composition fails: expected is (exception type, text its message holds)
#   accepted  composes and validates: expected(cfg) checks what was accepted
#   runs      trains: expected(summary, metrics) checks the run did what was asked
#   cli       experiments/train.py exits 2 without a traceback, naming every one of expected; the
#             overrides also point at missing MNIST files, which the error must not be about
NO_DATA = ["data=mnist", "data.root=/nonexistent", "data.download=false"]
CONFIG_CASES: list = [
    # 1. unknown keys: `+` appends what the schema lacks; it is refused, not silently dropped
    ("hydra", ["+trainer.max_step=10"], (BnreproError, "trainer.max_step is not a key of the config, so the run "
                                         "would ignore it; did you mean trainer.max_steps?")),
    ("hydra", ["+probe.mod=eval"], (BnreproError, "probe.mod is not a key of the config")),
    ("hydra", ["+data.synthetic.shap=[1,8,8]"], (BnreproError, "did you mean data.synthetic.shape?")),
    ("hydra", ["+learning_rate=0.1"], (BnreproError, "learning_rate is not a key of the config")),
    ("cli", ["+trainer.max_step=10", *NO_DATA], ["trainer.max_step is not a key", "trainer.max_steps"]),
    # 2. silently wrong values
    ("refused", ["probe.every=-3"], "probe.every=-3 is not valid: probe.every must be an integer >= 0, e.g. "
                                    "probe.every=200 (0 turns probing off)."),
    ("refused", ["data.test_size=-5"], "data.test_size=-5 is not valid"),
    ("refused", ["data.test_size=0"], "data.test_size=0 is not valid"),  # 0 would mean all of them
    ("refused", ["data.val_size=-1"], "data.val_size=-1 is not valid: data.val_size must be an integer >= 0"),
    ("refused", ["trainer.eval_per_decade=-2"], "trainer.eval_per_decade=-2 is not valid"),
    ("hydra", ["model.init=xavier"], (Exception, "xavier")),
    ("refused", ["seeds=[]"], "seeds=[] is not valid: seeds must be a non-empty list of distinct seeds"),
    ("refused", ["seeds=[1,1]"], "seeds=[1,1] is not valid"),
    ("refused", ["seed=-1"], "seed=-1 is not valid: seed must be in [0, 4294967295]"),
    # data-dependent refusals, also before any file but the failed summary.json (issue 33, items 16, 17)
    ("refused", ["trainer.batch_size=5000"], "trainer.batch_size=5000 exceeds the 2000 training examples of synthetic"),
    ("refused", ["data.val_size=500", "trainer.batch_size=1800"], "data.val_size=500 with trainer.batch_size=1800 leaves "
     "fewer than one batch of the 2000 training examples of synthetic (data.synthetic.noise=1.0) to train on; choose "
     "data.val_size=100 or less, or trainer.batch_size=1500 or less."),
    ("refused", ["seeds=[0,1]", "data.val_size=1990"], "data.val_size=1990 with trainer.batch_size=32 leaves"),
    ("refused", ["seeds=[0,1]", "seed=3"], "seed=3 is set beside seeds=[0,1], which trains the seeds of its list only, "
                                           "so seed=3 would be ignored. Drop seed=3, or add it to the list "
                                           "(seeds=[0,1,3])."),  # issue 33, item 5
    # 3. choices are enums: Hydra refuses them at composition
    ("hydra", ["trainer.progress=bogus"], (ConfigCompositionException, "trainer.progress")),
    ("hydra", ["probe.mode=bogus"], (ConfigCompositionException, "probe.mode")),
    # 4. non-finite floats
    ("refused", ["optim.lr=nan"], "optim.lr=nan is not a finite number; give a finite value, e.g. optim.lr=0.5."),
    ("refused", ["optim.lr=inf"], "optim.lr=inf is not a finite number"),
    ("refused", ["optim.lr_scale=nan"], "optim.lr_scale=nan is not a finite number"),
    ("refused", ["optim.momentum=-inf"], "optim.momentum=-inf is not a finite number"),
    ("refused", ["optim.weight_decay=nan"], "optim.weight_decay=nan is not a finite number"),
    ("refused", ["bn.eps=inf"], "bn.eps=inf is not a finite number"),
    ("refused", ["model.init_std=nan"], "model.init_std=nan is not a finite number"),
    ("refused", ["data.binarize_threshold=nan"], "data.binarize_threshold=nan is not a finite number"),
    ("refused", ["probe.percentiles=[15,nan]"], "probe.percentiles=[15.0,nan] is not a finite number"),
    ("cli", ["optim.lr=nan", *NO_DATA], ["optim.lr=nan is not a finite number"]),
    # 5. out of range: each a clear error instead of a traceback (or a wrong run)
    ("refused", ["probe.percentiles=[15,101]"], "probe.percentiles=[15.0,101.0] is not valid: probe.percentiles "
                                                "must be a non-empty list of values each in [0, 100]"),
    ("refused", ["probe.percentiles=[]"], "probe.percentiles=[] is not valid"),
    ("refused", ["probe.batch_size=0"], "probe.batch_size=0 is not valid"),
    ("refused", ["probe.unit=-1"], "probe.unit=-1 is not valid"),
    ("refused", ["probe.unit=100"], "probe.unit=100 is not a unit of the MLP's layers of model.width=100"),
    ("refused", ["optim.lr_scale=-1"], "optim.lr_scale=-1.0 is not valid: optim.lr_scale must be a finite "
                                       "number > 0.0, e.g. optim.lr_scale=5."),
    ("refused", ["optim.lr_scale=0"], "optim.lr_scale=0.0 is not valid"),
    ("refused", ["optim.momentum=-1"], "optim.momentum=-1.0 is not valid: optim.momentum must be in [0, 1)"),
    ("refused", ["optim.momentum=1"], "optim.momentum=1.0 is not valid"),
    ("refused", ["optim.weight_decay=-1e-4"], "optim.weight_decay=-0.0001 is not valid"),
    ("refused", ["optim.nesterov=true"], "optim.nesterov=true needs momentum"),
    ("refused", ["model.width=0"], "model.width=0 is not valid: model.width must be an integer >= 1"),
    ("refused", ["model.depth=0"], "model.depth=0 is not valid"),
    ("refused", ["model.width_mult=0"], "model.width_mult=0.0 is not valid"),
    ("refused", ["model.dropout=1"], "model.dropout=1.0 is not valid"),
    ("refused", ["model.name=resnet"], "model.name=resnet is not valid: model.name must be one of mlp, "
                                       "bn_inception, inception_small"),
    ("refused", ["trainer.device=bogus"], "trainer.device=bogus is not valid: trainer.device must be auto, cpu, "
                                          "cuda or cuda:N, e.g. trainer.device=cpu."),
    ("refused", ["trainer.device=cuda:x"], "trainer.device=cuda:x is not valid"),
    ("refused", ["trainer.threads=-1"], "trainer.threads=-1 is not valid"),
    ("refused", ["trainer.checkpoint_keep=0"], "trainer.checkpoint_keep=0 is not valid"),
    ("refused", ["trainer.eval_batch_size=0"], "trainer.eval_batch_size=0 is not valid"),
    ("refused", ["bn.eps=-1"], "bn.eps=-1.0 is not valid: bn.eps must be a finite number > 0.0"),
    ("refused", ["bn.groups=0"], "bn.groups=0 is not valid"),
    ("refused", ["bn.momentum=1.5"], "bn.momentum=1.5 is not valid: bn.momentum must be in [0, 1], or null"),
    ("refused", ["data.pad_to=10"], "data.pad_to=10 is smaller than the 28x28 images of data=synthetic"),
    ("refused", ["data=cifar10", "data.pad_to=30"], "data.pad_to=30 is smaller than the 32x32 images of data=cifar10"),
    ("refused", ["data=imagenet_subset", "data.pad_to=200"], "data.pad_to=200 is smaller than the 224x224 images"),
    ("refused", ["data.imagenet.num_classes=0"], "data.imagenet.num_classes=0 is not valid"),
    ("refused", ["data.imagenet.resize_size=200"], "data.imagenet.resize_size=200 is below data.imagenet.image_size"),
    ("refused", ["data.synthetic.shape=[28,28]"], "data.synthetic.shape=[28,28] is not valid"),
    # Santurkar et al.'s noisy BN and the gradient probes (issue 17)
    ("refused", ["bn.noise.scale_max=0.5"], "bn.noise.scale_max=0.5 is not valid: bn.noise.scale_max must be a "
                                            "finite number >= 1.0, e.g. bn.noise.scale_max=1.25."),
    ("refused", ["bn.noise.scale_std=-0.1"], "bn.noise.scale_std=-0.1 is not valid"),
    ("refused", ["bn.noise.every=0"], "bn.noise.every=0 is not valid: bn.noise.every must be an integer >= 1"),
    ("refused", ["bn.noise.mean_max=nan"], "bn.noise.mean_max=nan is not a finite number"),
    ("refused", ["probe.ics_every=-1"], "probe.ics_every=-1 is not valid"),
    ("refused", ["probe.landscape_steps=[1,0]"], "probe.landscape_steps=[1.0,0.0] is not valid: probe.landscape_steps "
                                                 "must be a non-empty list of values each a finite number > 0.0"),
    ("refused", ["seeds=[0,1]", "bn.noise.enabled=true"], "The stacked seed path (seeds=[...]) does not support: "
                                                          "bn.noise.enabled=true"),
    # issue 18's BN statistics options (bnrepro/nn/bn_variants.py)
    ("refused", ["bn.ghost_batch=5"], "bn.ghost_batch=5 does not divide trainer.batch_size=32 into whole ghost batches"),
    ("refused", ["bn.ghost_batch=64"], "bn.ghost_batch=64 does not divide trainer.batch_size=32"),
    ("refused", ["bn.ghost_batch=1"], "bn.ghost_batch=1 with model.name=mlp normalizes each unit over one value"),
    ("refused", ["bn.ghost_batch=0"], "bn.ghost_batch=0 is not valid: bn.ghost_batch must be an integer >= 1, or null"),
    ("refused", ["bn.eval_weight=1.5"], "bn.eval_weight=1.5 is not valid: bn.eval_weight must be in [0, 1]"),
    ("refused", ["bn.eval_weight=0.2"], "bn.eval_weight=0.2 mixes the population statistics with each example's own"),
    ("refused", ["bn.renorm_rmax=0.5"], "bn.renorm_rmax=0.5 is not valid: bn.renorm_rmax must be a finite number >= 1.0"),
    ("refused", ["bn.renorm_dmax=-1"], "bn.renorm_dmax=-1.0 is not valid"),
    ("refused", ["bn.freeze_after=0"], "bn.freeze_after=0.0 is not valid: bn.freeze_after must be in (0, 1], or null"),
    ("refused", ["bn.precise_examples=0"], "bn.precise_examples=0 is not valid"),
    ("refused", ["bn.placement=before", "bn.norm=group", "bn.ghost_batch=8"],
     "bn.ghost_batch=8 change(s) batch-norm statistics, but bn.norm=group"),
    ("refused", ["bn.placement=before", "bn.norm=layer", "bn.population=precise"],
     "bn.population=precise recomputes batch-norm statistics, but bn.norm=layer keeps none"),
    ("accepted", ["bn.freeze_after=1.0", "bn.placement=none"], lambda cfg: cfg.bn.freeze_after == 1.0),  # = never
    ("accepted", ["bn.ghost_batch=8", "bn.norm=renorm", "bn.placement=before"], lambda cfg: cfg.bn.ghost_batch == 8),
    # 6. Hydra's own composition errors: exit status 2 from the command line
    ("hydra", ["trainer.max_step=10"], (ConfigCompositionException, "trainer.max_step")),
    ("hydra", ["variant=bn_x99"], (MissingConfigException, "variant/bn_x99")),
    # a typo'd key without `+` gets the same suggestion as with it (issue 34), before Hydra composes
    ("cli", ["trainer.max_step=10", *NO_DATA], ["trainer.max_step is not a key", "did you mean trainer.max_steps?"]),
    ("cli", ["trainer.max_steps=ten", *NO_DATA], ["trainer.max_steps"]),  # every Hydra error: the same exit path
    # correct acceptances: the rules do not over-refuse
    ("accepted", ["bn.momentum=null"], lambda cfg: cfg.bn.momentum is None),
    ("accepted", ["trainer.device=cpu"], lambda cfg: cfg.trainer.device == "cpu"),
    ("accepted", ["trainer.device=cuda:1"], lambda cfg: cfg.trainer.device == "cuda:1"),  # form only: no CUDA asked
    ("accepted", ["data.test_size=null"], lambda cfg: cfg.data.test_size is None),
    ("accepted", ["data.pad_to=28"], lambda cfg: cfg.data.pad_to == 28),  # as large as the images: no-op
    ("accepted", ["data=cifar10", "data.pad_to=32"], lambda cfg: cfg.data.pad_to == 32),
    ("accepted", ["probe.percentiles=[0,100]"], lambda cfg: cfg.probe.percentiles == [0.0, 100.0]),
    ("accepted", ["optim.momentum=0.9", "optim.nesterov=true"], lambda cfg: cfg.optim.nesterov),
    ("accepted", ["trainer.threads=null", "trainer.progress=lines"],
     lambda cfg: cfg.trainer.threads is None and cfg.trainer.progress.value == "lines"),
    ("accepted", ["seeds=[0,1,2]"], lambda cfg: cfg.seeds == [0, 1, 2]),
    ("accepted", ["bn.noise.enabled=true", "bn.placement=none"], lambda cfg: cfg.bn.noise.enabled),  # noise without BN
    ("runs", ["bn.noise.enabled=true", "probe.landscape_every=10"], lambda summary, metrics:
     summary["status"] == "completed" and (metrics.split == "landscape").any()),
    ("runs", ["bn.population=precise", "bn.precise_examples=10000000", "trainer.max_steps=10"],  # issue 33, item 14
     lambda summary, metrics: summary["status"] == "completed" and summary["data_notes"] == [
         "bn.precise_examples=10000000 exceeds the 2000 training examples of synthetic (5000.0 passes over them at "
         "every evaluation): PreciseBN uses all 2000, once. Pass bn.precise_examples=2000 or less to silence this note."]),
    ("runs", ["probe.every=0"], lambda summary, metrics: summary["status"] == "completed"
     and "probe" not in set(metrics.split)),  # 0 is the documented "off"
    ("runs", ["probe.mode=eval", "trainer.progress=lines"], lambda summary, metrics: summary["status"] == "completed"
     and (metrics.split == "probe").any()),
]


def _case_id(case) -> str:
    return f"{case[0]}:{' '.join(o for o in case[1] if o not in NO_DATA)}"


@pytest.mark.parametrize("kind, overrides, expected", CONFIG_CASES, ids=map(_case_id, CONFIG_CASES))
def test_config_case(make_cfg, tmp_path, kind, overrides, expected):
    from bnrepro.validation import validate

    if kind == "refused":
        refused_before_setup(make_cfg, tmp_path, overrides, expected)
    elif kind == "hydra":
        error, text = expected
        with pytest.raises(error, match=re.escape(text)):
            make_cfg(*SMOKE, *overrides)
    elif kind == "accepted":
        cfg = make_cfg(*SMOKE, *overrides)
        validate(cfg)
        assert expected(cfg)
    elif kind == "runs":
        summary = run_one(make_cfg(*SMOKE, *overrides), tmp_path / "run")
        assert expected(summary, pd.read_csv(tmp_path / "run" / "metrics.csv"))
    elif kind == "cli":
        proc = cli([*overrides, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
        clear_error(proc, *expected)
        assert "data.download=true" not in proc.stderr  # the bad key is reported, not the missing data
        assert not (tmp_path / "run").exists()  # Hydra made it; a refused run leaves no directory (issue 34)
    else:
        raise AssertionError(f"unknown kind {kind!r}")


def test_every_numeric_field_has_a_rule():
    """A field that holds numbers gets a rule in validation.RULES (enums, bools and free strings need none):
    a new field cannot slip past validation."""
    from bnrepro import schema, validation

    def numeric(tp) -> bool:
        return any(a in (int, float) or numeric(a) for a in typing.get_args(tp)) or tp in (int, float)

    def fields(cls, prefix=""):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                yield from fields(tp, f"{prefix}{f.name}.")
            elif numeric(tp):
                yield f"{prefix}{f.name}"

    ruled = {key for key, _, _ in validation.RULES}
    assert set(fields(schema.Config)) - ruled == set()
    assert len(CONFIG_CASES) >= 25 and sum(kind == "cli" for kind, *_ in CONFIG_CASES) <= 4

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

    def check(bundle):  # read through the data cache's folder of this source (issue 33, item 7)
        cached = tmp / "cache" / str(raw).lstrip("/") / "FashionMNIST" / "raw"
        assert (bundle.source, bundle.train_size, bundle.test_size) == (str(cached), 120, 50)
        assert sorted(p.name for p in raw.iterdir()) == sorted([*IDX_FILES[:2], *(f"{f}.gz" for f in IDX_FILES[2:])])
    return ["data=fashion_mnist", f"data.root={tmp / 'data'}"], check


@data_case(DataNotFoundError)
def symlink_loop_as_data_root(tmp, monkeypatch):
    """Issue 33, item 6: it read as absent, and the system copy was used without a word."""
    write_mnist(_system_copy(tmp), gz=True)
    (tmp / "loop").symlink_to(tmp / "loop")
    return (["data=fashion_mnist", f"data.root={tmp / 'loop'}"],
            [f"data.root={tmp / 'loop'} is {tmp / 'loop'}, which cannot be resolved", "leads back to itself"])


@data_case(DataNotFoundError)
def dangling_symlink_as_data_root(tmp, monkeypatch):
    write_mnist(_system_copy(tmp), gz=True)
    (tmp / "link").symlink_to(tmp / "unmounted")
    return (["data=fashion_mnist", f"data.root={tmp / 'link'}"],
            [f"a symbolic link to {tmp / 'unmounted'}, which does not exist"])


@data_case()
def system_copy_as_data_root_is_extracted_into_the_cache(tmp, monkeypatch):
    """Issue 33, item 7: data.root at a folder of .gz files (the system copy itself) wrote 53 MB of
    extracted files into it; and a first run extracted into ./data/ of the working directory.
    Extraction goes to the data cache only."""
    copy = _system_copy(tmp)
    write_mnist(copy, gz=True)
    monkeypatch.chdir(tmp)
    before = sorted(p.name for p in copy.iterdir())

    def check(bundle):
        assert sorted(p.name for p in copy.iterdir()) == before and not (tmp / "data").exists()
        assert bundle.source.startswith(str(tmp / "cache")) and bundle.train_size == 100
    return ["data=fashion_mnist", f"data.root={copy}"], check


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
# Each row is a function (make_cfg, tmp_path, capfd) that runs the fault and asserts its outcome.
# Subprocess rows only where a process boundary is the point: a lock held by another process,
# the runner's exit status, Hydra's files, a file-size limit, a read-only mount.


FAST = [*SMOKE, "trainer.threads=1", "trainer.checkpoint_every=10"]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` (.hydra/ and checkpoints/ included): its bytes and mtime."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def train_cli(out: Path, *extra: str, cwd=REPO, prefix: str = "") -> subprocess.CompletedProcess:
    """experiments/train.py with FAST into `out`; `prefix`: a shell command line around it
    (`ulimit -f 100;`, a mount namespace)."""
    args = " ".join(shlex.quote(a) for a in [sys.executable, str(REPO / "experiments" / "train.py"), *FAST, *extra,
                                              f"hydra.run.dir={out}"])
    return subprocess.run(["bash", "-c", prefix + args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def second_writer_is_refused(make_cfg, tmp_path, capfd):
    """Another process holds the run directory: this run is refused, naming it, and writes nothing."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bnrepro.training.rundir import lock\n"
                               "with lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(BnreproError, match=rf"in use by another run \(pid {holder.pid} on host"):
            run_one(make_cfg(*FAST), out)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the holder's; nothing of ours
    finally:
        holder.kill()
        holder.wait()
    # Killed without a word: the kernel dropped its lock, its file is stale and taken over.
    assert run_one(make_cfg(*FAST), out)["status"] == "completed"
    assert f"left by a run that is no longer running (pid {holder.pid}" in capfd.readouterr().err
    assert not (out / ".lock").exists()  # released at the end


def stack_member_in_use_is_refused(make_cfg, tmp_path, capfd):
    """A single run writing `seed=1/` blocks a stack whose member that is (flock is per open file:
    a second lock in this process conflicts like another process's)."""
    from bnrepro.training.rundir import lock
    from bnrepro.training.session import run

    with lock(tmp_path / "stack" / "seed=1"):
        with pytest.raises(BnreproError, match=r"seed=1 is in use by another run"):
            run(make_cfg(*FAST, "seeds=[0,1]"), tmp_path / "stack")
    assert not (tmp_path / "stack" / ".lock").exists() and not (tmp_path / "stack" / "seed=0" / ".lock").exists()


def lock_released_however_the_run_ends(make_cfg, tmp_path, capfd):
    import bnrepro.training.session as session

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    original, session.fit = session.fit, interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            run_one(make_cfg(*FAST), tmp_path)
    finally:
        session.fit = original
    assert not (tmp_path / ".lock").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "interrupted"
    assert run_one(make_cfg(*FAST), tmp_path)["status"] == "completed"  # nothing stale in the way


def refused_rerun_leaves_every_file_as_it_was(make_cfg, tmp_path, capfd):
    """Through the runner: Hydra's .hydra/ included (written only once the refusals pass)."""
    out = tmp_path / "run"
    first = train_cli(out)
    assert first.returncode == 0, first.stderr[-2000:]
    assert {p.name for p in (out / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert not (out / "train.log").exists()  # hydra/job_logging=stdout: the suite logs nothing to a file
    before = snapshot(out)
    time.sleep(0.01)
    clear_error(train_cli(out, "optim.lr=0.3"), str(out), "different config")
    assert snapshot(out) == before


def refused_in_process_writes_nothing(make_cfg, tmp_path, capfd):
    """The session's own checks come first: a changed config, a checkpoint of another config."""
    run_one(make_cfg(*FAST), tmp_path)
    before = snapshot(tmp_path)
    for change in ("optim.lr=0.3", "seed=1"):
        with pytest.raises(BnreproError, match="different config"):
            run_one(make_cfg(*FAST, change), tmp_path)
    (tmp_path / "summary.json").rename(tmp_path / "kept")
    before = {k if k != "summary.json" else "kept": v for k, v in before.items()}
    with pytest.raises(BnreproError, match="optim.lr"):  # the checkpoint's config differs
        run_one(make_cfg(*FAST, "optim.lr=0.3"), tmp_path)
    assert snapshot(tmp_path) == before


def uncreatable_output_dir_hydra(make_cfg, tmp_path, capfd):
    """Hydra makes the run directory before the job: the runner's callback tries first and exits 2
    with the paragraph (configs/train.yaml's hydra.callbacks). Root ignores permission bits, so the
    path lies under a regular file, which no one can create."""
    from omegaconf import OmegaConf

    from bnrepro.config import OutputDirCheck

    (tmp_path / "file.txt").write_text("")
    out = tmp_path / "file.txt" / "run"
    with pytest.raises(SystemExit) as exit_:
        OutputDirCheck().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(out)}}}))
    assert exit_.value.code == 2
    err = capfd.readouterr().err
    assert err.startswith(f"Error: Could not write {out}: a part of the path is a file") and "Traceback" not in err


def unwritable_output_dir_in_process(make_cfg, tmp_path, capfd):
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(BnreproError, match=r"Could not write .*file\.txt/run.*not a directory"):
        run_one(make_cfg(*FAST), tmp_path / "file.txt" / "run")


def read_only_run_dir(make_cfg, tmp_path, capfd):
    """A read-only bind mount in a private mount namespace (root may make one; chmod does not stop root)."""
    out = tmp_path / "ro"
    out.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {out} {out}"], capture_output=True)
    if probe.returncode:
        pytest.skip("no mount namespace here (unshare -m): " + probe.stderr.decode()[-200:])
    proc = train_cli(out, prefix=f"unshare -m sh -c 'mount --bind -o ro {out} {out} && exec \"$0\" \"$@\"' ")
    clear_error(proc, str(out), "read-only")
    assert not any(out.iterdir())


def full_disk_during_checkpoint(make_cfg, tmp_path, capfd):
    """`ulimit -f 100` (KiB): the first checkpoint (~430 KB) fails with EFBIG; SIGXFSZ is ignored."""
    out = tmp_path / "run"
    clear_error(train_cli(out, prefix="ulimit -f 100; "), "checkpoints/step00000010-", "ulimit -f")
    assert not any((out / "checkpoints").iterdir())  # neither a partial checkpoint nor a temporary file
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "ulimit -f" in summary["error"] and "traceback" not in summary


def truncated_summary_in_a_sweep(make_cfg, tmp_path, capfd):
    from bnrepro.analysis.summarize import summarize

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        run_one(make_cfg(*FAST, f"seed={seed}"), sweep / f"seed={seed}")
    damaged = sweep / "seed=1" / "summary.json"
    damaged.write_text(damaged.read_text()[:40])
    frame = summarize(sweep).set_index("run")
    assert frame.status.to_dict() == {"seed=0": "completed", "seed=1": "damaged"}
    assert str(damaged) in frame.loc["seed=1", "error"] and frame.loc["seed=1", "seed"] == 1


def truncated_summary_rerun_resumes(make_cfg, tmp_path, capfd):
    first = run_one(make_cfg(*FAST), tmp_path)
    (tmp_path / "summary.json").write_text('{"status": "comp')
    summary = run_one(make_cfg(*FAST), tmp_path)
    assert "summary.json is damaged" in capfd.readouterr().err
    assert "step00000020-" in summary["resumed_from"] and summary["final"] == first["final"]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def sweep_user_error_without_traceback(make_cfg, tmp_path, capfd):
    """A multirun whose first job is a user error: its paragraph alone, no traceback; the next job runs."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "train.py"), "-m", *FAST,
                           "trainer.batch_size=5000,32", f"hydra.sweep.dir={sweep}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-2000:]
    assert "Error: trainer.batch_size=5000 exceeds" in out
    jobs = {next(k for k in d.name.split(",") if k.startswith("trainer.batch_size")):
            json.loads((d / "summary.json").read_text()) for d in sweep.iterdir()
            if d.is_dir() and d.name != "by_variant"}  # by_variant/: the sweep's per-variant TensorBoard runs
    bad, good = jobs["trainer.batch_size=5000"], jobs["trainer.batch_size=32"]
    assert bad["status"] == "failed" and "traceback" not in bad and good["status"] == "completed"
    # (A bug keeps its traceback, printed and in summary.json: tests/test_sweep.py.)


def stale_temp_files_are_removed(make_cfg, tmp_path, capfd):
    """Killed mid-write (`.NAME.<pid>.tmp`, bnrepro/files.py): removed at the next start, under the lock."""
    run_one(make_cfg(*FAST, "trainer.max_steps=10"), tmp_path)
    leftovers = [tmp_path / "checkpoints" / ".step00000020-0123456789abcdef.pt.4194999.tmp",
                 tmp_path / ".summary.json.4194999.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    assert run_one(make_cfg(*FAST), tmp_path)["status"] == "completed"
    assert not any(p.exists() for p in leftovers)
    assert "removed 2 temporary file(s)" in capfd.readouterr().err


def only_checkpoint_corrupt_says_so(make_cfg, tmp_path, capfd):
    ref = run_one(make_cfg(*FAST, "trainer.checkpoint_keep=1"), tmp_path)
    ((_, only),) = checkpoints(tmp_path / "checkpoints")
    only.write_bytes(only.read_bytes()[:-100])
    (tmp_path / "summary.json").unlink()  # as if killed after it
    summary = run_one(make_cfg(*FAST, "trainer.checkpoint_keep=1"), tmp_path)
    err = capfd.readouterr().err
    assert "No earlier checkpoint is left: the run starts over from step 0" in err and "Falling back" not in err
    assert "resumed_from" not in summary and summary["final"] == ref["final"]


def shortened_finished_run_is_refused(make_cfg, tmp_path, capfd):
    run_one(make_cfg(*FAST), tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(BnreproError, match=r"went further \(completed at step 20\) than trainer.max_steps=10"):
        run_one(make_cfg(*FAST, "trainer.max_steps=10"), tmp_path)
    assert snapshot(tmp_path) == before  # config.yaml still says 20, as the summary does


def shortened_interrupted_run_is_refused(make_cfg, tmp_path, capfd):
    run_one(make_cfg(*FAST), tmp_path)
    (tmp_path / "summary.json").unlink()  # killed after its last checkpoint (step 20)
    with pytest.raises(BnreproError, match=r"step00000020-.* is of step 20, further than trainer.max_steps=10"):
        run_one(make_cfg(*FAST, "trainer.max_steps=10"), tmp_path)


def stack_parent_is_not_a_job(make_cfg, tmp_path, capfd):
    from bnrepro.analysis.summarize import summarize
    from bnrepro.training.session import run

    stack = tmp_path / "sweep" / "variant=bn"

    def hydra_record():  # what the runner's on_start writes into the stack's own directory
        (stack / ".hydra").mkdir()
        (stack / ".hydra" / "config.yaml").write_text("variant: bn\nseeds:\n- 0\n- 1\n")

    run(make_cfg(*FAST, "seeds=[0,1]"), stack, on_start=hydra_record)
    frame = summarize(tmp_path / "sweep")
    assert frame.run.tolist() == ["variant=bn/seed=0", "variant=bn/seed=1"]
    assert frame.status.tolist() == ["completed", "completed"]


def run_kinds_never_share_a_directory(make_cfg, tmp_path, capfd):
    """Issue 33, item 1: a stack into a finished single run's directory (and a single run into a
    stack's) is refused before it writes a byte: no seed=<s>/ beside the single run, no failed
    summary.json on top of the stack, every file as it was."""
    from bnrepro.training.session import run

    single, stack = tmp_path / "single", tmp_path / "stack"
    run_one(make_cfg(*FAST), single)
    run(make_cfg(*FAST, "seeds=[0,1]"), stack)
    for directory, overrides, holds in ((single, ["seeds=[0,1]"], "a single run (config.yaml"),
                                        (stack, ["seed=0"], "a stack of seeds (seeds=[...]) (seed=0/, seed=1/")):
        before = snapshot(directory)
        with pytest.raises(BnreproError, match=re.escape(f"{directory} already holds {holds}")):
            run(make_cfg(*FAST, *overrides), directory)
        assert snapshot(directory) == before
    assert not list(single.glob("seed=*")) and not (stack / "summary.json").exists()
    assert run(make_cfg(*FAST, "seeds=[0,1]"), stack)[1]["status"] == "completed"  # the same kind: reused


def torn_metrics_row_is_written_again(make_cfg, tmp_path, capfd):
    """Issue 33, item 2: killed after its last checkpoint with metrics.csv's last line torn (cut in
    its value, or in its step): the rerun resumes from an earlier checkpoint, so the final file
    equals the uninterrupted run's, row for row."""
    reference = run_one(make_cfg(*FAST), tmp_path / "ref")
    whole = (tmp_path / "ref" / "metrics.csv").read_bytes()
    for cut in (9, len(whole.rsplit(b"\n", 2)[-2]) - 1):  # within the value; within the step ("20", no comma)
        out = tmp_path / f"cut{cut}"
        run_one(make_cfg(*FAST), out)
        (out / "summary.json").unlink()
        (out / "metrics.csv").write_bytes(whole[:-cut])
        summary = run_one(make_cfg(*FAST), out)
        assert "metrics.csv's last line is torn" in capfd.readouterr().err
        assert (out / "metrics.csv").read_bytes() == whole and summary["final"] == reference["final"]
        assert "step00000010-" in summary["resumed_from"]


def extension_that_rescales_a_bn_schedule_is_refused(make_cfg, tmp_path, capfd):
    """Issue 33, item 8: FrozenBN's freeze step and Batch Renorm's ramp scale with trainer.max_steps,
    so a finished (or interrupted) run is not extended in place under them; a plain BN run is."""
    for extra in (["bn.freeze_after=0.5"], ["bn.norm=renorm", "bn.placement=before"]):
        out = tmp_path / extra[0]
        run_one(make_cfg(*FAST, *extra), out)
        for interrupted in (False, True):
            if interrupted:
                (out / "summary.json").unlink()
            before = snapshot(out)
            with pytest.raises(BnreproError, match=re.escape(f"{extra[0]}") + ".*trained for trainer.max_steps=20"
                               ".*in proportion to trainer.max_steps.*own directory"):
                run_one(make_cfg(*FAST, *extra, "trainer.max_steps=40"), out)
            assert snapshot(out) == before
    run_one(make_cfg(*FAST), tmp_path / "plain")
    assert run_one(make_cfg(*FAST, "trainer.max_steps=40"), tmp_path / "plain")["steps"] == 40


def killed_job_with_unreadable_metrics_is_not_running(make_cfg, tmp_path, capfd):
    """Issue 33, item 4: summary.json gone and metrics.csv unreadable, no process holding the lock:
    `summarize` says interrupted and names the file, where it said `running`; under a live lock
    the same job is running."""
    from bnrepro.analysis.summarize import summarize
    from bnrepro.training.rundir import lock

    sweep = tmp_path / "sweep"
    run_one(make_cfg(*FAST), sweep / "seed=0")
    (sweep / "seed=0" / "summary.json").unlink()
    (sweep / "seed=0" / "metrics.csv").write_bytes(b"\x00\xff\xfe" * 50)
    (sweep / "seed=0" / ".lock").write_text("pid 1 on host gone\n")  # left by the killed run, unlocked
    row = summarize(sweep).iloc[0]
    assert row.status == "interrupted" and f"{sweep / 'seed=0' / 'metrics.csv'} cannot be read" in row.error
    assert "no process holds its lock" in row.error
    with lock(sweep / "seed=0"):
        assert summarize(sweep).iloc[0].status == "running"


def long_job_name_is_cut_to_a_valid_directory(make_cfg, tmp_path, capfd):
    """Issue 33, item 11: a sweep job's name (its overrides) over 255 bytes was two chained 'File name
    too long' tracebacks when Hydra made its directory. Whole leading items are kept, then a hash of
    the whole name, so two cut names stay apart; short names are unchanged."""
    from bnrepro.config import run_name

    long = "probe.percentiles=[" + ",".join(str(i / 10) for i in range(1, 300)) + "]"
    names = [run_name([f"seed={s}", "data=synthetic", long]) for s in (0, 1)]
    for s, name in enumerate(names):
        assert len(name.encode()) <= 255 and name.startswith(f"seed={s},data=synthetic,hash=")
        (tmp_path / name).mkdir()
    assert names[0] != names[1] and run_name(["seed=0", "data=synthetic"]) == "seed=0,data=synthetic"
    timed = run_name([long], prefix="2026-01-01_00-00-00")
    assert timed.startswith("2026-01-01_00-00-00_hash=") and len(timed.encode()) <= 255


def full_disk_in_tensorboards_thread_is_one_paragraph(make_cfg, tmp_path, capfd):
    """Issue 33, item 12: the disk filling while TensorBoard's writer thread writes printed that
    thread's 'Exception in thread ... OSError: [Errno 28]' before the run's own paragraph. The
    runner's hook leaves the error to the main thread (which raises it at its next write)."""
    import errno
    import queue
    import threading

    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    from bnrepro.tracking.logger import quiet_writer_threads

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    original, seen = threading.excepthook, []
    try:
        threading.excepthook = lambda args: seen.append(args.exc_type)  # stands for Python's printing hook
        quiet_writer_threads()
        jobs = queue.Queue()
        writer = _AsyncWriterThread(jobs, FullDisk(), 120)
        writer.start()
        jobs.put(b"event")
        writer.join(10)
        assert isinstance(writer.exception, OSError)  # kept for the main thread to raise
        assert seen == []
        bug = threading.Thread(target=lambda: 1 / 0)  # any other thread's error keeps its traceback
        bug.start()
        bug.join()
        assert seen == [ZeroDivisionError]
    finally:
        threading.excepthook = original


FAULT_CASES: list = [
    pytest.param(second_writer_is_refused, id="lock-second-writer-refused-then-stale-taken-over"),  # subprocess
    pytest.param(stack_member_in_use_is_refused, id="lock-stack-member-in-use"),
    pytest.param(lock_released_however_the_run_ends, id="lock-released-on-interrupt"),
    pytest.param(refused_rerun_leaves_every_file_as_it_was, id="refused-rerun-cli-files-identical"),  # subprocess
    pytest.param(refused_in_process_writes_nothing, id="refused-rerun-session-files-identical"),
    pytest.param(uncreatable_output_dir_hydra, id="uncreatable-output-dir-hydra-callback"),
    pytest.param(unwritable_output_dir_in_process, id="unwritable-output-dir-session"),
    pytest.param(read_only_run_dir, id="read-only-run-dir-cli"),  # subprocess
    pytest.param(full_disk_during_checkpoint, id="file-size-limit-during-checkpoint-cli"),  # subprocess
    pytest.param(truncated_summary_in_a_sweep, id="truncated-summary-summarize-damaged"),
    pytest.param(truncated_summary_rerun_resumes, id="truncated-summary-rerun-resumes"),
    pytest.param(sweep_user_error_without_traceback, id="sweep-user-error-no-traceback"),  # subprocess
    pytest.param(stale_temp_files_are_removed, id="stale-temp-files-removed"),
    pytest.param(only_checkpoint_corrupt_says_so, id="only-checkpoint-corrupt-truthful-message"),
    pytest.param(shortened_finished_run_is_refused, id="shrunk-max-steps-finished-refused"),
    pytest.param(shortened_interrupted_run_is_refused, id="shrunk-max-steps-checkpoint-refused"),
    pytest.param(stack_parent_is_not_a_job, id="summarize-stack-parent-not-a-job"),
    pytest.param(torn_metrics_row_is_written_again, id="torn-metrics-row-rewritten-on-resume"),
    pytest.param(extension_that_rescales_a_bn_schedule_is_refused, id="extension-rescaling-bn-schedule-refused"),
    pytest.param(killed_job_with_unreadable_metrics_is_not_running, id="summarize-killed-job-unreadable-metrics"),
    pytest.param(long_job_name_is_cut_to_a_valid_directory, id="sweep-job-name-over-255-bytes-cut"),
    pytest.param(full_disk_in_tensorboards_thread_is_one_paragraph, id="full-disk-tensorboard-thread-no-traceback"),
    pytest.param(run_kinds_never_share_a_directory, id="stack-into-single-and-single-into-stack-refused"),
]


@pytest.mark.parametrize("case", FAULT_CASES)
def test_fault(case, make_cfg, tmp_path, capfd):
    case(make_cfg, tmp_path, capfd)
