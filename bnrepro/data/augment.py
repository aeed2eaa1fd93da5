"""Augmentation of whole training batches on the device: no per-image Python, no DataLoader.

Random crops (of a zero-padded image, back to its size), horizontal flips, and photometric
distortion (random brightness and contrast per image), each drawn per example from a generator
seeded by the run, so a seed gives the same augmentations every time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bnrepro.schema import AugmentOptions


class BatchAugment:
    def __init__(self, crop_padding: int = 0, flip: bool = False, jitter: float = 0.0, seed: int = 0,
                 device: torch.device | str = "cpu"):
        self.crop_padding, self.flip, self.jitter = crop_padding, flip, jitter
        self.generator = torch.Generator(device=device).manual_seed(seed)

    @classmethod
    def from_config(cls, cfg: AugmentOptions, seed: int, device: torch.device) -> "BatchAugment | None":
        """The augmentation `data.augment` asks for, or None when it asks for none."""
        jitter = cfg.jitter * cfg.jitter_scale
        if not (cfg.crop_padding or cfg.flip or jitter):
            return None
        return cls(cfg.crop_padding, cfg.flip, jitter, seed, device)

    def _uniform(self, n: int, low: float, high: float, device) -> Tensor:
        return torch.empty(n, device=device).uniform_(low, high, generator=self.generator)

    def __call__(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            top = torch.randint(0, 2 * p + 1, (n, 1, 1), device=x.device, generator=self.generator)
            left = torch.randint(0, 2 * p + 1, (n, 1, 1), device=x.device, generator=self.generator)
            rows = (top + torch.arange(h, device=x.device).view(1, h, 1)).expand(n, h, w)
            cols = (left + torch.arange(w, device=x.device).view(1, 1, w)).expand(n, h, w)
            batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
            x = padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # (n, h, w, C) -> (n, C, h, w)
        if self.flip:
            mirror = self._uniform(n, 0, 1, x.device).lt(0.5).view(n, 1, 1, 1)
            x = torch.where(mirror, x.flip(3), x)
        if self.jitter:
            brightness = self._uniform(n, -self.jitter, self.jitter, x.device).view(n, 1, 1, 1)
            contrast = self._uniform(n, 1 - self.jitter, 1 + self.jitter, x.device).view(n, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * contrast + mean + brightness
        return x.contiguous()


class AugmentedBatches:
    """A training-batch iterator with `augment` applied to every batch. Its state (for exact
    resume) is the data order's position plus the augmentation generator's state."""

    def __init__(self, batches, augment: BatchAugment):
        self.batches, self.augment = batches, augment

    def __iter__(self) -> "AugmentedBatches":
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        x, y = next(self.batches)
        return self.augment(x), y

    @property
    def epoch(self) -> int:
        return self.batches.epoch

    def state_dict(self) -> dict:
        return {**self.batches.state_dict(), "augment": self.augment.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)
        self.augment.generator.set_state(state["augment"])


class StackedAugmentedBatches:
    """A stack's batches (x (S, N, C, H, W)) with member s's batch augmented by `augments[s]`, the
    augmentation of its single run (seeded by its seed), so each member sees what that run sees."""

    def __init__(self, batches, augments: list[BatchAugment]):
        self.batches, self.augments = batches, augments

    def __iter__(self) -> "StackedAugmentedBatches":
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        x, y = next(self.batches)
        return torch.stack([augment(member) for augment, member in zip(self.augments, x)]), y

    @property
    def epoch(self) -> int:
        return self.batches.epoch

    def state_dict(self) -> dict:
        return {**self.batches.state_dict(), "augment": [a.generator.get_state() for a in self.augments]}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)
        for a, s in zip(self.augments, state["augment"]):
            a.generator.set_state(s)
