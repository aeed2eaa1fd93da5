"""Figure 1(b, c): percentiles of each hidden layer's nonlinearity input over training.

Every `probe.every` steps a fixed probe batch goes through the network and the input of each
hidden nonlinearity is captured: the chosen percentiles of one "typical" unit per layer (what
the paper plots) and of the whole layer. In `train` mode BN normalizes with the probe batch's
own statistics, as the training network does (the paper plots the training network); BN's
running statistics are saved and restored around the probe, so probing never changes training.
With `norm_output`, the output of each layer's normalization (the `bn` slot of its block) is
recorded too, for the same unit: the nonlinearity's input when BN comes before it, the next
layer's input when BN comes after it (where a ReLU makes it skewed, seed 001).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from bnrepro.bn import is_batchnorm


def probe_points(model: nn.Module) -> dict[str, nn.Module]:
    """layer name -> the nonlinearity module whose input is probed (the MLP's `hidden[i].act`)."""
    points = getattr(model, "probe_points", None)
    if points is None:
        raise ValueError(f"{type(model).__name__} has no probe_points(); probes cannot be placed")
    return points()


def norm_points(model: nn.Module, points: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    """layer name -> the normalization layer of the block whose nonlinearity is probed (the `bn`
    sibling of the probed `act`, models/blocks.py); layers without one are left out."""
    blocks = {id(block.act): block for block in model.modules()
              if isinstance(block, nn.Sequential) and "act" in block._modules}
    return {name: blocks[id(act)].bn for name, act in points.items()
            if id(act) in blocks and "bn" in blocks[id(act)]._modules}


def percentiles(values: Tensor, q: Iterable[float]) -> Tensor:
    """The q-th percentiles (0..100) of a 1-D tensor, with numpy's default (linear) interpolation."""
    qs = torch.tensor([p / 100 for p in q], dtype=values.dtype, device=values.device)
    return torch.quantile(values, qs)


def typical_unit(pre_activation: Tensor) -> int:
    """The unit whose median input is the median of all units' medians: the most typical one."""
    medians = pre_activation.flatten(2).transpose(1, 2).flatten(0, 1) if pre_activation.dim() > 2 else pre_activation
    medians = medians.median(dim=0).values
    return int(medians.argsort()[(medians.numel() - 1) // 2])


class ActivationProbe:
    """Records percentiles of every probe point's input on a fixed batch."""

    def __init__(self, model: nn.Module, batch: Tensor, q: Iterable[float] = (15, 50, 85),
                 unit: int | None = None, mode: str = "train", norm_output: bool = False):
        if mode not in ("train", "eval"):
            raise ValueError(f"probe.mode must be train or eval, got {mode!r}")
        self.model, self.batch, self.q, self.mode = model, batch, tuple(q), mode
        self.points = probe_points(model)
        self.norms = norm_points(model, self.points) if norm_output else {}
        self.units: dict[str, int] = {}
        self._fixed_unit = unit
        self.history: list[tuple[int, dict[str, float]]] = []
        self.last_inputs: dict[str, Tensor] = {}

    @torch.no_grad()
    def capture(self) -> dict[str, Tensor]:
        """Each probe point's input on the probe batch, leaving the model exactly as it was."""
        captured: dict[str, Tensor] = {}
        hooks = [module.register_forward_pre_hook(lambda m, args, name=name: captured.__setitem__(name, args[0]))
                 for name, module in self.points.items()]
        hooks += [module.register_forward_hook(lambda m, args, out, name=name: captured.__setitem__(f"{name}/norm", out))
                  for name, module in self.norms.items()]
        bn_state = [(m, {k: v.clone() for k, v in m.named_buffers()}) for m in self.model.modules() if is_batchnorm(m)]
        was_training = self.model.training
        try:
            self.model.train(self.mode == "train")
            self.model(self.batch)
        finally:
            self.model.train(was_training)
            for hook in hooks:
                hook.remove()
            for module, buffers in bn_state:
                for key, value in buffers.items():
                    getattr(module, key).copy_(value)
        return captured

    def __call__(self, step: int) -> dict[str, float]:
        """{"layer3/unit_p15": ..., "layer3/all_p15": ...} for every layer and percentile, and
        "layer3/norm_unit_p15", "layer3/norm_all_p15"... for the normalization outputs if asked."""
        out: dict[str, Tensor] = {}
        self.last_inputs = self.capture()
        for key, x in self.last_inputs.items():
            name, _, norm = key.partition("/")  # "layer3" (the nonlinearity's input) or "layer3/norm"
            if name not in self.units:  # chosen once, at the first probe, from the nonlinearity's input
                self.units[name] = self._fixed_unit if self._fixed_unit is not None else typical_unit(x)
            unit_values = x[:, self.units[name]].flatten()
            prefix = f"{name}/{norm}_" if norm else f"{name}/"
            for kind, values in (("unit", unit_values), ("all", x.flatten())):
                for p, v in zip(self.q, percentiles(values.float(), self.q)):
                    out[f"{prefix}{kind}_p{p:g}"] = v
        stacked = torch.stack(list(out.values())).tolist()  # one device sync per probe
        record = dict(zip(out, stacked))
        self.history.append((step, record))
        return record

    def charts(self) -> dict[str, list[str]]:
        """TensorBoard custom-scalars charts: one per layer and kind, its percentile lines together."""
        kinds = ("unit", "all", *(("norm_unit", "norm_all") if self.norms else ()))
        return {f"{name} {kind}": [f"probe/{name}/{kind}_p{q:g}" for q in self.q]
                for name in self.points for kind in kinds if name in self.norms or not kind.startswith("norm")}

    def drift(self) -> dict[str, dict[str, float]]:
        """`drift_statistics` of this run's probes so far."""
        keys = self.history[0][1].keys() if self.history else ()
        return drift_statistics({k: [record[k] for _, record in self.history] for k in keys})


def drift_statistics(series: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """The paper's "the distribution changes significantly in mean and variance" as numbers.

    `series` maps probe names ("layer3/unit_p15", ...) to their values over the probes, in step
    order. Per layer and kind ("layer3/unit", "layer3/all"), from the first probe on:
    movement        total distance travelled by the percentiles, sum over probes of |change|,
                    averaged over the percentiles (in input units);
    rel_movement    movement divided by the first probe's spread, so that layers of different
                    scale (BN's outputs vs raw Wu) compare;
    median_shift    last median minus first median;
    spread_ratio    last spread / first spread, spread = highest minus lowest percentile.
    """
    groups: dict[str, dict[float, Tensor]] = {}
    for key, values in series.items():
        prefix, _, q = key.rpartition("_p")
        groups.setdefault(prefix, {})[float(q)] = torch.as_tensor(values, dtype=torch.float64)
    out: dict[str, dict[str, float]] = {}
    for prefix, p in groups.items():
        qs = sorted(p)
        if len(p[qs[0]]) < 2:
            continue
        spread = p[qs[-1]] - p[qs[0]]
        median = p[qs[len(qs) // 2]]
        movement = sum(v.diff().abs().sum() for v in p.values()) / len(p)
        out[prefix] = {
            "movement": float(movement),
            "rel_movement": float(movement / spread[0]),
            "median_shift": float(median[-1] - median[0]),
            "spread_ratio": float(spread[-1] / spread[0]),
        }
    return out
