"""Beyond the paper (issue 18): what BN's statistics are, in training and at inference.

The paper's BN normalizes with the whole mini-batch's mu_B, var_B in training (Algorithm 1) and with
population statistics at inference (Algorithm 2). The variants here change only that:

- ghost batches (Hoffer et al. 2017; Summers & Dinneen 2020, Sec. 2): normalize over sub-batches of
  `ghost_batch` examples at a fixed SGD batch, so the normalization batch changes and nothing else.
  The running statistics move once per ghost batch (the layer's own update, called on each
  sub-batch), so the EMA sees B / ghost_batch batches per step: at a fixed momentum its horizon in
  steps shrinks by that factor; Algorithm 2's cumulative average (momentum=None, population=average)
  becomes the average over ghost batches with the m/(m-1) of a ghost batch, what Algorithm 2 asks for
  at a normalization batch of m = ghost_batch.
- FrozenBN (Wu & Johnson 2021, Sec. 4.2): once `frozen`, training normalizes with the population
  (running) statistics too, as at inference, and stops updating them; gamma and beta still train.
- inference example weighing (Summers & Dinneen 2020, Sec. 3.3): at inference mean and variance are
  (1 - alpha) * population + alpha * the example's own (per example and channel, over positions).
  The example's own variance of one fully-connected unit is that of a single value (0): refused.
- Batch Renormalization (Ioffe 2017, Algorithm 1): `BatchRenorm`.

The layers subclass torch's nn.BatchNorm1d/2d or bnrepro.nn.bn.BatchNorm (so `is_batchnorm`, the
probes, Algorithm 2's recomputation and the state_dict names see a BN); `make_variant` picks one.
`BNSchedule` moves the step-dependent parts (FrozenBN's switch, BRN's r_max/d_max) from the loop.
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch
from torch import Tensor, nn

from bnrepro.choices import choice
from bnrepro.errors import BnreproError
from bnrepro.nn.bn import BatchNorm, _check_input, _per_channel, _reduce_dims, scale_shift, update_running_stats


def ghost_chunks(x: Tensor, ghost_batch: Optional[int]) -> list[Tensor]:
    """x split along the batch into ghost batches of `ghost_batch` examples. A remainder (a probe or
    evaluation batch that is not a multiple; training batches are, validation.py) joins the last
    ghost batch instead of being a batch of its own, which could hold a single example."""
    if not ghost_batch or x.size(0) <= ghost_batch:
        return [x]
    chunks = list(x.split(ghost_batch))
    if chunks[-1].size(0) < ghost_batch:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def example_weighted(x: Tensor, weight, bias, running_mean: Tensor, running_var: Tensor, eps: float,
                     alpha: float) -> Tensor:
    """Summers & Dinneen 2020, Sec. 3.3: normalize each example of (N, C, *spatial) with
    mu = (1 - alpha) * E[x] + alpha * mu_i and var = (1 - alpha) * Var[x] + alpha * var_i, where
    mu_i, var_i are the example's own per-channel mean and (biased) variance over its positions."""
    if x.dim() < 3:
        raise BnreproError("bn.eval_weight needs feature maps with positions (a conv model): an MLP unit's own "
                           "statistics are those of one value (variance 0). Use bn.eval_weight=0 for the MLP.")
    dims, n = list(range(2, x.dim())), x.dim()
    mu_i = x.mean(dims, keepdim=True)
    var_i = (x - mu_i).square().mean(dims, keepdim=True)
    mu = (1 - alpha) * _per_channel(running_mean, n) + alpha * mu_i
    var = (1 - alpha) * _per_channel(running_var, n) + alpha * var_i
    y = (x - mu) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * _per_channel(weight, n)
    if bias is not None:
        y = y + _per_channel(bias, n)
    return y


class _StatisticsOptions:
    """The forward pass of a BN with the options above; mixed in before the BN class it modifies,
    whose own forward (`super().forward`) is Algorithm 1 on one ghost batch and Algorithm 2's map."""

    ghost_batch: Optional[int] = None
    eval_weight: float = 0.0
    frozen: bool = False

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features)
        if self.training and self.frozen:
            # FrozenBN: the inference map (Algorithm 2, step 11), differentiable in gamma and beta.
            scale, shift = scale_shift(self.weight, self.bias, self.running_mean, self.running_var, self.eps)
            return x * _per_channel(scale, x.dim()) + _per_channel(shift, x.dim())
        if not self.training and self.eval_weight:
            return example_weighted(x, self.weight, self.bias, self.running_mean, self.running_var,
                                    self.eps, self.eval_weight)
        if self.training:
            return torch.cat([self._normalize(chunk) for chunk in ghost_chunks(x, self.ghost_batch)])
        return super().forward(x)

    def _normalize(self, x: Tensor) -> Tensor:
        return super().forward(x)


class TorchBN1d(_StatisticsOptions, nn.BatchNorm1d):
    pass


class TorchBN2d(_StatisticsOptions, nn.BatchNorm2d):
    pass


class PaperBN(_StatisticsOptions, BatchNorm):
    pass


class BatchRenorm(_StatisticsOptions, BatchNorm):
    """Ioffe 2017, "Batch Renormalization", Algorithm 1, on one (ghost) batch:
    sigma_B = sqrt(var_B + eps), sigma = sqrt(running_var + eps),
    r = clip(sigma_B / sigma, 1/r_max, r_max), d = clip((mu_B - mu) / sigma, -d_max, d_max),
    x_hat = (x - mu_B) / sigma_B * r + d, y = gamma * x_hat + beta; r and d are constants for the
    gradient (stop_gradient), mu_B and sigma_B are not (autograd differentiates through them).
    Running statistics as BN's (`update_running_stats`); inference is BN's (Algorithm 2). With
    r_max = 1, d_max = 0 (the start of the schedule) it is BN."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.r_max, self.d_max = 1.0, 0.0  # set every step by BNSchedule

    def _normalize(self, x: Tensor) -> Tensor:
        dims, n = _reduce_dims(x), x.dim()
        m = x.numel() // x.size(1)
        if m < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
        xf = x.float()
        mu_B = xf.mean(dims)
        var_B = (xf - _per_channel(mu_B, n)).square().mean(dims)
        sigma_B = torch.sqrt(var_B + self.eps)
        with torch.no_grad():
            sigma = torch.sqrt(self.running_var + self.eps)
            r = (sigma_B / sigma).clamp(1 / self.r_max, self.r_max)
            d = ((mu_B - self.running_mean) / sigma).clamp(-self.d_max, self.d_max)
        x_hat = (xf - _per_channel(mu_B, n)) / _per_channel(sigma_B, n) * _per_channel(r, n) + _per_channel(d, n)
        y = x_hat * _per_channel(self.weight, n) + _per_channel(self.bias, n)
        update_running_stats(self.running_mean, self.running_var, self.num_batches_tracked, self.momentum,
                             mu_B.detach(), var_B.detach(), m)
        return y.to(x.dtype)


def make_variant(num_features: int, spatial: bool, impl: str = "torch", eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, renorm: bool = False, ghost_batch: Optional[int] = None,
                 eval_weight: float = 0.0) -> nn.Module:
    """A BN layer with the statistics options; Batch Renormalization when `renorm` (always ours: it is
    written out above, whatever bn.impl says)."""
    impl = str(getattr(impl, "value", impl))
    if renorm:
        layer = BatchRenorm(num_features, eps=eps, momentum=momentum)
    elif impl == "torch":
        layer = (TorchBN2d if spatial else TorchBN1d)(num_features, eps=eps, momentum=momentum)
    elif impl == "paper":
        layer = PaperBN(num_features, eps=eps, momentum=momentum)
    else:
        raise ValueError(f"unknown BN impl {impl!r}; valid choices: 'torch', 'paper'")
    layer.ghost_batch, layer.eval_weight = ghost_batch, float(eval_weight)
    return layer


def variant_layers(model: nn.Module) -> list[_StatisticsOptions]:
    return [m for m in model.modules() if isinstance(m, _StatisticsOptions)]


class BNSchedule:
    """The step-dependent BN options, set before each training step's forward pass from the step alone
    (so a resumed run sets them exactly as the uninterrupted one did).

    FrozenBN: steps after round(freeze_after * max_steps) train with frozen statistics.
    BRN (Ioffe 2017, Sec. 4: r_max 1 -> 3 and d_max 0 -> 5 over the first part of training, scaled
    here to the run's length): r_max = 1 + (rmax - 1) * p, d_max = dmax * p, p = min(1, progress / warmup),
    progress = (step - 1) / max_steps."""

    def __init__(self, model: nn.Module, max_steps: int, freeze_after: Optional[float] = None,
                 rmax: float = 3.0, dmax: float = 5.0, warmup: float = 0.25):
        self.layers = variant_layers(model)
        self.max_steps, self.rmax, self.dmax, self.warmup = max_steps, rmax, dmax, warmup
        self.freeze_step = max_steps if freeze_after is None else round(freeze_after * max_steps)

    def frozen_at(self, step: int) -> bool:
        """Whether training step `step` (1-based) runs with frozen statistics."""
        return step > self.freeze_step

    def __call__(self, step: int) -> None:
        p = min(1.0, (step - 1) / self.max_steps / self.warmup) if self.warmup > 0 else 1.0
        frozen = self.frozen_at(step)
        for layer in self.layers:
            layer.frozen = frozen
            if isinstance(layer, BatchRenorm):
                layer.r_max, layer.d_max = 1.0 + (self.rmax - 1.0) * p, self.dmax * p


@torch.no_grad()
def recompute_precise_stats(model: nn.Module, batches, num_batches: int) -> int:
    """PreciseBN (Wu & Johnson 2021, Sec. 3.1): every BN's running statistics replaced by the true
    population mean and variance of its input over the first `num_batches` training batches, with the
    weights as they are: E[x] and E[x^2] - E[x]^2 over all the examples (and positions), accumulated
    in float64, with n/(n-1). Returns the number of examples seen.

    How it differs from Algorithm 2 (`recompute_population_stats`, bn.population=average), which
    averages the batch means and the unbiased m/(m-1) * var_B of each batch: the mean is the same,
    but the variance here is the total one, which also holds the spread of mu_B between batches
    (Algorithm 2's average of within-batch variances misses whatever the batches share, e.g. through
    the earlier layers' batch statistics, and its m/(m-1) is 2 at m = 2); and it is sized in
    examples (bn.precise_examples), not batches. Both equal-weight the batches, unlike the EMA.

    BNs run in train mode, as in training (each layer's input is the training network's), every
    other module in eval mode; every module's mode, momentum and batch count are restored after."""
    from bnrepro.nn.bn import is_batchnorm

    bns = [m for m in model.modules() if is_batchnorm(m)]
    if not bns or any(bn.running_mean is None for bn in bns):
        raise ValueError("recompute_precise_stats: the model needs batch-norm layers with running statistics")
    sums = {bn: [0.0, 0.0, 0] for bn in bns}

    def accumulate(bn, inputs):
        x = inputs[0].detach().double()
        dims = _reduce_dims(x)
        s = sums[bn]
        s[0] = s[0] + x.sum(dims)
        s[1] = s[1] + x.square().sum(dims)
        s[2] += x.numel() // x.size(1)

    modes = [(module, module.training) for module in model.modules()]
    frozen = [(layer, layer.frozen) for layer in variant_layers(model)]
    counts = [bn.num_batches_tracked.clone() for bn in bns]
    hooks = [bn.register_forward_pre_hook(accumulate) for bn in bns]
    device, seen = bns[0].running_mean.device, 0
    try:
        model.eval()
        for bn in bns:
            bn.train()
        for layer, _ in frozen:
            layer.frozen = False
        for batch in itertools.islice(batches, num_batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            seen += x.size(0)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
        for layer, was in frozen:
            layer.frozen = was
    for bn, count in zip(bns, counts):
        s1, s2, n = sums[bn]
        mean = s1 / n
        var = (s2 / n - mean.square()).clamp_min(0) * (n / max(n - 1, 1))
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.num_batches_tracked.copy_(count)
    return seen


def length_dependent(bn) -> list[str]:
    """The options of `bn` (a BNConfig) whose schedule `BNSchedule` scales with trainer.max_steps, as
    `key=value`: a run cannot be extended in place with them (its steps so far followed the shorter
    schedule, so it would match no straight run of the new length)."""
    if choice(bn.placement) == "none":
        return []
    found = [f"bn.freeze_after={bn.freeze_after}"] if bn.freeze_after is not None and bn.freeze_after < 1.0 else []
    if choice(bn.norm) == "renorm" and bn.renorm_warmup > 0:
        found.append(f"bn.norm=renorm with bn.renorm_warmup={bn.renorm_warmup}")
    return found
