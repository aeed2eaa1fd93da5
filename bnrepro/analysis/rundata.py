"""A sweep's run data in one small file: what the plots, reports and tables of results/ read.

`pack(sweep_dir, out_file)` writes every job directory's metrics.csv, summary.json, config.yaml,
provenance.json, test_probs.csv where a run saved one (trainer.save_predictions), shift.csv
where scripts/eval_shift.py wrote one (bn_shift) and statistics.csv where scripts/eval_statistics.py
did (bn_statistics_conv); nothing else (no TensorBoard events, checkpoints or Hydra logs), into one
xz-compressed tar file, with paths relative to the sweep directory and the files' modification
times kept (scripts fall back to them for wall times, bnrepro.analysis.sweeps.wall_times).
The archive is deterministic: members sorted by path, owner, group and permissions fixed, no
directory entries, so packing the same sweep twice gives the same bytes and an unchanged sweep
leaves the committed file unchanged. `unpack(file, sweep_dir)` restores those files (and their
times) under sweep_dir; reading it back with bnrepro.analysis.results gives the same frames as
the original sweep. No torch, no Hydra.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from bnrepro.analysis.results import find_jobs, find_runs

# shift.csv, statistics.csv: what bn_shift's and bn_statistics_conv's reports read, written after
# training from the checkpoint, which is not packed.
# full_test.json, test_probs_best_val.csv: protocol v2's whole-test-split records (trainer.final_test).
FILES = ("metrics.csv", "summary.json", "config.yaml", "provenance.json", "test_probs.csv", "shift.csv",
         "statistics.csv", "full_test.json", "test_probs_best_val.csv")
NAME = "rundata.tar.xz"  # its name beside a sweep's figures in results/<sweep>/


def members(sweep_dir: str | Path) -> list[Path]:
    """The files packed: FILES of every run (a directory with metrics.csv) and every job (one
    that failed before logging, bnrepro.analysis.results.find_jobs), sorted by relative path."""
    root = Path(sweep_dir)
    dirs = set(find_runs(root)) | set(find_jobs(root))
    files = [d / name for d in dirs for name in FILES if (d / name).is_file()]
    if not files:
        raise FileNotFoundError(f"No run files ({', '.join(FILES)}) under {root}.")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def last_layer_probes(csv: bytes) -> bytes:
    """A metrics.csv with only the deepest probed layer's probe rows (the layer of the last probe
    name written, as bnrepro.analysis.results.last_layer reads it): what Figure 1's drift and the
    sensitivity map read, at a third of the probe rows. Every other row is kept as written."""
    lines = csv.decode().splitlines(keepends=True)
    probes = [line.split(",", 3) for line in lines[1:] if line.split(",", 2)[1] == "probe"]
    if not probes:
        return csv
    layer = probes[-1][2].split("/")[0] + "/"
    kept = [line for line in lines[1:] if line.split(",", 2)[1] != "probe" or line.split(",", 3)[2].startswith(layer)]
    return "".join([lines[0], *kept]).encode()


def pack(sweep_dir: str | Path, out_file: str | Path, probes: str = "all") -> Path:
    """Write `members(sweep_dir)` to `out_file` (xz tar); unchanged bytes for an unchanged sweep.
    probes="last" keeps only the deepest layer's probe rows of each metrics.csv (last_layer_probes),
    for a sweep whose reports read nothing else. Written to a temporary name first, so a failed
    pack leaves the old copy whole."""
    if probes not in ("all", "last"):
        raise ValueError(f"probes must be 'all' or 'last', not {probes!r}")
    root, out = Path(sweep_dir), Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in members(root):
            data = path.read_bytes()
            if probes == "last" and path.name == "metrics.csv":
                data = last_layer_probes(data)
            info = tarfile.TarInfo(PurePosixPath(path.relative_to(root)).as_posix())
            info.size, info.mtime, info.mode = len(data), path.stat().st_mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    import lzma

    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    os.replace(tmp, out)
    return out


def unpack(file: str | Path, sweep_dir: str | Path) -> list[Path]:
    """Restore a packed sweep under `sweep_dir` (made if missing), files with their times; returns
    the paths written. Refuses members that would land outside sweep_dir."""
    root = Path(sweep_dir)
    written = []
    with tarfile.open(file, mode="r:xz") as tar:
        for info in tar:
            rel = PurePosixPath(info.name)
            if not info.isfile() or rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"{file}: unexpected member {info.name!r}; not a packed sweep (bnrepro.analysis.rundata).")
            path = root.joinpath(*rel.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tar.extractfile(info).read())
            os.utime(path, (info.mtime, info.mtime))
            written.append(path)
    return written
