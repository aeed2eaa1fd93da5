"""One writer per run directory, and what killed writers leave behind.

Two runs writing one directory would interleave metrics.csv and outrank each other's
checkpoints, so a run holds `RUN_DIR/.lock` (and, for a stack, the parent's and every member's)
from before its first check until it ends, however it ends. The lock is an `fcntl.flock` on that
file, which the kernel releases when the process dies (SIGKILL, OOM killer, power loss of a
node): a dead run's lock never blocks the next one. The file names its holder (pid, host, start
time) for the message a refused run prints; finding a file there whose lock nobody holds means
its writer died, which is said on stderr before the lock is taken over. The file is removed when
the run ends (the inode check in `_take` makes that safe against a run arriving meanwhile).

Under the lock nobody else writes the directory, so every temporary file of an atomic write
(`.NAME.<pid>.tmp`, bnrepro/files.py) left in it, or in its checkpoints/, is a killed writer's
leftover: `remove_leftovers` deletes them at start.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import sys
import time
from pathlib import Path
from typing import Iterator

from bnrepro import METRICS_COLUMNS, METRICS_FILE
from bnrepro.errors import BnreproError
from bnrepro.files import TMP_SUFFIX

LOCK_FILE = ".lock"


class RunDirInUse(BnreproError):
    """Another live process holds the run directory's lock."""


def _take(directory: Path) -> tuple[int, str]:
    """Open and flock directory/.lock without waiting: (fd, what the file said before, "" if new)."""
    path = directory / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 512).decode(errors="replace").strip() or "a process that has not written its name yet"
            os.close(fd)
            raise RunDirInUse(
                f"{directory} is in use by another run ({owner}; lock file {path}). Two runs in one directory would "
                "interleave their metrics and checkpoints, so this one is refused. Wait for that run to end, or give "
                "this run its own directory (hydra.run.dir=... / hydra.sweep.dir=...).") from None
        try:  # the file we locked must still be the one at `path` (its holder unlinks it as it ends)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd, os.read(fd, 512).decode(errors="replace").strip()
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold `directory`'s lock (made with the directory if missing) for the block; RunDirInUse if
    a live process holds it. A stale lock file (its writer died) is taken over with a note."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd, previous = _take(directory)
    try:
        if previous:
            print(f"Note: {path} was left by a run that is no longer running ({previous}); taking it over.",
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {platform.node()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a run that opened it meanwhile sees the inode change
        os.close(fd)


@contextlib.contextmanager
def lock_all(directories: list[Path]) -> Iterator[None]:
    """Every one of `directories` locked, in order (a stack: its parent, then its members)."""
    with contextlib.ExitStack() as stack:
        for directory in directories:
            stack.enter_context(lock(directory))
        yield


def held(directory: Path) -> bool:
    """Whether a live process holds `directory`'s lock (a run is writing there), asked without
    taking it (Linux's /proc/locks), so that a run starting meanwhile is never refused for it."""
    try:
        st = os.stat(directory / LOCK_FILE)
    except OSError:
        return False  # a run removes it as it ends; a killed one leaves it, unlocked
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            return any(key in line.split() for line in f)
    except OSError:  # no /proc: try the lock, and let it go at once
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def unfinished_record(directory: Path) -> dict[str, str]:
    """What a run directory without summary.json says of itself, for readers of run records
    (bnrepro.analysis.results.read_summary): {} (status running) while a live process holds its lock;
    else it was killed before it could write one, said as status `interrupted`, with its metrics.csv
    named when that cannot be read either."""
    if held(directory):
        return {}
    metrics = directory / METRICS_FILE
    try:
        with open(metrics, encoding="utf-8") as f:
            header = f.readline().strip()
        problem = None if header == ",".join(METRICS_COLUMNS) else f"{metrics} is not a metrics file (it starts {header[:40]!r})"
    except FileNotFoundError:
        problem = None
    except (OSError, UnicodeDecodeError) as err:
        problem = f"{metrics} cannot be read ({getattr(err, 'strerror', None) or err})"
    return {"status": "interrupted", "error": (
        f"{directory} has no summary.json and no process holds its lock: the run was killed before it could "
        "write one (SIGKILL, out of memory, a lost node)" + (f"; {problem}" if problem else "") + ". Rerun its "
        "command to resume it from its last checkpoint.")}


def kinds_in(directory: Path) -> dict[str, list[str]]:
    """The kinds of run `directory` holds, each with its evidence: the files a run writes once it
    has passed its refusals ("single": config.yaml, metrics.csv, checkpoints/step*.pt at the top;
    "stack": seed=<s>/ members, checkpoints/seeds=.../). A refused run's lone summary.json is
    neither."""
    single = [n for n in ("config.yaml", "metrics.csv") if (directory / n).is_file()]
    single += [f"checkpoints/{p.name}" for p in sorted((directory / "checkpoints").glob("step*.pt"))[:1]]
    stack = [f"{p.parent.name}/" for p in sorted(directory.glob("seed=*/config.yaml"))]
    stack += [f"checkpoints/{p.name}/" for p in sorted((directory / "checkpoints").glob("seeds=*")) if p.is_dir()]
    return {kind: found for kind, found in (("single", single), ("stack", stack)) if found}


def refuse_other_kind(directory: Path, stacked: bool) -> None:
    """The one rule for what lives in a run directory: one kind of run. A stack written into a
    single run's directory (or a single run into a stack's) would put its members beside that
    run's files and replace its .hydra/ record, and summaries would list a seed twice."""
    other = "single" if stacked else "stack"
    found = kinds_in(directory).get(other)
    if not found:
        return
    theirs = "a single run" if other == "single" else "a stack of seeds (seeds=[...])"
    ours = "a stack of seeds (seeds=[...])" if stacked else "a single run (seed=...)"
    raise BnreproError(
        f"{directory} already holds {theirs} ({', '.join(found[:4])}), and this is {ours}. One directory holds one "
        "kind of run: writing this one there would mix the two records. Give this run its own directory "
        "(hydra.run.dir=... / hydra.sweep.dir=...), or delete the old run.")


def remove_leftovers(directory: Path) -> list[Path]:
    """Delete the temporary files of killed atomic writes in `directory` and under its
    checkpoints/ (call with its lock held: then no live writer owns one). Returns them."""
    candidates = [*directory.glob(f".*{TMP_SUFFIX}"), *(directory / "checkpoints").rglob(f".*{TMP_SUFFIX}")]
    mine = f".{os.getpid()}{TMP_SUFFIX}"
    removed = [p for p in candidates if p.is_file() and not p.name.endswith(mine)]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        print(f"Note: removed {len(removed)} temporary file(s) of an interrupted write in {directory} "
              f"({', '.join(p.name for p in removed[:3])}{', ...' if len(removed) > 3 else ''}).", file=sys.stderr)
    return removed
