"""Every figure, table and report in results/, and the scorecard, from the sweeps' run data: plots read
metrics and never train. What each result renders is declared in bnrepro/analysis/registry.py.

    python scripts/figures.py              # every result, then the scorecard (make figures)
    python scripts/figures.py fig2 why     # only the results named (--list lists them), then the scorecard
    python scripts/figures.py --scorecard  # only the scorecard (make report)

A sweep missing from --root (a fresh clone) is first unpacked there from its committed copy,
results/<sweep>/rundata.tar.xz, so the reports come out byte for byte the same. Independent scripts run
side by side (--jobs, default 2: the machine's cores), the scorecard among them, each in a process forked
from this one after it imported pandas, matplotlib and the analysis package (an import costs ~0.7 s, and
there are ~50 scripts). Each prints the files it wrote; a failing script stops nothing else, and the
command then exits 1 naming it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bnrepro.analysis.registry import RESULTS, get, sweep
from bnrepro.analysis.rundata import NAME, unpack
from bnrepro.analysis.results import unfinished

REPO = Path(__file__).resolve().parents[1]


def unpack_missing(names: list[str], root: Path, results: Path) -> list[str]:
    """Each sweep missing under `root` unpacked from results/<sweep>/rundata.tar.xz; the sweeps with neither."""
    absent = []
    for name in names:
        target, packed = root / sweep(name), results / sweep(name) / NAME
        if target.is_dir():
            continue
        if packed.is_file():
            unpack(packed, target)
        else:
            absent.append(name)
    return absent


def preload() -> None:
    """What the scripts import, imported once here so that each forked script starts with it."""
    import bnrepro.analysis.plots  # noqa: F401 (matplotlib's Agg backend, pyplot, pandas)
    import bnrepro.analysis.scorecard  # noqa: F401 (the claims, the policy)


def child(argv: list[str], out: int, err: int) -> None:
    """In a forked process: run one script as `python script args` would, its output into out and err."""
    import runpy
    import traceback

    os.dup2(out, 1)
    os.dup2(err, 2)
    # fresh streams on the two descriptors: the inherited ones may buffer elsewhere (a test's capture)
    sys.stdout, sys.stderr = (open(fd, "w", encoding="utf-8", closefd=False) for fd in (1, 2))
    os.chdir(REPO)  # the scripts' relative arguments are the repository's, as `make figures` gives them
    sys.argv, sys.path[0] = list(argv), str((REPO / argv[0]).parent)
    code = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:  # sys.exit(n), sys.exit("message") or sys.exit()
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (reported as the script's own traceback would be)
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run_all(jobs: list[list[str]], width: int):
    """Yield (argv, returncode, stdout, stderr, seconds) of each script, as each ends, `width` at a time."""
    pending, running = list(jobs), {}
    while pending or running:
        while pending and len(running) < max(1, width):
            argv = pending.pop(0)
            out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child never returns into this loop, whatever happens in it
                try:
                    child(argv, out.fileno(), err.fileno())
                finally:
                    os._exit(1)
            running[pid] = (argv, out, err, time.perf_counter())
        pid, status = os.wait()
        argv, out, err, start = running.pop(pid)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
            f.close()
        yield argv, os.waitstatus_to_exitcode(status), texts[0], texts[1], time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="results to render (default: all; --list names them)")
    parser.add_argument("--root", type=Path, default=Path("outputs/results"), help="where the sweeps are")
    parser.add_argument("--results", type=Path, default=Path("results"), help="where the results go")
    parser.add_argument("--jobs", type=int, default=2, help="scripts run side by side")
    parser.add_argument("--scorecard", action="store_true", help="only the scorecard")
    parser.add_argument("--list", action="store_true", help="list the results and their sweeps")
    args = parser.parse_args(argv)
    if args.list:
        for r in RESULTS:
            print(f"{r.name:18s} {r.title} [{r.scope}]: sweeps {', '.join(sweep(s) for s in r.sweeps)}")
        return 0
    try:
        chosen = [get(n) for n in args.names] if args.names else list(RESULTS)
    except KeyError as err:
        print(f"Error: {err.args[0]} (python scripts/figures.py --list)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    # relative to the repository where inside it (the scripts run there, and reports name their inputs)
    root, results = (os.path.relpath(p.resolve(), REPO) if p.resolve().is_relative_to(REPO) else str(p.resolve())
                     for p in (args.root, args.results))
    # every call renders the scorecard, which reads every result's sweeps, not only the chosen ones
    needed = list(dict.fromkeys(s for r in RESULTS for s in r.sweeps))
    absent = unpack_missing(needed, REPO / root, REPO / results)
    if absent:
        print(f"Skipped (neither {args.root}/<sweep> nor results/<sweep>/{NAME}): "
              f"{', '.join(sweep(s) for s in absent)}", file=sys.stderr)
    running = {s: n for s in needed if s not in absent and (n := unfinished(REPO / root / sweep(s)))[0]}
    if running:  # its tables would be read from runs still training
        print("Skipped (runs unfinished; rerun the sweep's make target, which resumes them): " + ", ".join(
            f"{sweep(s)} ({n[0]} of {n[1]})" for s, n in running.items()), file=sys.stderr)
        absent += list(running)
    # a render is skipped where a sweep it reads is: {root}/<sweep> among its arguments
    renders = [] if args.scorecard else [c for r in chosen for c in r.renders
                                         if not any(f"{{root}}/{sweep(s)}" in c for s in absent)]
    # the slowest first, so that the pool's last job is a short one
    renders.sort(key=lambda c: -("sensitivity" in c[0] or "fig1.py" in c[0]))
    jobs = [[c[0], *(a.format(root=root, results=results) for a in c[1:])]
            for c in [("scripts/scorecard.py", "{root}", "--out", "{results}"), *renders]]
    failed, took = [], []
    preload()
    for argv, code, out, err, seconds in run_all(jobs, args.jobs):
        sys.stdout.write(out)
        took.append((seconds, Path(argv[0]).name))
        if code:
            failed.append(" ".join(argv))
            sys.stderr.write(err)
    slowest = ", ".join(f"{name} {s:.1f} s" for s, name in sorted(took, reverse=True)[:3])
    print(f"{len(took)} scripts in {time.perf_counter() - start:.1f} s (slowest: {slowest}); results in "
          f"{args.results}/", file=sys.stderr)
    print(f"TensorBoard: make tensorboard (python scripts/tensorboard_runs.py) writes event files for the sweeps "
          f"in {args.root}/", file=sys.stderr)
    if failed:
        print("Failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
