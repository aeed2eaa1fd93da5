"""One run end to end (or one stack of seeds, each member a run of its own): check, set up,
train, and leave a complete record in each run directory.

A run directory holds: config.yaml (resolved), provenance.json, metrics.csv, TensorBoard
events, and summary.json (status completed | diverged | failed | interrupted, final and best
metrics, wall time, steps/s). Hydra's .hydra/ (the unresolved config and the overrides) is
written by the runner once the refusals are passed (`on_start`). Checkpoints go to checkpoints/
(bnrepro/training/checkpoint.py); under torchrun only rank 0 writes. With `seeds=[...]` every seed's run directory is `<run dir>/seed=<s>/`, holding
what the single run with `seed=<s>` writes; the stack's checkpoints are in
`<run dir>/checkpoints/seeds=.../`.

Before anything is written: a directory holding the other kind of run (a single run's, a
stack's) is refused (`rundir.refuse_other_kind`), the config is validated, members already finished in their run
directory with this config are not redone (a different config there is refused), and a
checkpoint of a different config is refused; a run holds its directory's lock throughout
(bnrepro/training/rundir.py), so a second writer is refused too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import yaml

from bnrepro.data import build_data
from bnrepro.errors import BnreproError
from bnrepro.files import unwritable, write_atomic, write_json
from bnrepro.schema import Config, choice, member_seeds, plain
from bnrepro.validation import fit_to_data, validate
from bnrepro import METRICS_FILE
from bnrepro.tracking.logger import VAL_METRICS, QuietLogger, RunLogger, flatten, intact_through, quiet_writer_threads
from bnrepro.training import distributed, final_eval, rundir
from bnrepro.training.checkpoint import Checkpointer, Interrupted, finished_run, refuse_changed_schedule
from bnrepro.training.hostmem import keep_host_memory
from bnrepro.training.loop import fit
from bnrepro.training.members import build_members, check_stackable

from bnrepro.training.record import (as_text, drift_metrics, ended_line, ending, new_summary, provenance,
                                     resolve_device, times)


def member_config(cfg: Config, seed: int) -> Config:
    """The config of the single run a member of `cfg` is: `seed` set, `seeds` unset."""
    return dataclasses.replace(cfg, seed=seed, seeds=None)


def save_config(cfg: Config, path: Path) -> None:
    """The resolved config as YAML, in the schema's order (what readers and resume compare)."""
    write_atomic(path, yaml.safe_dump(plain(cfg), sort_keys=False, default_flow_style=False))


def run(cfg: Config, out_dir: str | os.PathLike, threads: int | None = None,
        on_start: Callable[[], None] | None = None, sweep: Mapping[str, Sequence[str]] | None = None
        ) -> list[dict[str, object]]:
    """Train `cfg` into `out_dir` and return one summary per member (one for a single run), as
    written to each member's summary.json.

    Any exception is recorded as status `failed` (with the error) and re-raised; SIGTERM, Ctrl-C
    and SystemExit as `interrupted`. Members already finished in their directory with this
    config are not redone; their summaries are returned as they are. `threads`: torch threads
    when `trainer.threads` is unset (a parallel sweep's share of the cores). `on_start`: called
    once the refusals are passed, before the first file of the record is written (the runner
    writes Hydra's .hydra/ files there, so a refused rerun leaves them as they were). `sweep`: the
    keys the sweep this run belongs to varies, with their values as given (`{"seed": ["0", "1"]}`):
    TensorBoard's HParams table lists them first, marked as differing.

    The run directory (a stack: its parent and every member's) is locked for the whole run
    (bnrepro/training/rundir.py): a second writer is refused. A path that cannot be written (a
    full disk, a read-only or missing directory) is a BnreproError naming it."""
    out = Path(out_dir)
    stacked = cfg.seeds is not None
    locked = list(dict.fromkeys([out, *(out / f"seed={s}" for s in member_seeds(cfg))])) if stacked else [out]
    try:
        # Before the locks make member directories, and with no failed summary.json: the directory
        # belongs to the other run, whose record must stay exactly as it is.
        rundir.refuse_other_kind(out, stacked)
        with rundir.lock_all(locked if distributed.is_main() else []):  # under torchrun only rank 0 writes
            return _train(cfg, out, threads, on_start, sweep)
    except OSError as err:
        if (message := unwritable(err)) is None:
            raise
        raise BnreproError(message) from err


def _train(cfg: Config, out: Path, threads: int | None, on_start: Callable[[], None] | None,
           sweep: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, object]]:
    """`run`'s body, with the run directory locked."""
    start = time.perf_counter()
    stacked = cfg.seeds is not None
    seeds = member_seeds(cfg)
    configs = {s: member_config(cfg, s) if stacked else cfg for s in seeds}
    dirs = {s: out / f"seed={s}" if stacked else out for s in seeds}
    main_rank = distributed.is_main()  # under torchrun only rank 0 writes
    try:  # refusals come before anything is written
        validate(cfg)
        if stacked:
            check_stackable(cfg)
        finished = {s: prev for s in seeds if cfg.trainer.resume and (prev := finished_run(dirs[s], configs[s]))}
        todo = [s for s in seeds if s not in finished]
        if stacked and todo:  # the unfinished members train as a stack of their own
            cfg = dataclasses.replace(cfg, seeds=todo)
        checkpoints = Checkpointer.from_config(out, cfg, write=main_rank)
        if todo and not cfg.trainer.resume:
            checkpoints.clear()
        torn = [t for s in todo if (t := intact_through(dirs[s] / METRICS_FILE)) is not None]
        # refuses a checkpoint of another config
        start_step = checkpoints.load_latest(min(torn) if torn else None) if todo else 0
        if start_step:
            refuse_changed_schedule(cfg, checkpoints.loaded, dirs[todo[0]], checkpoints.last_path)
        if start_step > cfg.trainer.max_steps:
            raise BnreproError(
                f"{checkpoints.last_path} is of step {start_step}, further than trainer.max_steps="
                f"{cfg.trainer.max_steps}: the run in {out} already went further than this one asks for. Pass "
                f"trainer.max_steps={start_step} or more to finish it, trainer.resume=false to start over there, or "
                "give this run its own directory (hydra.run.dir=...).")
    except BnreproError as err:
        # Recorded where no run has left its record yet (a sweep lists the job as failed); an
        # earlier run's record is never touched by a refused one.
        for s, d in dirs.items():
            if main_rank and not any((d / f).exists() for f in ("summary.json", "config.yaml")):
                d.mkdir(parents=True, exist_ok=True)
                write_json(d / "summary.json", {**new_summary(configs[s]), **ending(err), **times(start)})
        raise
    for s, previous in finished.items():
        print(f"{dirs[s]} already holds this run ({previous['status']}); not rerunning it.", file=sys.stderr)
    if not todo:
        return [finished[s] for s in seeds]
    summaries = {s: {**new_summary(configs[s]), **({"stacked_seeds": todo} if stacked else {})} for s in todo}
    try:
        if threads := cfg.trainer.threads or threads:
            torch.set_num_threads(threads)
        keep_host_memory()  # the same bits, faster on a CPU (results/bench/host_memory.txt)
        device = distributed.device_for_rank(resolve_device(cfg.trainer.device))
        # The data's own refusals (a split too large for it, a batch larger than it) come before the
        # record is written: a refused run leaves its failed summary.json alone, as a bad config does.
        data = build_data(cfg.data, batch_size=cfg.trainer.batch_size, eval_batch_size=cfg.trainer.eval_batch_size,
                          device=device)
        cfg, note = fit_to_data(cfg, data.train_size, data.name)
        if note:
            print(f"Note: {note}", file=sys.stderr)
            data = dataclasses.replace(data, notes=(*data.notes, note))
        if main_rank:
            for d in {out, *dirs.values()}:
                rundir.remove_leftovers(d)
            if on_start is not None:
                on_start()
            for s in todo:
                dirs[s].mkdir(parents=True, exist_ok=True)
                save_config(configs[s], dirs[s] / "config.yaml")
        provenances = {s: {**provenance(configs[s], device), **({"stacked_seeds": todo} if stacked else {})}
                       for s in todo}
        if main_rank:
            for s in todo:
                write_json(dirs[s] / "provenance.json", provenances[s])
        members = build_members(cfg, data.input_shape, data.num_classes, device)
        if start_step:
            for s in todo:
                summaries[s]["resumed_from"] = str(checkpoints.last_path)
        name = f"{cfg.variant} " + (f"seeds={','.join(map(str, todo))}" if stacked else f"seed={cfg.seed}")
        logger = RunLogger if main_rank else QuietLogger
        swept = dict(sweep or {})
        domains = {k: v for k, v in swept.items() if k != "seed" and v}
        domains["seed"] = sorted(set(todo) | {int(v) for v in swept.get("seed", ()) if str(v).lstrip("-").isdigit()})
        drift = drift_metrics(cfg)
        metrics = [*(VAL_METRICS if data.val_size else ()), *drift]
        if main_rank:
            print(f"{name}: writing to {out}", file=sys.stderr, flush=True)
        with contextlib.ExitStack() as stack:
            logs = [stack.enter_context(logger(dirs[s], flatten(plain(configs[s])), cfg.trainer.max_steps,
                                               choice(cfg.trainer.progress) if i == 0 else "none", name, start_step,
                                               swept=list(swept), domains=domains, metrics=metrics,
                                               table=sweep is None))
                    for i, s in enumerate(todo)]
            stack.enter_context(checkpoints)
            train_start = time.perf_counter()
            # An exception ends each logger's session as failed or interrupted (RunLogger.__exit__).
            results, timing = fit(members, data, cfg, logs, checkpoints)
            train_time = time.perf_counter() - train_start
            # Protocol v2 (trainer.keep_best_val, trainer.final_test): best_val.pt, full_test.json.
            after = final_eval.after_training(cfg, [configs[s] for s in todo], [dirs[s] for s in todo], members,
                                              results, data)
            after_time = {"final_eval_time_s": round(time.perf_counter() - train_start - train_time, 3)} if (
                cfg.trainer.final_test or cfg.trainer.keep_best_val) else {}
            model_steps = sum(r.steps - start_step for r in results)
            for i, (s, r, log) in enumerate(zip(todo, results, logs)):
                summaries[s].update(
                    status=r.status, divergence=r.divergence, steps=r.steps, stopped=r.stopped, final=r.final,
                    best_accuracy=r.best_accuracy, best_step=r.best_step, drift=r.drift,
                    **({"best_val_accuracy": r.best_val_accuracy, "best_val_step": r.best_val_step,
                        "val_size": data.val_size} if data.val_size else {}),
                    train_time_s=round(train_time, 3), steps_per_s=round((r.steps - start_step) / train_time, 1),
                    data_source=data.source, data_notes=list(data.notes), **{k: round(v, 3) for k, v in timing.items()},
                    **({"model_steps_per_s": round(model_steps / train_time, 1)} if stacked else {}), **after_time,
                    **({"full_test": {k: v["test_accuracy"] for k, v in after[i].items() if isinstance(v, dict)}}
                       if i in after else {}))
                log.final(r.steps, {tag: r.drift[layer][stat] for tag, (layer, stat) in drift.items()
                                    if stat in r.drift.get(layer, {})})
                log.text("summary.json", as_text({**summaries[s], **times(start)}), r.steps)
                log.text("provenance.json", as_text(provenances[s]), r.steps)
                log.end(r.status)
    except BaseException as err:
        for summary in summaries.values():
            summary.update(ending(err))
        raise
    finally:
        stamps = times(start)  # one process for every member: the same times, counted once
        if main_rank:
            for s in todo:
                if dirs[s].is_dir():
                    try:
                        write_json(dirs[s] / "summary.json", {**summaries[s], **stamps})
                    except OSError as err:  # a full disk: say so, without hiding why the run ended
                        print(f"Could not write {dirs[s] / 'summary.json'}: {err.strerror}.", file=sys.stderr)
            if summaries:
                print(ended_line(out, {s: summaries[s] for s in todo}), file=sys.stderr, flush=True)
    return [finished[s] if s in finished else {**summaries[s], **stamps} for s in seeds]


def remove_refused(out: Path) -> None:
    """Remove `out`, a directory Hydra made for a single run that was refused, when all it holds is
    what the refusal wrote (`failed` summary.json files; bnrepro.training.session._train): nothing
    of a run that started."""
    files = [p for p in out.rglob("*") if p.is_file()]
    if all(p.name == "summary.json" for p in files):
        import shutil

        shutil.rmtree(out, ignore_errors=True)


def main(load: Callable[[], Config], out_dir: str | os.PathLike, sweep_dir: str | os.PathLike | None = None,
         threads: int | None = None, on_start: Callable[[], None] | None = None,
         sweep: Mapping[str, Sequence[str]] | None = None) -> None:
    """The runner's body (experiments/train.py): `load()` gives the typed config, `run` trains it
    (`on_start`: see `run`); a user error in either is one paragraph on stderr and exit status 2.

    Inside a multirun (`sweep_dir` given) the error is raised instead, so Hydra records the job as
    failed and the sweep's other jobs still run (the runner turns it into an error Hydra prints
    as its message alone: bnrepro.config.compact_errors); each job, however it ends, refreshes the
    sweep's summary.csv (Hydra skips on_multirun_end callbacks when a job failed, so nothing waits
    for the sweep's end). SIGTERM / Ctrl-C stop the run (and the sweep) after a checkpoint, exit
    status 128 + signal. A file-size limit (`ulimit -f`) makes a too-large write fail with EFBIG,
    reported like a full disk, instead of killing the process with SIGXFSZ mid-write.
    """
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    quiet_writer_threads()  # a full disk under TensorBoard's thread: the paragraph alone
    fresh = sweep_dir is None and Path(out_dir).is_dir() and not any(Path(out_dir).iterdir())
    try:
        cfg = load()
        if sweep_dir is not None and distributed.is_main():
            from bnrepro.tracking import replay

            # The table lists what differs between this run and the sweep's others, not only what
            # this command sweeps (a run added to an existing sweep with another rate).
            sweep = {**{k: [] for k in replay.sweep_keys(Path(sweep_dir), plain(cfg))}, **(sweep or {})}
        run(cfg, out_dir, threads, on_start, sweep if sweep_dir is not None else None)
    except BnreproError as err:
        if sweep_dir is not None:
            raise
        if fresh:  # Hydra made it for this run: a refused one leaves no directory behind
            remove_refused(Path(out_dir))
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:
        print(f"Interrupted: {err}. Rerun the same command (same output directory) to resume.", file=sys.stderr)
        sys.exit(128 + err.signum)
    finally:
        if sweep_dir is not None and distributed.is_main():
            refresh_sweep(sweep_dir)


def refresh_sweep(sweep_dir) -> None:
    """The sweep's summary.csv and TensorBoard views, rewritten after each job. Under an exclusive lock on
    SWEEP/.views.lock: two processes writing one sweep (make fig2_v2's two chains) that end together would
    otherwise delete each other's view files mid-write."""
    import fcntl

    from bnrepro.analysis import summarize

    with open(Path(sweep_dir) / ".views.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        summarize.refresh(sweep_dir)
        try:  # the per-variant runs and the sweep's HParams table (bnrepro/tracking/replay.py)
            from bnrepro.tracking import replay

            replay.refresh_views(sweep_dir)
        except Exception as err:  # noqa: BLE001 - a view must not turn a finished job into a failure
            print(f"Could not refresh the TensorBoard views of {sweep_dir}: {type(err).__name__}: {err}",
                  file=sys.stderr)
    print(f"Sweep so far: {Path(sweep_dir) / summarize.SUMMARY_CSV}; "
          f"tensorboard --logdir {sweep_dir}", file=sys.stderr, flush=True)
