"""Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help Optimization?",
Sec. 2.1 and Algorithm 1: "noisy" BatchNorm.

If BN helped by keeping each layer's input distribution stable (the paper's "internal covariate
shift", Sec. 1), a network whose normalized activations are deliberately made unstable should
train worse. Algorithm 1 injects such instability after every BN layer: per unit j, a shift of
mean and scale that changes over time, mu_t ~ U(-n_mu, n_mu), sigma_t ~ U(1, n_sigma), and on top
of it per example i, m ~ U(mu_t - r_mu, mu_t + r_mu), s ~ N(sigma_t, r_sigma); the activation
becomes a <- s * a + m. The paper (Fig. 2) finds it trains almost like BN although the
distributions move more than without BN, and the same noise without BN prevents training.
Defaults (n_mu 0.5, n_sigma 1.25, r_mu = r_sigma = 0.1) and names: bnrepro/schema.py, NoiseOptions.

Choices the paper leaves open, made here:
- "time step" is a training step: (mu_t, sigma_t) are redrawn at every `every`-th forward pass
  in training mode (the layer counts them; a probe's passes are undone, bnrepro/tracking/probes.py).
- a conv "unit" is a channel, as for BN (Ioffe & Szegedy Sec. 3.2): m and s are per example and
  channel, shared by the channel's positions, so they shift and scale that example's feature map.
- r_sigma is a standard deviation.
- evaluation (eval mode) leaves activations untouched: the noise is a training perturbation.

The noise comes from a generator of its own (`noise_generator`), seeded from the run's seed,
never from torch's global one: turning it on shifts no other random draw (init, dropout, data),
and all noisy layers of a network share it, drawing in forward order, as a single run's dropout
layers share torch's generator. The draws are made on the CPU (then moved to the activations'
device), so a run's noise is the same on any device; the generator's state and the current
(mu_t, sigma_t) are each layer's extra state, so checkpoints resume them exactly.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

# Mixed into the run's seed so that the noise stream is not torch's global stream under the same
# seed (their first draws would coincide with the weights' init). ASCII "NOIS".
_STREAM = 0x4E4F4953


def noise_generator(seed: int) -> torch.Generator:
    """The noise's own CPU generator for the run of `seed`."""
    mixed = int(np.random.SeedSequence([int(seed), _STREAM]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(mixed)


class CovariateShiftNoise(nn.Module):
    """Algorithm 1's perturbation of (N, C) or (N, C, *spatial) activations, in training mode only."""

    def __init__(self, num_features: int, generator: torch.Generator, mean_max: float = 0.5,
                 scale_max: float = 1.25, mean_width: float = 0.1, scale_std: float = 0.1, every: int = 1):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.num_features, self.generator = num_features, generator
        self.mean_max, self.scale_max, self.mean_width, self.scale_std, self.every = (
            mean_max, scale_max, mean_width, scale_std, every)
        self.calls = 0  # training-mode forward passes so far: the "time" t of Algorithm 1
        self.mu_t = torch.zeros(num_features)
        self.sigma_t = torch.ones(num_features)

    def _uniform(self, shape: tuple[int, ...], lo: float, hi: float) -> Tensor:
        return torch.rand(shape, generator=self.generator).mul_(hi - lo).add_(lo)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        c = self.num_features
        if x.dim() < 2 or x.size(1) != c:
            raise ValueError(f"expected {c} channels in dim 1, got input of shape {tuple(x.shape)}")
        if self.calls % self.every == 0:
            # Per unit and time step: the distribution's shift, the same for every example.
            self.mu_t = self._uniform((c,), -self.mean_max, self.mean_max)
            self.sigma_t = self._uniform((c,), 1.0, self.scale_max)
        self.calls += 1
        n = x.size(0)
        # Per example and unit, around the current shift.
        m = self._uniform((n, c), -self.mean_width, self.mean_width).add_(self.mu_t)
        s = torch.randn((n, c), generator=self.generator).mul_(self.scale_std).add_(self.sigma_t)
        shape = (n, c, *([1] * (x.dim() - 2)))
        return torch.addcmul(m.to(x).view(shape), x, s.to(x).view(shape))

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state(), "calls": self.calls,
                "mu_t": self.mu_t.clone(), "sigma_t": self.sigma_t.clone()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.calls = int(state["calls"])
        self.mu_t, self.sigma_t = state["mu_t"].clone(), state["sigma_t"].clone()

    def extra_repr(self) -> str:
        return (f"{self.num_features}, mean_max={self.mean_max}, scale_max={self.scale_max}, "
                f"mean_width={self.mean_width}, scale_std={self.scale_std}, every={self.every}")


def noise_factory(options, seed: int) -> Optional[Callable[[int], nn.Module]]:
    """A maker of the noise layer for a width, every layer of one network drawing from one
    generator (the run of `seed`'s); None when `options` (schema.NoiseOptions) is off."""
    if not options.enabled:
        return None
    return partial(CovariateShiftNoise, generator=noise_generator(seed), mean_max=options.mean_max,
                   scale_max=options.scale_max, mean_width=options.mean_width, scale_std=options.scale_std,
                   every=options.every)
