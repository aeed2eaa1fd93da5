"""Every figure, table and report in results/, and the scorecard, from the sweeps' run data: plots read
metrics and never train. What each result renders is declared in bnrepro/analysis/registry.py.

    python scripts/figures.py              # every result, then the scorecard (make figures)
    python scripts/figures.py fig2 why     # only the results named (--list lists them), then the scorecard
    python scripts/figures.py --scorecard  # only the scorecard (make report)

A sweep missing from --root (a fresh clone) is first unpacked there from its committed copy,
results/<sweep>/rundata.tar.xz, so the reports come out byte for byte the same. Independent scripts run
side by side (--jobs, default 2: the machine's cores). Each prints the files it wrote; a failing script
stops nothing else, and the command then exits 1 naming it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


def run(argv: list[str], root: Path, results: Path) -> tuple[list[str], subprocess.CompletedProcess, float]:
    cmd = [sys.executable, *(a.format(root=root, results=results) for a in argv)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    return cmd, proc, time.perf_counter() - start


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
    needed = list(dict.fromkeys(s for r in (RESULTS if args.scorecard or not args.names else chosen) for s in r.sweeps))
    absent = unpack_missing(needed, args.root, args.results)
    if absent:
        print(f"Skipped (neither {args.root}/<sweep> nor results/<sweep>/{NAME}): "
              f"{', '.join(sweep(s) for s in absent)}", file=sys.stderr)
    running = {s: n for s in needed if s not in absent and (n := unfinished(args.root / sweep(s)))[0]}
    if running:  # its tables would be read from runs still training
        print("Skipped (runs unfinished; rerun the sweep's make target, which resumes them): " + ", ".join(
            f"{sweep(s)} ({n[0]} of {n[1]})" for s, n in running.items()), file=sys.stderr)
        absent += list(running)
    # a render is skipped where a sweep it reads is: {root}/<sweep> among its arguments
    jobs = [] if args.scorecard else [c for r in chosen for c in r.renders
                                      if not any(f"{{root}}/{sweep(s)}" in c for s in absent)]
    failed, took = [], []
    # the slowest first, so that the pool's last job is a short one
    jobs.sort(key=lambda c: -("sensitivity" in c[0] or "fig1.py" in c[0]))
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for cmd, proc, seconds in pool.map(lambda c: run(c, args.root, args.results), jobs):
            sys.stdout.write(proc.stdout)
            took.append((seconds, Path(cmd[1]).name))
            if proc.returncode:
                failed.append(" ".join(cmd[1:]))
                sys.stderr.write(proc.stderr)
    cmd, proc, seconds = run(("scripts/scorecard.py", "{root}", "--out", "{results}"), args.root, args.results)
    sys.stdout.write(proc.stdout)
    took.append((seconds, "scorecard.py"))
    if proc.returncode:
        failed.append(" ".join(cmd[1:]))
        sys.stderr.write(proc.stderr)
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
