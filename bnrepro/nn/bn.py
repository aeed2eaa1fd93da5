"""Batch Normalization as the paper writes it (Ioffe & Szegedy, ICML 2015).

- BatchNormFunction: Algorithm 1 (training), with the backward pass of Sec. 3 written out.
- BatchNorm: a drop-in for nn.BatchNorm1d/2d built on it (same parameter and buffer names).
- recompute_population_stats: Algorithm 2's population statistics, averaged after training.
- bn_affine / Affine / fold_batchnorm: Algorithm 2's inference network, where each BN is a fixed
  affine map and can be merged into the linear or conv layer before it.
"""
from __future__ import annotations

import copy
import itertools
from typing import Iterable, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm


def _per_channel(t: Tensor, ndim: int) -> Tensor:
    """(C,) -> (1, C, 1, ...) so that it broadcasts against an (N, C, *spatial) input."""
    return t.view(1, -1, *([1] * (ndim - 2)))


def _reduce_dims(x: Tensor) -> list[int]:
    # Sec. 3.2: one statistic per feature map, over the effective mini-batch m' = N * H * W;
    # for (N, C) inputs this is the per-activation mini-batch of Algorithm 1.
    return [0, *range(2, x.dim())]


def _check_input(x: Tensor, num_features: int) -> None:
    if x.dim() < 2:
        raise ValueError(f"expected an (N, C) or (N, C, *spatial) input, got a {x.dim()}D tensor "
                         f"of shape {tuple(x.shape)}")
    if x.size(1) != num_features:
        raise ValueError(f"expected {num_features} channels in dim 1, got input of shape "
                         f"{tuple(x.shape)}")


def scale_shift(weight: Optional[Tensor], bias: Optional[Tensor], mean: Tensor, var: Tensor,
                 eps: float) -> tuple[Tensor, Tensor]:
    """Algorithm 2, step 11: y = gamma / sqrt(Var + eps) * x + (beta - gamma * E[x] / sqrt(Var + eps))."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


class BatchNormFunction(torch.autograd.Function):
    """Algorithm 1 on (N, C) or (N, C, *spatial); returns (y, mu_B, var_B).

    mu_B and var_B (biased, divided by m) are returned for the running statistics only and are
    non-differentiable. gamma and beta may be None (affine=False).
    """

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Optional[Tensor], beta: Optional[Tensor], eps: float):
        dims, n = _reduce_dims(x), x.dim()
        mu_B = x.mean(dims)
        x_mu = x - _per_channel(mu_B, n)
        var_B = x_mu.square().mean(dims)
        inv_std = torch.rsqrt(var_B + eps)
        x_hat = x_mu * _per_channel(inv_std, n)
        y = x_hat
        if gamma is not None:
            y = y * _per_channel(gamma, n)
        if beta is not None:
            y = y + _per_channel(beta, n)
        ctx.save_for_backward(x_mu, inv_std, gamma)
        ctx.mark_non_differentiable(mu_B, var_B)
        return y, mu_B, var_B

    @staticmethod
    @once_differentiable  # the formulas below are not themselves differentiated through
    def backward(ctx, dy: Tensor, _d_mu_B: Tensor, _d_var_B: Tensor):
        x_mu, inv_std, gamma = ctx.saved_tensors
        dims, n = _reduce_dims(dy), dy.dim()
        m = dy.numel() // dy.size(1)
        dx = dgamma = dbeta = None
        if ctx.needs_input_grad[0]:
            # Sec. 3: the loss reaches x_i directly through x_hat and also through mu_B and var_B,
            # which depend on every x in the mini-batch; ignoring those two paths is exactly
            # what the paper warns makes the parameters blow up (Sec. 2).
            dx_hat = dy if gamma is None else dy * _per_channel(gamma, n)
            dvar_B = (dx_hat * x_mu).sum(dims) * -0.5 * inv_std.pow(3)
            # The second term is zero in exact arithmetic (sum of x_i - mu_B); kept as in the paper.
            dmu_B = -(dx_hat.sum(dims) * inv_std) + dvar_B * (-2.0 * x_mu).sum(dims) / m
            dx = (dx_hat * _per_channel(inv_std, n)
                  + _per_channel(dvar_B, n) * 2.0 * x_mu / m
                  + _per_channel(dmu_B, n) / m)
        if ctx.needs_input_grad[1]:
            dgamma = (dy * x_mu * _per_channel(inv_std, n)).sum(dims)  # sum of dL/dy_i * x_hat_i
        if ctx.needs_input_grad[2]:
            dbeta = dy.sum(dims)
        return dx, dgamma, dbeta, None


class BatchNorm(nn.Module):
    """Drop-in for nn.BatchNorm1d/2d/3d: Algorithm 1 in training, Algorithm 2's affine map in eval.

    Same parameter and buffer names as torch (weight, bias, running_mean, running_var,
    num_batches_tracked), so state_dicts load both ways.
    Momentum follows PyTorch's convention, stated once in bnrepro/schema.py (BNConfig): momentum
    weights the new batch; None = cumulative average.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    @property
    def gamma(self) -> Optional[Tensor]:
        return self.weight

    @property
    def beta(self) -> Optional[Tensor]:
        return self.bias

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features)
        if not self.training and self.running_mean is not None:
            # Algorithm 2: at inference the normalization uses population statistics, so BN is a
            # fixed affine map and each output depends on its own input only.
            scale, shift = scale_shift(self.weight, self.bias, self.running_mean,
                                        self.running_var, self.eps)
            return (x * _per_channel(scale, x.dim()) + _per_channel(shift, x.dim())).to(x.dtype)
        m = x.numel() // x.size(1)
        if m < 2:
            # Same check and message as torch: var_B of one value is 0 and m/(m-1) is undefined.
            raise ValueError(f"Expected more than 1 value per channel when training, got input "
                             f"size {tuple(x.shape)}")
        # Statistics in float32 whatever the input's dtype (bf16 under autocast, trainer.amp):
        # mu_B and var_B of a low-precision batch would lose digits, and the float32 running
        # averages could not take them in place. The output goes back to the input's dtype.
        with torch.autocast(x.device.type, enabled=False):
            y, mu_B, var_B = BatchNormFunction.apply(x.float(), self.weight, self.bias, self.eps)
        if self.training and self.track_running_stats:
            self._update_running_stats(mu_B, var_B, m)
        return y.to(x.dtype)

    def _update_running_stats(self, mu_B: Tensor, var_B: Tensor, m: int) -> None:
        update_running_stats(self.running_mean, self.running_var, self.num_batches_tracked, self.momentum,
                             mu_B, var_B, m)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


@torch.no_grad()
def update_running_stats(running_mean: Tensor, running_var: Tensor, num_batches_tracked: Tensor,
                         momentum: Optional[float], mu_B: Tensor, var_B: Tensor, m: int) -> None:
    """The one place this suite's running statistics move (BatchNorm here, models.stacked.StackedMLP).

    PyTorch's convention (bnrepro/schema.py, BNConfig): running = (1 - momentum) * running +
    momentum * batch statistic, momentum weighting the new batch; momentum=None is the cumulative
    average Algorithm 2 asks for. The variance kept is the unbiased m/(m-1) * var_B of Algorithm 2."""
    num_batches_tracked.add_(1)
    factor = 1.0 / float(num_batches_tracked) if momentum is None else momentum
    running_mean.lerp_(mu_B, factor)
    running_var.lerp_(var_B * (m / (m - 1)), factor)


def make_batchnorm(num_features: int, spatial: bool, impl: str = "torch", eps: float = 1e-5,
                   momentum: Optional[float] = 0.1) -> nn.Module:
    """BN layer for (N, C, H, W) inputs if spatial else (N, C); impl is "torch" or "paper"."""
    name = str(getattr(impl, "value", impl))  # accepts schema.BNImpl as well as plain strings
    if name == "torch":
        cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        return cls(num_features, eps=eps, momentum=momentum)
    if name == "paper":
        return BatchNorm(num_features, eps=eps, momentum=momentum)
    raise ValueError(f"unknown BN impl {name!r}; valid choices: 'torch', 'paper'")


def is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, (BatchNorm, _BatchNorm))


@torch.no_grad()
def recompute_population_stats(model: nn.Module, batches: Iterable, num_batches: int) -> nn.Module:
    """Algorithm 2, steps 8-10: replace every BN's running statistics by population averages.

    `batches` yields input tensors or (x, y) tuples; the first num_batches are run through the
    model with its BNs in train mode. Momentum and every module's train/eval mode are restored afterwards.
    """
    bns = [module for module in model.modules() if is_batchnorm(module)]
    if not bns:
        raise ValueError("recompute_population_stats: the model has no batch-norm layer")
    if any(bn.running_mean is None for bn in bns):
        raise ValueError("recompute_population_stats: every BN needs track_running_stats=True")
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}")
    # With momentum=None, torch and BatchNorm keep a cumulative average: after k batches
    # running_mean = (1/k) sum mu_B, which is Algorithm 2's E[x], and running_var = (1/k) sum of
    # m/(m-1) * var_B = m/(m-1) * (1/k) sum var_B, which is Algorithm 2's Var[x] whenever all
    # batches have the same m. Resetting first drops the moving averages kept during training.
    momenta = [bn.momentum for bn in bns]
    modes = [(module, module.training) for module in model.modules()]
    device = bns[0].running_mean.device
    seen = 0
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        # BNs normalize with batch statistics as in training (Algorithm 2 averages the training
        # network's mu_B, var_B); everything else, dropout included, runs as at inference.
        model.eval()
        for bn in bns:
            bn.train()
        for batch in itertools.islice(batches, num_batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            seen += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        for module, training in modes:
            module.training = training
    if seen < num_batches:
        raise ValueError(f"recompute_population_stats: asked for {num_batches} batches, "
                         f"the iterable gave only {seen}")
    return model


@torch.no_grad()
def bn_affine(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift) of Algorithm 2's inference map y = scale * x + shift, per channel."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it has no running statistics "
                         f"(track_running_stats=False), so inference is not a fixed affine map")
    return scale_shift(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)


class Affine(nn.Module):
    """A fixed per-channel affine map y = scale * x + shift: a BN at inference (Algorithm 2)."""

    def __init__(self, scale: Tensor, shift: Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.scale.numel())
        return x * _per_channel(self.scale, x.dim()) + _per_channel(self.shift, x.dim())

    def extra_repr(self) -> str:
        return f"{self.scale.numel()}"


_FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _merge(layer: nn.Module, scale: Tensor, shift: Tensor) -> None:
    """BN(W u + b) = (scale * W) u + (scale * b + shift): scale acts per output channel."""
    layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    bias = shift if layer.bias is None else scale * layer.bias + shift
    layer.bias = nn.Parameter(bias.to(layer.weight.dtype))


def _fold_children(module: nn.Module) -> None:
    children = list(module.named_children())
    for i, (name, child) in enumerate(children):
        if not is_batchnorm(child):
            _fold_children(child)
            continue
        scale, shift = bn_affine(child)
        # Only inside nn.Sequential is the previous child known to feed this BN directly.
        prev = children[i - 1][1] if i > 0 and isinstance(module, nn.Sequential) else None
        if isinstance(prev, _FOLDABLE):
            _merge(prev, scale, shift)
            setattr(module, name, nn.Identity())
        else:
            setattr(module, name, Affine(scale, shift))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode deep copy of model with every BN folded away (Algorithm 2's inference network).

    Inside any nn.Sequential, a Linear/Conv directly followed by a BN absorbs it (the BN becomes
    nn.Identity); every other BN (e.g. after a nonlinearity) becomes an Affine.
    """
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        _fold_children(folded)
    return folded
