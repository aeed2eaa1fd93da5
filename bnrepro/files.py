"""Writing files so that a crash at any moment leaves either the old file or the new one, never
half of one: the one home of the suite's atomic writes (summaries, provenance, checkpoints,
truncated metrics, sweep tables, extracted data files).

A file is written under a temporary name in its own directory (`.NAME.<pid>.tmp`, so parallel
writers of the same file never share one), flushed and fsynced, then renamed over NAME.
"""
from __future__ import annotations

import contextlib
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
    except BaseException:
        tmp.unlink(missing_ok=True)
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
