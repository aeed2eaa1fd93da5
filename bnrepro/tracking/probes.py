"""Figure 1(b, c): percentiles of each hidden layer's nonlinearity input over training.

Every `probe.every` steps a fixed probe batch goes through the network and the input of each
hidden nonlinearity is captured: the chosen percentiles of one "typical" unit per layer (what
the paper plots) and of the whole layer. In `train` mode BN normalizes with the probe batch's
own statistics, as the training network does (the paper plots the training network). With
`norm_output`, the output of each layer's normalization (the `bn` slot of its block) is
recorded too, for the same unit: the nonlinearity's input when BN comes before it, the next
layer's input when BN comes after it (where a ReLU makes it skewed, seed 001).

One probe serves a single run and a stack of runs alike: it asks the training members
(bnrepro/training/members.py) for each probed tensor with a leading member dimension, (S, B,
C, ...), and keeps one unit choice and one history per member. A probe is a measurement: it
must leave training exactly as it was (`untouched`), whatever the model holds (dropout, BN).
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn


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


class Snapshot:
    """What a measurement pass through `model` could change, as it is now: torch's random generators
    (dropout draws from the global ones), every buffer (BN's running statistics), every module's
    extra state (generators of their own: the stacked members' dropout, Santurkar et al.'s noise,
    bnrepro/nn/noise.py) and train/eval mode. `reset` puts back all but the modes (so that passes
    repeated on one batch draw the same masks and noise), `restore` everything."""

    def __init__(self, model: nn.Module):
        self.buffers = [(b, b.clone()) for b in model.buffers()]
        self.modes = [(m, m.training) for m in model.modules()]
        self.extra = [(m, m.get_extra_state()) for m in model.modules()
                      if type(m).get_extra_state is not nn.Module.get_extra_state]
        self.cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
        self.rng = torch.get_rng_state()
        self.cuda_rng = [torch.cuda.get_rng_state(d) for d in self.cuda]

    @torch.no_grad()
    def reset(self) -> None:
        torch.set_rng_state(self.rng)
        for d, state in zip(self.cuda, self.cuda_rng):
            torch.cuda.set_rng_state(state, d)
        for buffer, saved in self.buffers:
            buffer.copy_(saved)
        for module, state in self.extra:
            module.set_extra_state(state)

    def restore(self) -> None:
        self.reset()
        for module, training in self.modes:
            module.training = training


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """A measurement pass through `model` that leaves training exactly as it was (`Snapshot`: every
    random generator it could draw from, every buffer, extra state and mode), no gradient computed."""
    snapshot = Snapshot(model)
    with torch.no_grad():
        try:
            yield
        finally:
            snapshot.restore()


def capture(model: nn.Module, batch: Tensor, train_stats: bool, norm_output: bool) -> dict[str, Tensor]:
    """Each probe point's input on `batch` ("layer3"), and with norm_output each norm's output
    ("layer3/norm"), in the order the forward pass meets them; `model` left `untouched`."""
    points = probe_points(model)
    norms = norm_points(model, points) if norm_output else {}
    captured: dict[str, Tensor] = {}
    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: captured.__setitem__(name, args[0]))
             for name, module in points.items()]
    hooks += [module.register_forward_hook(lambda m, args, out, name=name: captured.__setitem__(f"{name}/norm", out))
              for name, module in norms.items()]
    try:
        with untouched(model):
            model.train(train_stats)
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def percentiles(values: Tensor, q: Iterable[float]) -> Tensor:
    """The q-th percentiles (0..100) over the last dimension, with numpy's default (linear)
    interpolation: (n,) -> (len(q),), (S, n) -> (S, len(q))."""
    qs = torch.tensor([p / 100 for p in q], dtype=values.dtype, device=values.device)
    return torch.quantile(values, qs, dim=-1).movedim(0, -1)


def typical_unit(pre_activation: Tensor) -> int:
    """The unit whose median input is the median of all units' medians: the most typical one."""
    medians = pre_activation.flatten(2).transpose(1, 2).flatten(0, 1) if pre_activation.dim() > 2 else pre_activation
    medians = medians.median(dim=0).values
    return int(medians.argsort()[(medians.numel() - 1) // 2])


class ActivationProbe:
    """Records percentiles of every probe point's input on a fixed batch, for each member.

    `members` says what is probed: `probe_layers()` (layer name -> whether it has a norm layer)
    and `probe_inputs(batch, train_stats, norm_output)` (key -> (S, B, C, ...) tensor)."""

    def __init__(self, members, batch: Tensor, q: Iterable[float] = (15, 50, 85), unit: int | None = None,
                 mode: str = "train", norm_output: bool = False):
        if mode not in ("train", "eval"):
            raise ValueError(f"probe.mode must be train or eval, got {mode!r}")
        self.members, self.batch, self.q, self.mode, self.norm_output = members, batch, tuple(q), mode, norm_output
        self.layers = members.probe_layers()
        self._fixed_unit = unit
        self.units: list[dict[str, int]] = [{} for _ in range(members.size)]
        self.history: list[list[tuple[int, dict[str, float]]]] = [[] for _ in range(members.size)]
        self.last_inputs: list[dict[str, Tensor]] = []

    def __call__(self, step: int) -> list[dict[str, float]]:
        """Per member, {"layer3/unit_p15": ..., "layer3/all_p15": ...} for every layer and percentile,
        and "layer3/norm_unit_p15", "layer3/norm_all_p15"... for the normalization outputs if asked."""
        captured = self.members.probe_inputs(self.batch, self.mode == "train", self.norm_output)
        keys, values = [], []
        for key, x in captured.items():  # x: (S, B, C, ...)
            name, _, norm = key.partition("/")  # "layer3" (the nonlinearity's input) or "layer3/norm"
            for i, units in enumerate(self.units):  # chosen once per member, at its first probe
                if name not in units:
                    units[name] = self._fixed_unit if self._fixed_unit is not None else typical_unit(x[i])
            unit = torch.tensor([units[name] for units in self.units], device=x.device)
            unit_values = x[torch.arange(len(unit), device=x.device), :, unit]  # (S, B, *spatial)
            prefix = f"{name}/{norm}_" if norm else f"{name}/"
            for kind, v in (("unit", unit_values.flatten(1)), ("all", x.flatten(1))):
                keys += [f"{prefix}{kind}_p{p:g}" for p in self.q]
                values.append(percentiles(v.float(), self.q))
        table = torch.cat(values, 1).tolist()  # (S, keys): one device sync per probe
        records = [dict(zip(keys, row)) for row in table]
        for history, record in zip(self.history, records):
            history.append((step, record))
        self.last_inputs = [{k: x[i] for k, x in captured.items()} for i in range(len(records))]
        return records

    def charts(self) -> dict[str, list]:
        """TensorBoard custom-scalars charts, in the order of the forward pass: per layer, for the
        typical unit and for the whole layer (and the norm's output with `norm_output`), a margin
        chart: the median as the line, the lowest and highest percentile as its band (one band
        per run); plain lines where there are fewer than three percentiles. The MLP's charts are
        titled after Figure 1(b, c), its last hidden layer named as such."""
        kinds = {"unit": "typical unit", "all": "whole layer",
                 **({"norm_unit": "norm output, typical unit", "norm_all": "norm output, whole layer"}
                    if self.norm_output else {})}
        qs = sorted(self.q)
        figure = all(name.startswith("layer") for name in self.layers)  # the MLP (Figure 1)
        last = list(self.layers)[-1] if self.layers else None
        out: dict[str, list] = {}
        for name, has_norm in self.layers.items():
            where = f"Fig. 1(b, c): {name}{', last hidden' if name == last else ''}" if figure else name
            for kind, words in kinds.items():
                if kind.startswith("norm") and not has_norm:
                    continue
                tags = [f"probe/{name}/{kind}_p{q:g}" for q in qs]
                series = (["Margin", [tags[len(tags) // 2], tags[0], tags[-1]]] if len(tags) >= 3
                          else ["Multiline", tags])
                out[f"{where}: {words}"] = series
        return out

    def drift(self, member: int = 0) -> dict[str, dict[str, float]]:
        """`drift_statistics` of one member's probes so far."""
        history = self.history[member]
        keys = history[0][1].keys() if history else ()
        return drift_statistics({k: [record[k] for _, record in history] for k in keys})

    def state_dict(self) -> dict:
        return {"history": self.history, "units": self.units}

    def load_state_dict(self, state: dict) -> None:
        self.history = [[tuple(h) for h in member] for member in state["history"]]
        self.units = [dict(u) for u in state["units"]]


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
