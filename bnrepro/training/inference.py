"""Beyond the paper II (issue 18): BN's inference-time statistics chosen after training.

Which statistics a trained BN network normalizes with at inference does not change its training:
the EMA is updated by training's own batches, while Algorithm 2's average (bn.population=average)
and PreciseBN (bn.population=precise) are recomputed before an evaluation from training batches of
their own stream (bnrepro/training/loop.py), and inference example weighing (bn.eval_weight,
Summers & Dinneen 2020, Sec. 3.3) acts in eval mode only. So one run trained with the EMA can be
evaluated under every choice, `evaluate_statistics`, and each row is what a run trained with that
choice reports at its first evaluation (tests/test_bn_inference.py checks it against such runs). A
run that evaluates several times draws later batches of the population stream at each, so there the
rows are the same estimate from other batches: bn_statistics_conv evaluates once, at the end.
The run's final weights are read back and every choice evaluated as the training loop evaluates
(bnrepro/training/posthoc.py: its layout, trainer.amp's autocast, the split's own batches), so the
`ema` rows are what the run itself logged. scripts/eval_statistics.py is the command line;
configs/experiment/bn_statistics_conv.yaml uses it.
"""
from __future__ import annotations

import copy
import dataclasses
from itertools import islice
from pathlib import Path

import torch

from bnrepro.data import build_data
from bnrepro.errors import BnreproError
from bnrepro.nn.bn import recompute_population_stats
from bnrepro.nn.bn_variants import recompute_precise_stats
from bnrepro.schema import choice
from bnrepro.training.posthoc import evaluate, load_config, load_model

ALPHAS = (0.1, 0.2, 0.4)  # example weighing's alpha: the share of each example's own statistics


def evaluate_statistics(run_dir: str | Path, alphas=ALPHAS) -> list[dict]:
    """One row per (statistics, alpha, split) of an EMA-trained BN run at its final step:
    statistics `ema` (as trained), `average` (Algorithm 2 over bn.population_batches batches),
    `precise` (PreciseBN over bn.precise_examples examples), both from the stream the training
    loop draws them from (seed + 1, no augmentation), and `weighing` at each alpha (on the EMA);
    split val (when the run has one) and test; accuracy, loss and the final step. The MLP gets
    no weighing rows (its units have no positions, so no statistics of their own)."""
    cfg = load_config(run_dir)
    bn = cfg.bn
    if choice(bn.placement) == "none" or choice(bn.norm) not in ("batch", "renorm"):
        raise BnreproError(f"{run_dir} was trained without batch statistics (bn.placement={choice(bn.placement)}, "
                           f"bn.norm={choice(bn.norm)}): there is no inference-time choice to evaluate.")
    if choice(bn.population) != "ema" or bn.eval_weight or (bn.freeze_after or 1) < 1:
        raise BnreproError(f"{run_dir} was trained with bn.population={choice(bn.population)}, "
                           f"bn.eval_weight={bn.eval_weight}, bn.freeze_after={bn.freeze_after}: evaluate_statistics "
                           "starts from an EMA run (bn.population=ema, no weighing, no FrozenBN tail).")
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    data = build_data(cfg.data, t.batch_size, t.eval_batch_size, "cpu")
    splits = {"val": data.val_batches, "test": data.test_batches} if data.val_size else {"test": data.test_batches}
    model, step = load_model(run_dir, cfg, data.input_shape, data.num_classes)

    def population(recompute, n: int):
        adapted = copy.deepcopy(model)
        recompute(adapted, islice(data.train_batches(cfg.seed + 1, augment=False), n), n)
        return adapted

    cases = [("ema", 0.0, model),
             ("average", 0.0, population(recompute_population_stats, bn.population_batches)),
             ("precise", 0.0, population(recompute_precise_stats, -(-bn.precise_examples // t.batch_size)))]
    for alpha in alphas if choice(cfg.model.name) != "mlp" else ():
        weighed = dataclasses.replace(cfg, bn=dataclasses.replace(bn, eval_weight=float(alpha)))
        cases.append(("weighing", float(alpha), load_model(run_dir, weighed, data.input_shape, data.num_classes)[0]))
    rows = []
    for statistics, alpha, net in cases:
        for split, batches in splits.items():
            accuracy, loss = evaluate(net, batches(), t.amp)
            rows.append(dict(statistics=statistics, alpha=alpha, split=split, accuracy=accuracy, loss=loss, step=step))
    return rows
