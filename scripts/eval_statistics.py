"""Evaluate one trained EMA run under every inference-time choice of BN's statistics: the EMA as
trained, Algorithm 2's average, PreciseBN, and example weighing at a few alphas, without retraining
(bnrepro/training/inference.py; configs/experiment/bn_statistics_conv.yaml).

    python scripts/eval_statistics.py RUN_DIR [--out RUN_DIR/statistics.csv] [--alphas 0.1,0.2,0.4]

Writes one row per statistics, alpha and split (val, test): accuracy, loss and the checkpoint's step;
bnrepro.analysis.bn_statistics.load reads each row as a run of that choice.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bnrepro.errors import BnreproError
from bnrepro.training.inference import ALPHAS, evaluate_statistics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="the CSV to write (default: RUN_DIR/statistics.csv)")
    parser.add_argument("--alphas", default=",".join(map(str, ALPHAS)),
                        help="example weighing's alphas, comma-separated (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        print(f"error: --alphas={args.alphas!r} is not a comma-separated list of numbers in [0, 1], "
              "e.g. --alphas 0.1,0.2,0.4.", file=sys.stderr)
        return 2
    try:
        rows = evaluate_statistics(args.run_dir, alphas)
    except BnreproError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows)
    out = args.out or args.run_dir / "statistics.csv"
    table.to_csv(out, index=False)
    print(table.pivot_table(index=["statistics", "alpha"], columns="split", values="accuracy", sort=False)
          .round(4).to_string())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
