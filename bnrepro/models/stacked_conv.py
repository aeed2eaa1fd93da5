"""Several seeds of a conv network (the Sec. 4.2 Inceptions) as one: the conv seed-sweep fast path.

`StackedConvNet(models)` is a copy of `models[0]` in which every layer is S times as wide and
holds the S members side by side along the channels, member-major (member s owns channels
s*C .. (s+1)*C - 1 of every feature map):
- conv: a grouped conv with groups = S (times the layer's own groups), so member s's output
  channels see only member s's input channels;
- BN: one BN over S*C channels, which is S per-member BNs: Sec. 3.2's statistics are per
  feature map, so every member gets its own mu_B, var_B and running averages (group and layer
  norm: S times the groups; instance norm is per channel already);
- the classifier: a batched matmul of (S, B, features) by each member's weights, (S, B, classes);
- dropout: each member draws its masks from its own generator, started where its single run's
  global generator stands after building the model, so it drops what its single run drops;
- LRN, which mixes neighbouring channels, runs per member (`MemberLRN`); the Inception modules concatenate
  per member (`inception.concat`); pools and nonlinearities are per channel already.
Nothing mixes members, so each computes what its single run computes, up to float rounding
(tests/test_stacked_conv.py); its parameters are the members' concatenated along dim 0, so
one optimizer step is every member's step. Activations are kept channels_last, the layout in
which oneDNN's grouped convolutions are fastest on a CPU (README, Performance).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnrepro.nn.bn import BatchNorm

_PER_CHANNEL = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


class MemberLinear(nn.Module):
    """S linear layers, one per member: (B, S*in) -> (S, B, out). weight (S*out, in), bias (S*out)."""

    def __init__(self, members: int, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members * out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        s, n = self.members, x.size(0)
        x = x.reshape(n, s, self.in_features).transpose(0, 1)  # (S, B, in)
        w = self.weight.view(s, self.out_features, self.in_features).transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, w)
        return torch.baddbmm(self.bias.view(s, 1, self.out_features), x, w)


class MemberDropout(nn.Module):
    """Dropout with member s's masks drawn from `generators[s]`, as torch's CPU dropout draws them
    (a Bernoulli(1 - p) mask of the member's (B, features) input, divided by 1 - p). The
    generators' states are the module's extra state, so checkpoints resume them."""

    def __init__(self, p: float, members: int):
        super().__init__()
        self.p, self.members = p, members
        self.generators = [torch.Generator() for _ in range(members)]

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.size(0)
        per_member = x.reshape(n, self.members, -1)
        keep = 1 - self.p
        masks = torch.stack([torch.empty(n, per_member.size(2), dtype=x.dtype).bernoulli_(keep, generator=g)
                             for g in self.generators], 1)
        return (per_member * masks.to(x.device).div_(keep)).reshape(x.shape)

    def get_extra_state(self) -> list[Tensor]:
        return [g.get_state() for g in self.generators]

    def set_extra_state(self, state: list[Tensor]) -> None:
        for g, s in zip(self.generators, state):
            g.set_state(s)


class MemberLRN(nn.Module):
    """Local response normalization (it mixes neighbouring channels) over each member's channels on
    their own, computed in the channels_last layout: torch's `local_response_norm` formula
    (zero-padded window mean of x^2 over `size` channels, then x / (k + alpha * mean)^beta, the
    power as square roots: `inverse_power`) without leaving it."""

    def __init__(self, lrn: nn.LocalResponseNorm, members: int):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.members = lrn.size, lrn.alpha, lrn.beta, lrn.k, members
        self.band: Tensor | None = None

    def window(self, x: Tensor) -> Tensor:
        """band (C, C) for x's per-member channels C: band[i, j] = alpha / size where channel i is in
        channel j's window (torch's padding); kept for the next call of the same shape."""
        per = x.size(1) // self.members
        band = self.band
        if band is None or band.shape[0] != per or band.dtype != x.dtype or band.device != x.device:
            i, j = torch.arange(per).view(-1, 1), torch.arange(per).view(1, -1)
            inside = (i - j >= -(self.size // 2)) & (i - j <= (self.size - 1) // 2)
            band = self.band = inside.to(x.device, x.dtype) * (self.alpha / self.size)
        return band

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        band = self.window(x)
        rows = x.permute(0, 2, 3, 1).reshape(-1, band.shape[0])  # (B*H*W*S, C): a view of the channels_last layout
        y = _LRNRows.apply(rows, band, self.k, self.beta)
        return y.reshape(n, h, w, c).permute(0, 3, 1, 2)


def inverse_power(div: Tensor, beta: float) -> Tensor:
    """div ** -beta. For GoogLeNet's beta = 3/4 as rsqrt(div) * sqrt(rsqrt(div)), cheaper than
    torch's pow with that exponent (exp and log per element; scripts/bench_lrn.py times the whole
    LRN); the two agree to a few float ulp, not bit for bit."""
    if beta != 0.75:
        return div.pow(-beta)
    r = div.rsqrt()
    return r.sqrt().mul_(r)


class _LRNRows(torch.autograd.Function):
    """y = x * d^-beta with d = k + (x * x) @ band, over rows of one member's channels, and its
    gradient written out: dx = g * d^-beta - 2 beta * x * ((g * y / d) @ band^T), four passes over
    the data and one thin matmul where autograd's chain of the forward's ops takes about twelve."""

    @staticmethod
    def forward(ctx, rows: Tensor, band: Tensor, k: float, beta: float) -> Tensor:
        # The window sums as one thin matmul: one pass over the data, where shifted slices take several.
        div = torch.addmm(rows.new_full((1,), k), rows * rows, band)
        scale = inverse_power(div, beta)
        y = rows * scale
        ctx.save_for_backward(rows, band, div, scale, y)
        ctx.beta = beta
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        rows, band, div, scale, y = ctx.saved_tensors
        u = torch.mm((g * y).div_(div), band.t() * (-2 * ctx.beta))
        return torch.addcmul(g * scale, rows, u), None, None, None


def _widen(module: nn.Module, s: int) -> nn.Module:
    """The S-member version of one leaf layer (its parameters are set later, from the members)."""
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(s * module.in_channels, s * module.out_channels, module.kernel_size, module.stride,
                         module.padding, module.dilation, s * module.groups, module.bias is not None,
                         module.padding_mode)
    if isinstance(module, (nn.BatchNorm2d, BatchNorm)):
        return type(module)(s * module.num_features, eps=module.eps, momentum=module.momentum,
                            affine=module.affine, track_running_stats=module.track_running_stats)
    if isinstance(module, nn.GroupNorm):  # S*G groups of member-major channels: per-member groups
        return nn.GroupNorm(s * module.num_groups, s * module.num_channels, module.eps, module.affine)
    if isinstance(module, nn.InstanceNorm2d):  # per example and channel already
        return nn.InstanceNorm2d(s * module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
    if isinstance(module, nn.Linear):
        return MemberLinear(s, module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, nn.Dropout):
        return MemberDropout(module.p, s)
    if isinstance(module, nn.LocalResponseNorm):
        return MemberLRN(module, s)
    if isinstance(module, _PER_CHANNEL):
        return module
    raise ValueError(f"StackedConvNet cannot stack a {type(module).__name__} layer")


def _widen_all(parent: nn.Module, s: int) -> None:
    for name, child in parent.named_children():
        if list(child.children()):
            _widen_all(child, s)
            if hasattr(child, "members"):
                child.members = s  # the Inception modules' per-member concatenation
        else:
            setattr(parent, name, _widen(child, s))


class StackedConvNet(nn.Module):
    """S copies of one conv network, trained as one (module docstring). `forward` takes each
    member's batch, (S, B, C, H, W), or one batch for all members, (B, C, H, W), and returns the
    logits (S, B, classes). `net` is the widened network (an instance of the members' class,
    with its `probe_points()`); `member_state_dict(i)` gives member i as its own state dict."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("StackedConvNet stacks a non-empty list of models")
        self.size = s = len(models)
        self.net = copy.deepcopy(models[0])
        _widen_all(self.net, s)
        self.net.to(next(models[0].parameters()).dtype)
        states = [m.state_dict() for m in models]
        stacked = {k: torch.cat([st[k] for st in states]) if v.dim() else v for k, v in states[0].items()}
        self.net.load_state_dict({**self.net.state_dict(), **stacked})
        dropouts = [m for m in self.net.modules() if isinstance(m, MemberDropout)]
        for m in dropouts[1:]:  # one stream per member, as a single run has one global generator
            m.generators = dropouts[0].generators
        self.net.to(memory_format=torch.channels_last)

    def seed_dropout(self, states: list[Tensor]) -> None:
        """Start member s's dropout masks from `states[s]` (its single run's global RNG state after
        building the model, where that run's dropout draws start)."""
        for m in self.net.modules():
            if isinstance(m, MemberDropout):
                m.set_extra_state(states)

    def dropout_state(self) -> list[Tensor]:
        """The members' dropout generator states (all dropout layers of a network share them, as a
        single run's share torch's global generator)."""
        for m in self.net.modules():
            if isinstance(m, MemberDropout):
                return m.get_extra_state()
        return []

    def forward(self, x: Tensor) -> Tensor:
        s = self.size
        if x.dim() == 4:  # one batch for every member (evaluation, probes)
            n, c, h, w = x.shape
            x = x.permute(0, 2, 3, 1).unsqueeze(3).expand(n, h, w, s, c)
        else:  # (S, B, C, H, W): each member's own batch
            _, n, c, h, w = x.shape
            x = x.permute(1, 3, 4, 0, 2)
        # (B, H, W, S, C) in memory is the channels_last layout of (B, S*C, H, W)
        x = x.reshape(n, h, w, s * c).permute(0, 3, 1, 2)
        return self.net(x)

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """Member i as a state dict of the members' class (load it with `load_state_dict`)."""
        return {k: v.chunk(self.size)[i] if v.dim() else v for k, v in self.net.state_dict().items()
                if not k.endswith("_extra_state")}

    def probe_points(self) -> dict[str, nn.Module]:
        return self.net.probe_points()

    def member_view(self, x: Tensor) -> Tensor:
        """A captured (B, S*C, ...) feature map as (S, B, C, ...)."""
        n, c = x.shape[:2]
        return x.reshape(n, self.size, c // self.size, *x.shape[2:]).transpose(0, 1)


def eval_totals(logits: Tensor, y: Tensor) -> Tensor:
    """Each member's summed cross-entropy and number correct, (S, 2) in float64, from logits
    (S, B, classes) and the batch's targets (B,), which every member was evaluated on."""
    s = logits.size(0)
    target = y.expand(s, -1)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(s, -1).sum(1)
    return torch.stack([loss.double(), (logits.argmax(2) == target).sum(1).double()], 1)


def member_losses(logits: Tensor, y: Tensor) -> Tensor:
    """Each member's mean cross-entropy, (S,), from logits (S, B, classes) and targets (S, B) or (B,)."""
    s, n = logits.shape[:2]
    return F.cross_entropy(logits.flatten(0, 1), y.expand(s, n).flatten(), reduction="none").view(s, n).mean(1)


def dropout_note(device: torch.device, dropout: float) -> str | None:
    """What a stacked conv run with dropout on an accelerator must say: its members draw their masks from
    CPU generators (bnrepro/models/stacked_conv.py's MemberDropout, started where a CPU single run's global
    generator stands), while a single run there draws from the device's own generator, which has no
    per-member streams to split. Same distribution, other masks: such a stack is a valid run of its seeds,
    not a bit-for-bit twin of their single runs on that device (on the CPU it is)."""
    if torch.device(device).type == "cpu" or not dropout:
        return None
    return (f"Note: on {torch.device(device).type}, the stacked members' dropout masks (model.dropout={dropout:g}) "
            "come from per-member CPU generators, a single run's there from the device's generator: the same "
            "distribution, other masks, so each seed is a valid run but not bit-identical to its single run "
            "(on the CPU it is).")
