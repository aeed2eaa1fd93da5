"""Several seeds of the Figure 1 MLP as one stacked model: the fast path of a seed sweep.

A 784-100-100-100-10 network at batch 60 is too small to keep a CPU busy: one step is ~25
MFLOP spread over ~100 small kernels, so launching them costs as much as computing them.
`StackedMLP` holds S copies of `models.mlp.MLP` with every parameter stacked along a new first
dimension, so one elementwise kernel serves all S members and only the matrix products are
per member. Its forward and backward passes are written out (no autograd graph to build each
step): Algorithm 1 with the backward pass of Sec. 3, as in `bn.BatchNormFunction`.

Nothing mixes members: every reduction (BN's mu_B and var_B, the loss) is per member, so each
member computes what the single-run model of the same seed computes, up to float rounding
(tests/test_stacked.py checks both the gradients and whole runs). The training loop drives it
through `bnrepro/training/members.py`, as it drives a single model.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from bnrepro.models.mlp import MLP
from bnrepro.nn.bn import scale_shift, update_running_stats

_ACTIVATIONS = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu"}


def _onednn_linear():
    """oneDNN's fp32 inner product (what inductor calls on CPUs), or None where torch lacks it.

    torch's CPU matmul goes to MKL, which on AMD CPUs runs without AVX-512; oneDNN dispatches on
    the instruction set and is ~2x faster for the first layer's 60x784x100 products here."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        a, b = torch.ones(2, 3), torch.ones(4, 3)
        return op if torch.equal(op(a, b, None, "none", [], ""), a @ b.t()) else None
    except (RuntimeError, NotImplementedError):
        return None


_LINEAR = _onednn_linear()


_ACT_GRAD = {  # dL/dz from dL/dh and the output h = g(z), one fused kernel each
    "sigmoid": torch.ops.aten.sigmoid_backward,
    "tanh": torch.ops.aten.tanh_backward,
    "relu": lambda dh, h: torch.ops.aten.threshold_backward(dh, h, 0),
}


class StackedMLP(nn.Module):
    """S `MLP`s of one architecture (placement none or before), stacked; parameters are copied.

    Layer l (1-based) holds w{l} (S, out, in) as nn.Linear stores it, b{l} (S, 1, out) when the
    layer has a bias, and with BN gamma{l}, beta{l} (S, 1, out) and the buffers running_mean{l},
    running_var{l}, num_batches_tracked{l}. The classifier is layer depth + 1. The parameters are
    views of two flat nn.Parameters, `flat_weights` (every w) and `flat_other` (biases, gamma, beta:
    what `optim.weight_decay_params=weights` leaves undecayed), so a torch optimizer steps every
    parameter of every member in one elementwise kernel per group. `forward_backward` writes the
    gradients into buffers of their own (`grads[name]` are views of them) and sets them as the two
    parameters' `.grad` on every call, so `optimizer.zero_grad()` in either form is harmless: it
    is overwritten, never accumulated into. Build it on its device (the views do not follow `.to()`).
    """

    def __init__(self, models: list[MLP]):
        super().__init__()
        if not models or any(not isinstance(m, MLP) for m in models):
            raise ValueError("StackedMLP stacks a non-empty list of models.mlp.MLP")
        first = models[0]
        self.size, self.depth = len(models), len(first.hidden)
        block = first.hidden[0]
        self.activation = _ACTIVATIONS[type(block.act)]
        names = list(dict(block.named_children()))
        if names not in (["linear", "act"], ["linear", "bn", "act"]):
            raise ValueError(f"StackedMLP supports bn.placement none or before, not blocks {names}")
        self.bn = "bn" in names
        if self.bn:
            self.eps, self.momentum = block.bn.eps, block.bn.momentum
        self.onednn = _LINEAR is not None
        params: dict[str, Tensor] = {}
        for l in range(1, self.depth + 1):
            blocks = [m.hidden[l - 1] for m in models]
            params[f"w{l}"] = torch.stack([b.linear.weight for b in blocks])
            if blocks[0].linear.bias is not None:
                params[f"b{l}"] = torch.stack([b.linear.bias.unsqueeze(0) for b in blocks])
            if self.bn:
                params[f"gamma{l}"] = torch.stack([b.bn.weight.unsqueeze(0) for b in blocks])
                params[f"beta{l}"] = torch.stack([b.bn.bias.unsqueeze(0) for b in blocks])
                for kind in ("running_mean", "running_var"):
                    self.register_buffer(f"{kind}{l}", torch.stack([getattr(b.bn, kind).unsqueeze(0) for b in blocks]).clone())
                self.register_buffer(f"num_batches_tracked{l}", blocks[0].bn.num_batches_tracked.clone())
        out = self.depth + 1
        params[f"w{out}"] = torch.stack([m.classifier.weight for m in models])
        params[f"b{out}"] = torch.stack([m.classifier.bias.unsqueeze(0) for m in models])
        groups = {"weights": {k: v.detach() for k, v in params.items() if k.startswith("w")},
                  "other": {k: v.detach() for k, v in params.items() if not k.startswith("w")}}
        self.params, self.grads, self._grad_buffers = {}, {}, {}
        for group, tensors in groups.items():
            flat = nn.Parameter(torch.cat([v.flatten() for v in tensors.values()]))
            setattr(self, f"flat_{group}", flat)
            self._grad_buffers[group] = torch.zeros_like(flat)
            self.params.update(self._views(flat, tensors))
            self.grads.update(self._views(self._grad_buffers[group], tensors))
        self._bind_grads()

    def decay_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(weights, everything else), for `optim.weight_decay_params` (bnrepro/training/optim.py)."""
        return [self.flat_weights], [self.flat_other]

    def _bind_grads(self) -> None:
        self.flat_weights.grad, self.flat_other.grad = self._grad_buffers["weights"], self._grad_buffers["other"]

    @staticmethod
    def _views(flat: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
        views, offset = {}, 0
        for name, t in like.items():
            views[name] = flat[offset:offset + t.numel()].view(t.shape)
            offset += t.numel()
        return views

    def _get(self, kind: str, layer: int) -> Tensor | None:
        name = f"{kind}{layer}"
        return self.params[name] if name in self.params else getattr(self, name, None)

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """Member i as an `MLP` state dict (load it with `MLP(...).load_state_dict`)."""
        state = {}
        for l in range(1, self.depth + 1):
            prefix = f"hidden.{l - 1}."
            state[prefix + "linear.weight"] = self._get("w", l)[i]
            if self._get("b", l) is not None:
                state[prefix + "linear.bias"] = self._get("b", l)[i, 0]
            if self.bn:
                for ours, theirs in (("gamma", "weight"), ("beta", "bias"), ("running_mean", "running_mean"),
                                     ("running_var", "running_var")):
                    state[prefix + "bn." + theirs] = self._get(ours, l)[i, 0]
                state[prefix + "bn.num_batches_tracked"] = self._get("num_batches_tracked", l)
        state["classifier.weight"] = self._get("w", self.depth + 1)[i]
        state["classifier.bias"] = self._get("b", self.depth + 1)[i, 0]
        return {k: v.detach().clone() for k, v in state.items()}

    # -- the matrix products: per member through oneDNN for the wide first layer, else one bmm --

    def _product(self, a: Tensor, b: Tensor, wide: bool, out: Tensor | None = None) -> Tensor:
        """Per member a @ b^T for (S, m, k) and (S, n, k) operands (views allowed), into `out` if given."""
        if wide and self.onednn and a.device.type == "cpu":
            parts = [_LINEAR(a[i], b[i], None, "none", [], "") for i in range(self.size)]
            return torch.stack(parts, out=out) if out is not None else torch.stack(parts)
        return torch.bmm(a, b.transpose(1, 2), out=out)

    def _shared_input(self, x: Tensor, layer: int) -> Tensor:
        """Layer `layer`'s pre-activation for one input x (B, in) shared by all members: (S, B, out),
        as one wide product against all members' weights side by side."""
        w = self._get("w", layer)
        out = (_LINEAR(x, w.flatten(0, 1), None, "none", [], "") if self.onednn and x.device.type == "cpu"
               else x @ w.flatten(0, 1).t())
        return out.view(len(x), self.size, -1).transpose(0, 1)

    # -- training --

    def _bn_train(self, a: Tensor, l: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Algorithm 1 per member over the mini-batch (dim 1): z, x_hat, 1/sqrt(var_B + eps), mu_B, var_B.
        Written out here (not nn.bn.BatchNormFunction) so that the S members' normalization is one
        kernel each and the backward pass below can reuse x_hat; the running statistics and the
        inference map are nn.bn's own (`update_running_stats`, `scale_shift`)."""
        mu_B = a.mean(1, keepdim=True)
        x_mu = a - mu_B
        var_B = x_mu.square().mean(1, keepdim=True)  # torch.var_mean is ~20x slower over dim 1
        inv_std = torch.rsqrt(var_B + self.eps)
        x_hat = x_mu.mul_(inv_std)
        return torch.addcmul(self._get("beta", l), x_hat, self._get("gamma", l)), x_hat, inv_std, mu_B, var_B

    def _act(self, z: Tensor) -> Tensor:
        return torch.sigmoid(z) if self.activation == "sigmoid" else torch.tanh(z) if self.activation == "tanh" else torch.relu(z)

    @torch.no_grad()
    def forward_backward(self, x: Tensor, y: Tensor) -> Tensor:
        """One training step's forward and backward pass for x (S, N, in), y (S, N).

        Returns each member's mean cross-entropy (S,) and leaves the gradient of each member's
        loss in the flat parameters' `.grad` (`grads[name]` are its views); BN's running
        statistics are updated as torch's BN updates them.
        """
        self._bind_grads()
        n, grads = x.size(1), self.grads
        h, saved = x, []
        for l in range(1, self.depth + 1):
            a = self._product(h, self._get("w", l), wide=l == 1)
            if self.bn:
                z, x_hat, inv_std, mu_B, var_B = self._bn_train(a, l)
                update_running_stats(self._get("running_mean", l), self._get("running_var", l),
                                     self._get("num_batches_tracked", l), self.momentum, mu_B, var_B, n)
            else:
                z, x_hat, inv_std = a + self._get("b", l), None, None
            saved.append((h, x_hat, inv_std))
            h = self._act(z)
        out = self.depth + 1
        logits = self.last_logits = torch.baddbmm(self._get("b", out), h, self._get("w", out).transpose(1, 2))
        log_p = torch.log_softmax(logits, 2)
        target = y.unsqueeze(2)
        loss = log_p.gather(2, target).mean((1, 2)).neg_()
        # d(mean CE)/d logits = (softmax - one_hot) / N, per member.
        d = log_p.exp_().scatter_add_(2, target, torch.full(target.shape, -1.0, device=x.device)).div_(n)
        torch.bmm(d.transpose(1, 2), h, out=grads[f"w{out}"])
        torch.sum(d, 1, keepdim=True, out=grads[f"b{out}"])
        dh = torch.bmm(d, self._get("w", out))
        for l in range(self.depth, 0, -1):
            h_in, x_hat, inv_std = saved[l - 1]
            dz = _ACT_GRAD[self.activation](dh, h)
            if self.bn:
                # Sec. 3's backward pass of Algorithm 1, with d var_B and d mu_B folded in:
                # dL/da = gamma / sqrt(var_B + eps) * (dz - (sum dz + x_hat * sum dz x_hat) / m)
                dbeta = torch.sum(dz, 1, keepdim=True, out=grads[f"beta{l}"])
                dgamma = torch.sum(dz * x_hat, 1, keepdim=True, out=grads[f"gamma{l}"])
                da = torch.sub(dz, torch.addcmul(dbeta, x_hat, dgamma), alpha=1 / n).mul_(self._get("gamma", l) * inv_std)
            else:
                da = dz
                torch.sum(dz, 1, keepdim=True, out=grads[f"b{l}"])
            self._product(da.transpose(1, 2), h_in.transpose(1, 2), wide=l == 1, out=grads[f"w{l}"])
            if l > 1:
                dh = torch.bmm(da, self._get("w", l))
            h = h_in
        return loss

    # -- inference, and the probes' view of the network --

    @torch.no_grad()
    def pre_activations(self, x: Tensor, train_stats: bool, norm_output: bool = False) -> tuple[dict[str, Tensor], Tensor]:
        """For a batch x (B, in) seen by every member: each hidden nonlinearity's input (S, B, width)
        as "layer<l>", with norm_output also BN's output as "layer<l>/norm" (the same tensor: BN sits
        right before the nonlinearity), in the order a single run's probe hooks see them; and the
        logits (S, B, classes). BN uses the batch's statistics if `train_stats` (nothing is updated)
        and else the population statistics (Algorithm 2)."""
        zs, h = {}, None
        for l in range(1, self.depth + 1):
            a = self._shared_input(x, l) if l == 1 else torch.bmm(h, self._get("w", l).transpose(1, 2))
            if not self.bn:
                z = a + self._get("b", l)
            elif train_stats:
                z = self._bn_train(a, l)[0]
            else:
                scale, shift = scale_shift(self._get("gamma", l), self._get("beta", l), self._get("running_mean", l),
                                           self._get("running_var", l), self.eps)  # Algorithm 2's affine map
                z = torch.addcmul(shift, a, scale)
            if norm_output and self.bn:
                zs[f"layer{l}/norm"] = z
            zs[f"layer{l}"] = z
            h = self._act(z)
        out = self.depth + 1
        return zs, torch.baddbmm(self._get("b", out), h, self._get("w", out).transpose(1, 2))
