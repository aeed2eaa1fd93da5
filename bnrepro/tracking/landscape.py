"""Why BN helps, measured: Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization
Help Optimization?", as probes of the training loop.

- Gradient-based internal covariate shift (Def. 2.1, Fig. 3). For layer i at step t, G is its
  gradient on the step's batch; G' the same layer's gradient on the same batch after layers
  1..i-1 took their update, W_j - lr * G_j (a plain SGD step on their own gradients, at the
  optimizer's current rate), layers i.. unchanged. If BN worked by reducing internal covariate
  shift, BN networks would show the smaller ||G - G'|| and the cosine nearer 1; the paper finds
  equal or higher shift with BN. `ics`.
- The landscape along the gradient (Sec. 3.2, Fig. 4): from w, steps w - eta g along the gradient
  g, at eta = k x lr for k in `steps` (the paper's 0.5 .. 4 x lr): the loss there (its range:
  "variation of the loss"), the gradient's change ||grad L(w) - grad L(w - eta g)|| ("gradient
  predictiveness") and the largest change per distance moved, max ||change|| / ||eta g||
  ("effective beta-smoothness"); also L(w - eta g) / L(w), Bjorck et al. 2018's relative loss
  after a step. `landscape`.

Both use the step's own training batch, before its update, with the network as training sees
it (train mode: BN's batch statistics, dropout, noise). Every pass starts from the same state
(`probes.Snapshot.reset`: the same dropout masks and noise, BN's running statistics as found), and
after the probe everything is as it was: weights (replaced, never written: torch.func.functional_call),
buffers, extra state, RNG, modes; gradients come from torch.autograd.grad, so `.grad` and the
optimizer are never touched. The loss is the cross-entropy SGD minimizes, without weight decay.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bnrepro.errors import BnreproError
from bnrepro.tracking.probes import Snapshot, probe_points
from bnrepro.training import distributed
from bnrepro.training.members import SingleModel

# The loss of the probe's batch with some parameters replaced (name -> tensor); the rest as they are.
LossOf = Callable[[Mapping[str, Tensor]], Tensor]


def parameter_layers(model: nn.Module) -> dict[str, list[str]]:
    """Layer name -> the names of its trainable parameters, in the order of the forward pass (the
    models define their layers in that order). A layer is a block of bnrepro/models/blocks.py (its
    linear or conv layer and its norm's gamma and beta) or any other module holding parameters of
    its own (the classifier). The MLP's blocks take their probe names (layer1, ...); the conv nets'
    keep their module paths (inception.3a.branch3x3.reduce), as their branches are not a chain."""
    blocks = [path for path, m in model.named_modules()
              if isinstance(m, nn.Sequential) and {"linear", "conv"} & set(m._modules)]
    groups: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            owner = next((path for path in blocks if name.startswith(path + ".")), name.rpartition(".")[0])
            groups.setdefault(owner, []).append(name)
    try:
        points = probe_points(model)
    except ValueError:
        return groups
    acts = {id(act): name for name, act in points.items()}
    paths = {path: acts.get(id(getattr(model.get_submodule(path), "act", None))) for path in blocks}
    if all(paths.values()):  # every block is a probe point: name them so
        groups = {paths.get(path, path): names for path, names in groups.items()}
    return groups


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def gradients(loss: Tensor, params: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
    """d loss / d params[name] for each name (zeros for a parameter the loss does not use)."""
    found = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return {n: torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, found)}


def ics(loss_of: LossOf, params: Mapping[str, Tensor], layers: Mapping[str, Sequence[str]], lr: float,
        grads: Mapping[str, Tensor] | None = None) -> dict[str, float]:
    """Def. 2.1 per layer, in `layers`' order: "<layer>/l2_diff" ||G - G'||, "<layer>/cosine"
    cos(G, G'), "<layer>/grad_norm" ||G||. `grads`: every parameter's gradient at `params`, if
    already known. The first layer has no earlier layers: G' = G."""
    if grads is None:
        grads = gradients(loss_of({}), params, list(params))
    out: dict[str, float] = {}
    updated: dict[str, Tensor] = {}  # layers 1..i-1 after their SGD step
    for layer, names in layers.items():
        g = _flat([grads[n] for n in names])
        if updated:
            moved = gradients(loss_of(updated), params, names)
            g2 = _flat([moved[n] for n in names])
        else:
            g2 = g
        norms = g.norm() * g2.norm()
        out[f"{layer}/l2_diff"] = float((g - g2).norm())
        out[f"{layer}/cosine"] = float(g @ g2 / norms) if norms > 0 else float("nan")
        out[f"{layer}/grad_norm"] = float(g.norm())
        updated.update({n: (params[n] - lr * grads[n]).detach() for n in names})
    return out


def landscape(loss_of: LossOf, params: Mapping[str, Tensor], lr: float, steps: Sequence[float],
              loss: Tensor | None = None, grads: Mapping[str, Tensor] | None = None) -> dict[str, float]:
    """Sec. 3.2 along g = grad L(w), at w - eta g for eta = k * lr, k in `steps`: "loss" L(w),
    "grad_norm" ||g||; per k "loss_x<k>", "rel_loss_x<k>" (L(w - eta g) / L(w)), "grad_change_x<k>"
    (||grad L(w) - grad L(w - eta g)||), "beta_x<k>" (that change / ||eta g||); over the k,
    "loss_min", "loss_max", "loss_range", "grad_change_min", "grad_change_max" and "beta" (the
    largest beta_x<k>: the effective beta-smoothness). `loss`, `grads`: at w, if already known."""
    names = list(params)
    if loss is None or grads is None:
        loss = loss_of({})
        grads = gradients(loss, params, names)
    g = _flat([grads[n] for n in names])
    base = float(loss.detach())
    out = {"loss": base, "grad_norm": float(g.norm())}
    losses, changes, betas = [], [], []
    for k in steps:
        eta = k * lr
        moved = {n: (params[n] - eta * grads[n]).detach().requires_grad_() for n in names}
        there = loss_of(moved)
        change = float((_flat(list(gradients(there, moved, names).values())) - g).norm())
        distance = eta * float(g.norm())
        losses.append(float(there.detach()))
        changes.append(change)
        betas.append(change / distance if distance > 0 else float("nan"))
        out.update({f"loss_x{k:g}": losses[-1], f"rel_loss_x{k:g}": losses[-1] / base if base else float("nan"),
                    f"grad_change_x{k:g}": change, f"beta_x{k:g}": betas[-1]})
    out.update(loss_min=min(losses), loss_max=max(losses), loss_range=max(losses) - min(losses),
               grad_change_min=min(changes), grad_change_max=max(changes), beta=max(betas))
    return out


class GradientProbe:
    """`ics` every `ics_every` steps and `landscape` every `landscape_every` steps (0: never), on
    the training batch of the step, before its update; for a single model (bnrepro/training/members.py:
    the stacked paths refuse these probes in `check_stackable`)."""

    def __init__(self, members, ics_every: int = 0, landscape_every: int = 0,
                 steps: Sequence[float] = (0.5, 1.0, 2.0, 4.0)):
        if not isinstance(members, SingleModel):
            raise BnreproError("probe.ics_every and probe.landscape_every measure a single model; drop `seeds` "
                               "and sweep seed=0,1,... with -m instead (or set both to 0).")
        if distributed.active():
            raise BnreproError("probe.ics_every and probe.landscape_every measure the whole batch in one process; "
                               "under torchrun set both to 0 (or train with one process).")
        self.members, self.ics_every, self.landscape_every, self.steps = members, ics_every, landscape_every, tuple(steps)
        self.layers = parameter_layers(members.module)

    def due(self, step: int) -> bool:
        return bool(self._due(self.ics_every, step) or self._due(self.landscape_every, step))

    @staticmethod
    def _due(every: int, step: int) -> bool:
        """Every `every` steps, and at step 1 (the weights at initialization, before any update:
        where Santurkar et al.'s curves and Bjorck et al.'s relative loss start)."""
        return bool(every) and (step == 1 or step % every == 0)

    def loss_of(self, x: Tensor, y: Tensor, snapshot: Snapshot) -> LossOf:
        """The training step's loss on (x, y), each pass from the state `snapshot` holds."""
        model, members = self.members.module, self.members
        if members.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def loss_of(replaced: Mapping[str, Tensor]) -> Tensor:
            snapshot.reset()  # the same dropout masks, noise and BN statistics in every pass
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=members.amp):
                logits = functional_call(model, dict(replaced), (x,)).float()
            return F.cross_entropy(logits, y)

        return loss_of

    def __call__(self, step: int, x: Tensor, y: Tensor, lr: float) -> dict[str, dict[str, float]]:
        """Split ("ics", "landscape") -> record, for the measurements due at `step`."""
        model = self.members.module
        snapshot = Snapshot(model)
        try:
            model.train()
            with torch.enable_grad():
                loss_of = self.loss_of(x, y, snapshot)
                params = {n: p for n, p in model.named_parameters() if p.requires_grad}
                loss = loss_of({})
                grads = gradients(loss, params, list(params))
                out = {}
                if self._due(self.ics_every, step):
                    out["ics"] = ics(loss_of, params, self.layers, lr, grads)
                if self._due(self.landscape_every, step):
                    out["landscape"] = landscape(loss_of, params, lr, self.steps, loss, grads)
        finally:
            snapshot.restore()
        return out

    def charts(self) -> dict[str, list]:
        """TensorBoard custom-scalars charts after Santurkar et al.'s Figures 3 and 4."""
        out = {}
        if self.ics_every:
            for kind, words in (("l2_diff", "||G - G'||"), ("cosine", "cos(G, G')")):
                out[f"Santurkar Fig. 3: ICS, {words}"] = ["Multiline", [f"ics/{layer}/{kind}" for layer in self.layers]]
        if self.landscape_every:
            out["Santurkar Fig. 4(a): loss along the gradient"] = [
                "Margin", ["landscape/loss", "landscape/loss_min", "landscape/loss_max"]]
            out["Santurkar Fig. 4(b): gradient predictiveness"] = [
                "Multiline", ["landscape/grad_change_min", "landscape/grad_change_max"]]
            out["Santurkar Fig. 4(c): effective beta-smoothness"] = ["Multiline", ["landscape/beta"]]
        return out
