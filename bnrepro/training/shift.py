"""Beyond the paper II (issue 18): BN's statistics under a distribution shift, without retraining.

A trained network is evaluated on corrupted copies of its test split (`corrupt`: Gaussian noise,
contrast, blur at three severities, made here, deterministic) twice: with the population statistics
of training (Algorithm 2's inference network as trained) and with statistics recomputed on the
corrupted images themselves (PreciseBN's estimate, `recompute_precise_stats`, labels never used):
Wu & Johnson 2021, Sec. 5 ("domain shift": ImageNet-C contrast 40.8 -> 33.1%, gaussian noise 64.4 ->
52.5% error when recomputed on the target; Schneider et al. 2020 call it test-time BN adaptation).
Recomputing on the evaluated images is transductive: each corruption's statistics come from all of
its N test images at once, the setting of those papers.

The run is read back and evaluated by bnrepro/training/posthoc.py (its final weights, the training
loop's own evaluation: the clean `train` row is what the run logged last); scripts/eval_shift.py is
the command line.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnrepro.errors import BnreproError
from bnrepro.nn.bn import is_batchnorm
from bnrepro.nn.bn_variants import recompute_precise_stats
from bnrepro.training.posthoc import evaluate, split

# Per corruption, its parameter at severities 1, 2, 3 (chosen here for 28 x 28 images in [0, 1],
# in the spirit of ImageNet-C's, Hendrycks & Dietterich 2019): the noise's std, the contrast's
# factor on each image's deviation from its mean, the Gaussian blur's std in pixels.
CORRUPTIONS: dict[str, tuple[float, float, float]] = {
    "gaussian_noise": (0.1, 0.2, 0.4),
    "contrast": (0.5, 0.3, 0.15),
    "blur": (0.6, 1.0, 1.5),
}


def _blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.size(1)
    x = F.pad(x, (radius,) * 4, mode="replicate")  # separable: rows, then columns
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def corrupt(x: Tensor, kind: str, severity: int, seed: int = 0) -> Tensor:
    """Images (N, C, H, W) in [0, 1] corrupted by `kind` at `severity` (1-3); the same every call."""
    if kind not in CORRUPTIONS or severity not in (1, 2, 3):
        raise BnreproError(f"corrupt: kind must be one of {', '.join(CORRUPTIONS)} and severity 1, 2 or 3; "
                           f"got {kind!r}, {severity!r}.")
    p = CORRUPTIONS[kind][severity - 1]
    if kind == "gaussian_noise":
        g = torch.Generator().manual_seed(seed)
        return (x + p * torch.randn(x.shape, generator=g).to(x)).clamp(0, 1)
    if kind == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * p + mean
    return _blur(x, p)


def evaluate_shift(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 128, seed: int = 0,
                   severities=(1, 2, 3), amp: bool = False, eval_batch_size: int | None = None) -> list[dict]:
    """One row per (corruption, severity, statistics): statistics `train` (the model as trained) or
    `target` (every BN's statistics recomputed on the corrupted images in batches of `batch_size`,
    the training batch: upstream BNs normalize as in training). The clean test split is the row
    corruption `none`, severity 0. Evaluated as the training loop evaluates (`posthoc.evaluate` in
    batches of `eval_batch_size`, default `batch_size`; `amp`: the run's trainer.amp, so the clean
    `train` row is the run's own evaluation). The model itself is left untouched."""
    if not any(is_batchnorm(m) for m in model.modules()):
        raise BnreproError("evaluate_shift: the model has no batch-norm layer, so there are no statistics to "
                           "recompute; train with bn.placement=before and bn.norm=batch.")
    cases = [("none", 0, x)] + [(kind, s, corrupt(x, kind, s, seed)) for kind in CORRUPTIONS for s in severities]
    rows = []
    for kind, severity, xc in cases:
        batches = split(xc, y, eval_batch_size or batch_size)
        acc, loss = evaluate(model, batches, amp)
        rows.append(dict(corruption=kind, severity=severity, statistics="train", accuracy=acc, loss=loss))
        adapted = copy.deepcopy(model)
        n = -(-len(xc) // batch_size)
        recompute_precise_stats(adapted, iter(xc.split(batch_size)), n)
        acc, loss = evaluate(adapted, batches, amp)
        rows.append(dict(corruption=kind, severity=severity, statistics="target", accuracy=acc, loss=loss))
    return rows
