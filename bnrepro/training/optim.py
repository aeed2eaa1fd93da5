"""SGD with the variant's factors (Sec. 4.2.1) and the Inception recipe's step-wise decay."""
from __future__ import annotations

import torch
from torch import nn

from bnrepro.schema import OptimConfig, choice


def decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, the rest): the weights of linear and conv layers are the tensors of two or more
    dimensions; biases and BN's gamma/beta are vectors. A model that stores its parameters
    otherwise (models.stacked.StackedMLP) says itself, through `decay_groups()`."""
    if hasattr(model, "decay_groups"):
        return model.decay_groups()
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if p.dim() > 1], [p for p in params if p.dim() <= 1]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with the variant's factors applied, and the step-wise exponential decay (stepped per step).

    Weight decay goes on every parameter (`optim.weight_decay_params=all`, torch's default) or on
    the weights only (`weights`)."""
    if cfg.name != "sgd":
        raise ValueError(f"optim.name must be 'sgd', got {cfg.name!r}")
    weight_decay = cfg.weight_decay * cfg.weight_decay_scale
    weights, rest = decay_groups(model)
    if choice(cfg.weight_decay_params) == "weights":
        groups = [{"params": weights}, {"params": rest, "weight_decay": 0.0}]
    else:
        groups = [{"params": weights + rest}]
    optimizer = torch.optim.SGD(groups, lr=cfg.lr * cfg.lr_scale, momentum=cfg.momentum,
                                weight_decay=weight_decay, nesterov=cfg.nesterov)
    interval = cfg.lr_decay_every / cfg.lr_decay_speedup if cfg.lr_decay_every else 0
    decay = cfg.lr_decay
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: decay ** (step // interval) if interval else 1.0)
    return optimizer, schedule
