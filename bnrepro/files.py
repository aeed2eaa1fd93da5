"""Writing files so that a crash at any moment leaves either the old file or the new one, never
half of one: the one home of the suite's atomic writes (summaries, provenance, checkpoints,
truncated metrics, sweep tables, extracted data files).

A file is written under a temporary name in its own directory (`.NAME.<pid>.tmp`, so parallel
writers of the same file never share one), flushed and fsynced, then renamed over NAME.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator

TMP_SUFFIX = ".tmp"


def tmp_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", sync_dir: bool = False, **kwargs) -> Iterator[IO]:
    """`open(path, mode)` for writing, renamed into place only when the block ends without an error.

    sync_dir: also fsync the directory, so that the rename itself survives a power cut (checkpoints)."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)  # a full disk or a kill leaves the old file, never a part of the new one
        # write() errors (a full disk) name no file: name ours. Only plain system errors: an error of
        # what the block was reading (gzip.BadGzipFile is an OSError too) keeps its type.
        if type(err) is OSError and err.errno is not None and err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    if sync_dir:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike, data: str | bytes, sync_dir: bool = False) -> Path:
    """Write `data` (text or bytes) to `path` atomically; returns the path."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w", sync_dir=sync_dir) as f:
        f.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented, key-sorted JSON (values JSON cannot hold as their str()), atomically."""
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# Why a write failed, in the user's words, and what to do about it (`unwritable`).
_RESUME = ", then rerun the same command: a run stopped this way resumes from its last checkpoint"
_WRITE_ERRORS = {
    errno.ENOSPC: ("the disk is full", "Free some space" + _RESUME),
    errno.EDQUOT: ("the disk quota is exhausted", "Free some space" + _RESUME),
    errno.EFBIG: ("the file is larger than this process may write (the shell's `ulimit -f`) or the file system "
                  "allows", "Raise the limit (`ulimit -f unlimited`)" + _RESUME),
    errno.EROFS: ("the file system is mounted read-only", "Choose a writable directory (hydra.run.dir=... / "
                  "hydra.sweep.dir=...)"),
    errno.EACCES: ("permission denied", "Make it writable, or choose another directory (hydra.run.dir=...)"),
    errno.EPERM: ("the operation is not permitted", "Make it writable, or choose another directory "
                  "(hydra.run.dir=...)"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "Choose another directory "
                    "(hydra.run.dir=... / hydra.sweep.dir=...)"),
    errno.EEXIST: ("a file of that name is in the way", "Choose another directory (hydra.run.dir=...)"),
}


def unwritable(err: OSError) -> str | None:
    """The one paragraph for an OSError that means "this path cannot be written" (full disk,
    file-size limit, read-only or foreign directory); None for any other OSError (a bug)."""
    if err.errno not in _WRITE_ERRORS:
        return None
    reason, fix = _WRITE_ERRORS[err.errno]
    where = f"{err.filename}" if err.filename else "the output directory"
    return f"Could not write {where}: {reason} ({err.strerror}). {fix}."
