"""Bad inputs and faults, tried as a skeptical user would: every row asserts its outcome.

Outcomes (issue 12): a clear error (in-process: a BnreproError whose one paragraph names the key
or path, raised before any data is read; from the command line: exit status 2, no traceback),
a correct acceptance (the run does what was asked), or an exact resume. Each section below is a
table of cases; add a row for every new bad input the suite learns to catch.
"""
import dataclasses
import json
import re
import subprocess
import sys
import typing

import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from bnrepro.errors import BnreproError
from tests.conftest import REPO, SMOKE, run_one


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
    ("refused", ["seeds=[]"], "seeds=[] is not valid: seeds must be a non-empty list of distinct seeds"),
    ("refused", ["seeds=[1,1]"], "seeds=[1,1] is not valid"),
    ("refused", ["seed=-1"], "seed=-1 is not valid: seed must be in [0, 4294967295]"),
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
    # 6. Hydra's own composition errors: exit status 2 from the command line
    ("hydra", ["trainer.max_step=10"], (ConfigCompositionException, "trainer.max_step")),
    ("hydra", ["variant=bn_x99"], (MissingConfigException, "variant/bn_x99")),
    ("cli", ["trainer.max_step=10", *NO_DATA], ["trainer.max_step"]),  # every Hydra error: the same exit path
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
    ("runs", ["probe.every=0"], lambda summary, metrics: summary["status"] == "completed"
     and "probe" not in set(metrics.split)),  # 0 is the documented "off"
    ("runs", ["probe.mode=eval", "trainer.progress=lines"], lambda summary, metrics: summary["status"] == "completed"
     and (metrics.split == "probe").any()),
]


def _case_id(case) -> str:
    return f"{case[0]}:{' '.join(o for o in case[1] if o not in NO_DATA)}"


@pytest.mark.parametrize("kind, overrides, expected", CONFIG_CASES, ids=map(_case_id, CONFIG_CASES))
def test_config_case(make_cfg, tmp_path, kind, overrides, expected):
    from bnrepro.schema import validate

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
        assert not (tmp_path / "run" / "config.yaml").exists()
    else:
        raise AssertionError(f"unknown kind {kind!r}")


def test_every_numeric_field_has_a_rule():
    """A field that holds numbers gets a rule in schema.RULES (enums, bools and free strings need none):
    a new field cannot slip past validation."""
    from bnrepro import schema

    def numeric(tp) -> bool:
        return any(a in (int, float) or numeric(a) for a in typing.get_args(tp)) or tp in (int, float)

    def fields(cls, prefix=""):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                yield from fields(tp, f"{prefix}{f.name}.")
            elif numeric(tp):
                yield f"{prefix}{f.name}"

    ruled = {key for key, _, _ in schema.RULES}
    assert set(fields(schema.Config)) - ruled == set()
    assert len(CONFIG_CASES) >= 25 and sum(kind == "cli" for kind, *_ in CONFIG_CASES) <= 4

# --- the data: missing, partial, corrupt, non-finite, out-of-range labels ------------------------
DATA_CASES: list = []

# --- faults: run directories, signals, disks, damaged records, sweeps ---------------------------
FAULT_CASES: list = []
