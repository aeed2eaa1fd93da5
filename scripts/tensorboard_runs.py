"""The committed results in TensorBoard: event files for each sweep of results/, from its run data.

    python scripts/tensorboard_runs.py                 # every committed sweep (make tensorboard)
    python scripts/tensorboard_runs.py fig1 fig2       # only these (short or full sweep names)
    tensorboard --logdir outputs/results/fig1_fashion_mnist

A sweep missing under --root is first unpacked there from results/<sweep>/rundata.tar.xz (as
`make figures` does). Each run then gets the events a live run writes (bnrepro/tracking/replay.py:
its scalars at their recorded times, custom-scalar layout, HParams session with its end status,
summary.json as text), the sweep its per-variant runs (by_variant/) and its HParams table, and the
figures of results/<sweep>/ go to the Images tab (run `figures`). Point TensorBoard at one sweep, at
--root for all of them, or at a directory holding both a committed sweep and your own to overlay
them (`--logdir_spec committed:outputs/results/fig1_fashion_mnist,mine:outputs/sweeps/...`).
Everything written is under --root (outputs/, never committed) and is rewritten on the next call.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bnrepro.analysis.registry import sweep
from bnrepro.analysis.results import find_runs
from bnrepro.analysis.rundata import NAME, unpack
from bnrepro.tracking.replay import VIEWS, differing_keys, figures, read_config, refresh_views, replay_run


def committed(results: Path, names: list[str]) -> list[str]:
    """The sweeps with run data in `results`, those named (`fig1` or `fig1_fashion_mnist`) or all."""
    found = sorted(p.parent.name for p in results.glob(f"*/{NAME}"))
    if not names:
        return found
    chosen = [s for s in found if any(s in (n, sweep(n)) for n in names)]
    unknown = [n for n in names if not {n, sweep(n)} & set(found)]
    if unknown:
        raise SystemExit(f"Error: no committed sweep named {', '.join(unknown)}: one of {', '.join(found)}.")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="sweeps (default: every sweep of results/ with run data)")
    parser.add_argument("--root", type=Path, default=Path("outputs/results"), help="where the sweeps are")
    parser.add_argument("--results", type=Path, default=Path("results"), help="the committed results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for name in committed(args.results, args.names):
        sweep_dir = args.root / name
        if not sweep_dir.is_dir():
            unpack(args.results / name / NAME, sweep_dir)
        runs = [r for r in find_runs(sweep_dir) if VIEWS not in r.relative_to(sweep_dir).parts]
        extra = differing_keys(read_config(r) for r in runs)
        for run_dir in runs:
            replay_run(run_dir, extra)
        views = refresh_views(sweep_dir)
        pngs = sorted((args.results / name).glob("*.png"))
        if pngs:
            figures(sweep_dir, pngs)
        print(f"wrote TensorBoard events in {sweep_dir}: {len(runs)} runs, {len(views) - 1} per-variant runs, "
              f"{len(pngs)} figures")
    print(f"done in {time.perf_counter() - start:.1f} s; browse with: tensorboard --logdir {args.root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
