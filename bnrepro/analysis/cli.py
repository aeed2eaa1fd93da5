"""The one command line of the analysis scripts: `SCRIPT SWEEP_DIR [--out OUT] [its own options]`.

Every plot, report and table script in scripts/ (and bnrepro-summarize) reads one sweep directory
and writes its files to --out. They share one parser, one way of saying what they wrote ("wrote
PATH", a line per file) and one way of failing on a missing sweep or a sweep without runs
("Error: ..." on stderr, exit status 2), so that `make figures` reads as one list of like lines.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from bnrepro.analysis import results
from bnrepro.analysis.grouping import MixedRuns

SWEEP_HELP = "a sweep directory (hydra.sweep.dir) or a run directory"


def command(doc: str, produce: Callable[..., str | list[Path]], out_help: str, *, default_out: str | None = None,
            options: Sequence[tuple[tuple[str, ...], dict]] = (), prog: str | None = None
            ) -> Callable[[Sequence[str] | None], int]:
    """A script's `main(argv=None) -> exit status`.

    It parses SWEEP_DIR, --out (`out_help`) and `options` (pairs of argparse flags and keywords),
    then calls `produce(sweep_dir, out, **options)`, `out` being --out, else `default_out` taken
    relative to SWEEP_DIR ("." for the sweep directory itself), else None. `produce` returns the
    text to print (a report without --out) or the paths it wrote."""
    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=prog, description=doc,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("sweep_dir", type=Path, help=SWEEP_HELP)
        parser.add_argument("--out", type=Path, help=out_help)
        parser.add_argument("--tensorboard", action="store_true",
                            help="also show the PNG figures written in TensorBoard's Images tab "
                                 "(an event file in SWEEP_DIR/figures/)")
        parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                            help="read only the runs whose config has KEY (dotted: optim.lr) at VALUE; repeatable. "
                                 "A sweep whose runs differ in more than the seed is refused without it "
                                 "(bnrepro/analysis/grouping.py)")
        for flags, kwargs in options:
            parser.add_argument(*flags, **kwargs)
        args = vars(parser.parse_args(argv))
        sweep_dir, out, tensorboard = args.pop("sweep_dir"), args.pop("out"), args.pop("tensorboard")
        where = args.pop("where")
        if bad := [w for w in where if "=" not in w]:
            parser.error(f"--where takes KEY=VALUE, not {bad[0]!r}")
        results.WHERE.clear()
        results.WHERE.update(w.split("=", 1) for w in where)
        if out is None and default_out is not None:
            out = sweep_dir / default_out
        try:
            result = produce(sweep_dir, out, **args)
        except (FileNotFoundError, MixedRuns, ValueError) as err:  # no such sweep, no runs in it, runs that are no
            # seeds, or options/runs that do not fit together (each error names what and how to fix it)
            print(f"Error: {err}", file=sys.stderr)
            return 2
        if isinstance(result, str):
            print(result, end="")
        else:
            for path in result:
                print(f"wrote {path}")
            if tensorboard and (images := [Path(p) for p in result if str(p).endswith(".png")]):
                from bnrepro.analysis.plots import to_tensorboard

                print(f"wrote {to_tensorboard(sweep_dir, images)} (TensorBoard's Images tab)")
        return 0

    return main


def write_files(out_dir: Path, files: dict[str, object]) -> list[Path]:
    """Each of `files` (name -> text, or a pandas frame, written as CSV without its index) into
    `out_dir`, made if missing; returns the paths, for `command` to print."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files.items():
        path = out_dir / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            content.to_csv(path, index=False)
        paths.append(path)
    return paths
