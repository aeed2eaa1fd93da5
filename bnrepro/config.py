"""The Hydra side of the suite: the only module besides the runner that knows Hydra and OmegaConf.

It registers the dataclass schemas of `bnrepro/schema.py` as `config_schema` (listed first in
`configs/train.yaml`'s defaults) and the resolvers the YAML files use, turns a composed
`DictConfig` into the typed `schema.Config` the library takes (`typed`), composes configs outside
a Hydra app (`compose`, for the benchmark and tests), and reads what only Hydra knows about the
current job (`job`: its output directory, the sweep it belongs to, the threads it may use). For
the runner it also writes Hydra's record of a job once the run may start (`save_hydra_record`),
prints a sweep job's user error without a traceback (`compact_errors`) and refuses an output
directory that cannot be made (`OutputDirCheck`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bnrepro.errors import BnreproError
from bnrepro.schema import Config, scaled_lr, schedule_steps, steps_for

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def register() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)
    # Arithmetic the YAML files may use (configs/experiment/norm_batchsize.yaml, fig2_fashion_mnist.yaml).
    OmegaConf.register_new_resolver("steps_for", steps_for, replace=True)
    OmegaConf.register_new_resolver("scaled_lr", scaled_lr, replace=True)
    OmegaConf.register_new_resolver("schedule_steps", schedule_steps, replace=True)
    # Run directory names (configs/train.yaml's hydra.run.dir, hydra.sweep.subdir).
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)


# Keys that lead a run's name, after the swept ones: what tells Figure 1's runs apart.
LEADING = ("variant", "seed", "seeds")


def run_name(task, exclude=(), sweep_dir: str | None = None, prefix: str = "") -> str:
    """A run directory's name from its overrides (Hydra's `hydra.overrides.task`), `key=value`
    joined by commas like Hydra's `override_dirname`, but with the deciding keys first, where a
    truncated name (TensorBoard's run list, legends) still tells runs apart: the keys the sweep in
    sweep varies (`command_sweep`: this process's own command, so that runs keep their names when
    processes sweeping other keys share `sweep_dir`), then variant and seed, then the rest in key
    order. `exclude`: keys left out (paths, devices). `prefix` (a single run's time) is joined by `_`."""
    swept = list(command_sweep(Path(sweep_dir))) if sweep_dir else []
    items = []
    for override in task:
        key, sep, value = str(override).partition("=")
        if sep and key.lstrip("+~") not in exclude:
            items.append((key, value))
    order = {k: i for i, k in enumerate([*swept, *(k for k in LEADING if k not in swept)])}
    items.sort(key=lambda kv: (order.get(kv[0].lstrip("+~"), len(order)), kv[0]))
    return fit_name(prefix, [f"{k}={v}" for k, v in items])


NAME_MAX = 255  # bytes in one path component, on every common file system


def fit_name(prefix: str, items: list[str]) -> str:
    """`prefix` and the `key=value` items joined (`prefix_k=v,k=v`), or, past NAME_MAX bytes, as many
    whole leading items as fit with `hash=<digest of the whole name>` appended so that cut names
    stay apart: Hydra cannot make a longer directory (a traceback), and config.yaml keeps every
    override anyway."""
    def join(parts: list[str]) -> str:
        return "_".join(p for p in (prefix, ",".join(parts)) if p) or "run"

    name = join(items)
    if len(name.encode()) <= NAME_MAX:
        return name
    tail = "hash=" + hashlib.sha256(name.encode()).hexdigest()[:12]
    kept = list(items)
    while kept and len(join([*kept, tail]).encode()) > NAME_MAX:
        kept.pop()
    return join([*kept, tail]).encode()[:NAME_MAX].decode(errors="ignore")


register()


def unknown_keys(node: dict, schema: type, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """Every key of the plain config `node` that the dataclass `schema` lacks, with the keys it has
    there, recursing into nested dataclasses. Hydra refuses `trainer.max_step=10`, but appending
    (`+trainer.max_step=10`, what its own message suggests) passes, and `OmegaConf.to_object`
    then drops the key: the run would ignore a setting it was given."""
    hints = typing.get_type_hints(schema)
    fields = [f.name for f in dataclasses.fields(schema)]
    for key, value in node.items():
        if key not in fields:
            yield f"{prefix}{key}", fields
        elif isinstance(value, dict) and dataclasses.is_dataclass(hints[key]):
            yield from unknown_keys(value, hints[key], f"{prefix}{key}.")


def unknown_key_error(key: str, fields: list[str]) -> BnreproError:
    """`key` is not in the schema: the error naming it and the closest key there is."""
    parent, _, name = key.rpartition(".")
    where = f"{parent}." if parent else ""
    close = difflib.get_close_matches(name, fields, n=1)
    hint = (f"did you mean {where}{close[0]}? Set it as {where}{close[0]}=... (no '+')" if close else
            f"the keys of {parent or 'the config'} are: {', '.join(fields)}")
    return BnreproError(f"{key} is not a key of the config, so the run would ignore it; {hint}. "
                        "`python experiments/train.py --cfg job` prints every key the config has.")


def check_keys(cfg: DictConfig) -> None:
    """Refuse a key the schema does not have, naming it and the closest key the schema has."""
    plain_cfg = OmegaConf.to_container(cfg, resolve=False)  # no interpolation is resolved here
    plain_cfg.pop("hydra", None)
    for key, fields in unknown_keys(plain_cfg, Config):
        raise unknown_key_error(key, fields)


def check_override_keys(args: list[str]) -> None:
    """Refuse a command-line override of a key the schema lacks (`trainer.max_step=10`) with the
    closest key, before Hydra composes: Hydra's own error suggests appending it with `+`, which
    `check_keys` then refuses. `+`/`~` overrides, Hydra's keys and config-group paths are left to
    Hydra and `check_keys`."""
    for arg in args:
        key, sep, _ = arg.partition("=")
        if not sep or arg.startswith(("-", "+", "~")) or "/" in key or "@" in key or key.startswith("hydra."):
            continue
        schema = Config
        parts = key.split(".")
        for i, part in enumerate(parts):
            fields = [f.name for f in dataclasses.fields(schema)]
            if part not in fields:
                raise unknown_key_error(key, fields) if i == len(parts) - 1 else unknown_key_error(
                    ".".join(parts[:i + 1]), fields)
            hint = typing.get_type_hints(schema)[part]
            if not dataclasses.is_dataclass(hint):
                break
            schema = hint


def typed(cfg: DictConfig) -> Config:
    """The composed config as `schema.Config` dataclasses, every interpolation resolved; a key the
    schema lacks is refused (`check_keys`)."""
    check_keys(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except Exception as err:  # noqa: BLE001 - an unresolvable interpolation, a missing value
        raise BnreproError(f"The config could not be resolved: {err}. Check the overrides "
                           "(`python experiments/train.py --cfg job ...` prints the composed config).") from err


def compose(*overrides: str) -> Config:
    """`configs/train.yaml` composed with `overrides`, as the runner would, outside a Hydra app."""
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return typed(hydra_compose(config_name="train", overrides=list(overrides)))


@dataclass(frozen=True)
class Job:
    """What Hydra knows about the running job that the library needs, as plain values."""

    out_dir: Path  # Hydra's output directory for this job: everything the run writes goes here
    sweep_dir: Path | None  # the multirun's directory (None for a single run)
    threads: int | None  # torch threads for a job of a parallel sweep (None: torch's default)
    sweep: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # swept key -> its values


def swept_overrides(overrides) -> dict[str, list[str]]:
    """The keys a list of override strings sweeps (`seed=0,1,2`, `range(3)`, `glob(...)`), each with
    its values as strings, in the order given: {"seed": ["0", "1", "2"]}."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides([str(x) for x in overrides]):
        if o.is_sweep_override() and not o.is_hydra_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # noqa: BLE001 - a glob over config groups: the key is enough
                values = []
            out[o.get_key_element()] = values
    return out


def sweep_in(config: DictConfig) -> dict[str, list[str]]:
    """What a multirun's config (the sweeper's, before the jobs' own values replace its
    `hydra.overrides.task`) sweeps: its command's overrides and `hydra.sweeper.params`."""
    params = config.hydra.sweeper.get("params") or {}
    return swept_overrides([*config.hydra.overrides.task, *(f"{k}={v}" for k, v in params.items())])


def sweep_of(sweep_dir: Path) -> dict[str, list[str]]:
    """What the multirun in `sweep_dir` sweeps, from the `multirun.yaml` Hydra's sweeper writes
    there before any job starts (a job's own config holds its own values only); {} if unreadable.
    The last process launched into `sweep_dir` wrote it: a job names itself by `command_sweep`."""
    try:
        return sweep_in(OmegaConf.load(sweep_dir / "multirun.yaml"))
    except Exception:  # noqa: BLE001 - a missing or foreign file: no sweep keys, nothing else lost
        return {}


# This process's sweep ({"dir": its sweep directory, "sweep": {key: values}}, JSON), set by OutputDirCheck
# when its multirun starts: an environment variable, which a joblib launcher's workers inherit (and Slurm's
# jobs, under sbatch's default --export=ALL).
SWEEP_ENV = "BNREPRO_SWEEP"


def command_sweep(sweep_dir: Path) -> dict[str, list[str]]:
    """What this process's own multirun sweeps. Every process launched into one sweep directory
    overwrites its multirun.yaml (make's halves sweep different keys into one directory), so a
    run named from that file could be named otherwise on a resume and trained again; the file is
    the fallback for a job started without the callback."""
    saved = json.loads(os.environ.get(SWEEP_ENV) or "{}")
    if saved.get("dir") == str(Path(sweep_dir).absolute()):
        return saved["sweep"]
    return sweep_of(sweep_dir)


def job() -> Job:
    """The current Hydra app's job (experiments/train.py)."""
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    sweep_dir = Path(hydra.sweep.dir) if multirun else None
    return Job(Path(hydra.runtime.output_dir), sweep_dir, threads_per_job(), command_sweep(sweep_dir) if multirun else {})


def threads_per_job() -> int | None:
    """Torch threads for a job of a joblib sweep (hydra/launcher=local): the cores this process may
    use, divided among `hydra.launcher.n_jobs` parallel jobs, so they do not oversubscribe the CPU.
    None (torch's default) outside such a sweep; `trainer.threads` wins when set."""
    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    jobs = launcher.n_jobs if launcher.n_jobs and launcher.n_jobs > 0 else cores
    return max(1, cores // jobs)


def save_hydra_record(cfg: DictConfig, out_dir: str | os.PathLike) -> None:
    """Hydra's own record of the job (`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`), as
    Hydra writes it, into `out_dir`. configs/train.yaml turns Hydra's writing off
    (`hydra.output_subdir: null`: Hydra would write them before the job starts, so even a rerun
    that is refused would overwrite the record of the run already there); the runner passes
    this to the session, which calls it once the refusals are passed."""
    from bnrepro.files import write_atomic

    hydra = HydraConfig.get()
    record = Path(out_dir) / ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    write_atomic(record / "config.yaml", OmegaConf.to_yaml(cfg))
    write_atomic(record / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra})))
    write_atomic(record / "overrides.yaml", OmegaConf.to_yaml(hydra.overrides.task))


class JobFailed(CompactHydraException):
    """A job's user error inside a multirun: Hydra records the job as failed and prints this
    message alone, where any other exception gets its traceback (hydra's run_and_report)."""


@contextlib.contextmanager
def compact_errors() -> Iterator[None]:
    """Re-raise a BnreproError (in a sweep, bnrepro.training.session.main raises it rather than
    exiting) as JobFailed: one paragraph on stderr, no traceback; bugs keep theirs."""
    try:
        yield
    except BnreproError as err:
        raise JobFailed(f"Error: {err}") from None


class OutputDirCheck(Callback):
    """Hydra creates the run (or sweep) directory before the job starts, and a failure there is
    a traceback; this callback (configs/train.yaml, hydra.callbacks) tries first and turns an
    unwritable path into the one paragraph and exit status 2. At a multirun's start it also
    records what this process sweeps (`SWEEP_ENV`), which names the jobs' directories."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.sweep.dir)
        # Before any job names its directory; keyed by the directory, which a process's jobs share.
        sweep_dir = str(Path(config.hydra.sweep.dir).absolute())
        os.environ[SWEEP_ENV] = json.dumps({"dir": sweep_dir, "sweep": sweep_in(config)})
        print(f"Sweep: output in {Path(config.hydra.sweep.dir).absolute()}", file=sys.stderr, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        # Hydra skips this when a job failed; each job's own last lines name the sweep then.
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        print(f"Sweep done: output in {sweep_dir} (summary.csv; tensorboard --logdir {sweep_dir})",
              file=sys.stderr, flush=True)

    @staticmethod
    def _check(directory: str) -> None:
        from bnrepro.files import unwritable

        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            print(f"Error: {unwritable(err) or f'Could not create {directory}: {err}.'}", file=sys.stderr)
            sys.exit(2)
