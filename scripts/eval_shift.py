"""Evaluate one trained run on corrupted copies of its test split, with the training statistics and
with statistics recomputed on the corrupted images (bnrepro/training/shift.py; configs/experiment/bn_shift.yaml):
the run's final weights, evaluated as its training loop evaluated (bnrepro/training/posthoc.py).

    python scripts/eval_shift.py RUN_DIR [--out RUN_DIR/shift.csv] [--test-size N]

Writes one row per corruption, severity and statistics (train | target): accuracy and loss.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from bnrepro.data import build_data
from bnrepro.errors import BnreproError
from bnrepro.training.posthoc import load_config, load_model
from bnrepro.training.shift import evaluate_shift


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="the CSV to write (default: RUN_DIR/shift.csv)")
    parser.add_argument("--test-size", type=int, help="only the first N test images (default: the run's test split)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.run_dir)
        data = build_data(cfg.data, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, "cpu")
        x, y = (torch.cat(t) for t in zip(*data.test_batches()))
        if args.test_size:
            x, y = x[:args.test_size], y[:args.test_size]
        model, step = load_model(args.run_dir, cfg, data.input_shape, data.num_classes)
        t = cfg.trainer
        rows = evaluate_shift(model, x, y, batch_size=t.batch_size, seed=cfg.seed, amp=t.amp,
                              eval_batch_size=t.eval_batch_size)
    except BnreproError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows).assign(step=step, seed=cfg.seed)
    out = args.out or args.run_dir / "shift.csv"
    table.to_csv(out, index=False)
    wide = table.pivot_table(index=["corruption", "severity"], columns="statistics", values="accuracy", sort=False)
    print(wide.round(4).to_string())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
