"""What the training loop trains: one model, or several seeds of one model stacked into one.

The loop (bnrepro/training/loop.py) sees every run as S members trained in lockstep: S = 1 for
a single run (`SingleModel`, any network, DDP, autocast, compile), S = len(seeds) for a seed
sweep of the MLP trained as one model (`StackedMembers` over `models.stacked.StackedMLP`) or of
a conv network (`StackedConvMembers` over `models.stacked_conv.StackedConvNet`). All answer the
same calls with a leading member dimension: the step's losses (S,) and logits (S, B, classes),
evaluation logits (S, B, classes) and totals (S, 2), probed activations (S, B, C, ...), and
`member_tensors(i)`: member i's own slices of the parameters and BN statistics (what the loop
holds still once the member has stopped at its plateau), and `member_state_dict(i)`: a copy of member
i as its single run's state dict (what a best-validation checkpoint keeps, trainer.keep_best_val). Each member is initialized exactly
as its single run would be (`build_members`), so a stacked member's numbers equal its single
run's up to float rounding (tests/test_stacked.py, tests/test_stacked_conv.py).
"""
from __future__ import annotations

import contextlib
import random
import sys
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnrepro.errors import BnreproError
from bnrepro.models import build_model
from bnrepro.models.stacked import StackedMLP
from bnrepro.models.stacked_conv import StackedConvNet, dropout_note, eval_totals, member_losses
from bnrepro.nn.bn import recompute_population_stats
from bnrepro.nn.bn_variants import recompute_precise_stats
from bnrepro.schema import Config, choice, member_seeds
from bnrepro.tracking.probes import capture, norm_points, probe_points
from bnrepro.training import distributed


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Set both ways: a joblib (loky) worker process runs one job after another.
    torch.use_deterministic_algorithms(deterministic)
    if deterministic:
        torch.backends.cudnn.benchmark = False


def autocast(enabled: bool, device: torch.device):
    """bf16 autocast when asked (`trainer.amp`; meant for GPUs, also runs on CPUs); BN layers keep
    float32 parameters and statistics (bnrepro/nn/bn.py)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def probe_layers(model: nn.Module) -> dict[str, bool]:
    """The model's probe points (layer name -> whether its block has a norm layer)."""
    points = probe_points(model)
    norms = norm_points(model, points)
    return {name: name in norms for name in points}


@contextlib.contextmanager
def inference(module: nn.Module) -> Iterator[None]:
    """`module` in eval mode for the block (Algorithm 2's inference), its mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def evaluate(members, batches) -> Tensor:
    """Each member's summed cross-entropy and number correct over the batches: (S, 2), float64."""
    total = torch.zeros(members.size, 2, dtype=torch.float64, device=members.device)
    for logits, y in members.logits(batches):
        total += eval_totals(logits, y)
    return total


@torch.no_grad()
def predict(members, batches) -> tuple[Tensor, Tensor]:
    """Each member's class probabilities over the batches, (S, N, classes), and the targets (N,):
    what Figure 4's ensemble averages (Sec. 4.2.3)."""
    probs, targets = zip(*((logits.softmax(-1), y) for logits, y in members.logits(batches)))
    return torch.cat(probs, 1), torch.cat(targets)


def input_gradient(members) -> Tensor:
    """Per member (S,), the largest |gradient| the last step left on its first layer's weight: 0
    exactly when nothing the loss depends on still depends on the input through a live path (a
    layer of dead ReLUs cuts every path to exact zeros). A tiny but healthy network's gradient is
    tiny, never 0."""
    module = members.module
    grad = module.grads["w1"] if isinstance(members, StackedMembers) else next(module.parameters()).grad
    if grad is None:
        return torch.zeros(members.size, device=members.device)
    return grad.detach().reshape(members.size, -1).abs().amax(1).float()


class SingleModel:
    """One network as a stack of one: DDP under torchrun, trainer.amp/channels_last/compile."""

    size = 1

    def __init__(self, model: nn.Module, amp: bool = False, channels_last: bool = False, compile: bool = False):
        self.module, self.amp, self.channels_last = model, amp, channels_last
        self.device = next(model.parameters()).device
        # The probes hook the plain module; training and evaluation may run a compiled twin of it.
        net = distributed.wrap(model)  # DDP under torchrun, `model` itself otherwise
        self.net = torch.compile(net) if compile else net
        self.last_logits: Tensor | None = None

    def forward_backward(self, x: Tensor, y: Tensor) -> Tensor:
        """One step's forward and backward pass on this process's slice of the batch: the loss (1,)."""
        x, y = distributed.shard(x, y)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.amp, self.device):
            logits = self.net(x).float()
            loss = F.cross_entropy(logits, y)
        loss.backward()
        self.last_logits = logits.detach().unsqueeze(0)
        return loss.detach().unsqueeze(0)

    @torch.no_grad()
    def logits(self, batches) -> Iterator[tuple[Tensor, Tensor]]:
        """(logits (1, B, classes), targets) per batch, in inference mode (Algorithm 2)."""
        # The wrapper too (DDP, compiled): no buffer broadcast, no graph for training.
        with inference(self.net):
            for x, y in batches:
                with autocast(self.amp, x.device):
                    yield self.net(x).float().unsqueeze(0), y

    def evaluate(self, batches) -> Tensor:
        """Summed loss and number correct over the batches: (1, 2)."""
        return evaluate(self, batches)

    def member_tensors(self, i: int) -> list[Tensor]:
        """The parameters and floating-point buffers (BN statistics) of the one member."""
        return [t.detach() for t in (*self.module.parameters(), *self.module.buffers()) if t.is_floating_point()]

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """A copy of the one network's state dict (what a best-validation checkpoint keeps)."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def probe_layers(self) -> dict[str, bool]:
        return probe_layers(self.module)

    def probe_inputs(self, batch: Tensor, train_stats: bool, norm_output: bool) -> dict[str, Tensor]:
        return {k: v.unsqueeze(0) for k, v in capture(self.module, batch, train_stats, norm_output).items()}

    def recompute_population(self, batches, num_batches: int) -> None:
        recompute_population_stats(self.module, batches, num_batches)

    def recompute_precise(self, batches, num_batches: int) -> None:
        recompute_precise_stats(self.module, batches, num_batches)


class StackedMembers:
    """Several seeds of the MLP as one `StackedMLP`, its own forward and backward passes."""

    def __init__(self, model: StackedMLP):
        self.module, self.size = model, model.size
        self.device = next(model.parameters()).device
        self.last_logits: Tensor | None = None

    def forward_backward(self, x: Tensor, y: Tensor) -> Tensor:
        loss = self.module.forward_backward(x.flatten(2), y)
        self.last_logits = self.module.last_logits
        return loss

    @torch.no_grad()
    def logits(self, batches) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in batches:
            yield self.module.pre_activations(x.flatten(1), train_stats=False)[1], y

    def evaluate(self, batches) -> Tensor:
        return evaluate(self, batches)

    def member_tensors(self, i: int) -> list[Tensor]:
        """Member i's views of the stacked parameters and running statistics (all (S, ...)); the
        num_batches_tracked counters, shared by all members, are left out."""
        m = self.module
        buffers = [t for name, t in m.named_buffers() if name.startswith(("running_mean", "running_var"))]
        return [t[i] for t in (*m.params.values(), *buffers)]

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """A copy of member i as the single run's MLP state dict."""
        return {k: v.detach().clone() for k, v in self.module.member_state_dict(i).items()}

    def probe_layers(self) -> dict[str, bool]:
        return {f"layer{l}": self.module.bn for l in range(1, self.module.depth + 1)}

    def probe_inputs(self, batch: Tensor, train_stats: bool, norm_output: bool) -> dict[str, Tensor]:
        return self.module.pre_activations(batch.flatten(1), train_stats, norm_output)[0]  # changes nothing

    def recompute_population(self, batches, num_batches: int) -> None:
        raise BnreproError("bn.population=average is not supported by the stacked path (check_stackable).")

    def recompute_precise(self, batches, num_batches: int) -> None:
        raise BnreproError("bn.population=precise is not supported by the stacked path (check_stackable).")


class StackedConvMembers:
    """Several seeds of a conv network as one `StackedConvNet` (grouped convolutions), trained by
    autograd; `trainer.amp` runs its convolutions in bf16 as a single run's would."""

    # Examples per member per evaluation pass: inference is per example (Algorithm 2), so the split
    # changes nothing but speed (measured: 1,000 images in 4 passes take 2/3 of the time of one).
    EVAL_CHUNK = 256

    def __init__(self, model: StackedConvNet, amp: bool = False):
        self.module, self.size, self.amp = model, model.size, amp
        self.device = next(model.parameters()).device
        self.last_logits: Tensor | None = None

    def forward_backward(self, x: Tensor, y: Tensor) -> Tensor:
        with autocast(self.amp, self.device):
            logits = self.module(x).float()
            losses = member_losses(logits, y)
        losses.sum().backward()  # nothing mixes members: each gets the gradient of its own loss
        self.last_logits = logits.detach()
        return losses.detach()

    @torch.no_grad()
    def logits(self, batches) -> Iterator[tuple[Tensor, Tensor]]:
        with inference(self.module):
            for x, y in (chunk for batch in batches for chunk in zip(*(t.split(self.EVAL_CHUNK) for t in batch))):
                with autocast(self.amp, x.device):
                    yield self.module(x).float(), y

    def evaluate(self, batches) -> Tensor:
        return evaluate(self, batches)

    def member_tensors(self, i: int) -> list[Tensor]:
        """Member i's channels of every parameter and floating-point buffer (member-major along dim 0,
        as `StackedConvNet.member_state_dict` reads them); scalar counters are shared and left out."""
        tensors = (*self.module.parameters(), *self.module.buffers())
        return [t.detach().chunk(self.size)[i] for t in tensors if t.dim() and t.is_floating_point()]

    def member_state_dict(self, i: int) -> dict[str, Tensor]:
        """A copy of member i as its single run's state dict (`StackedConvNet.member_state_dict`)."""
        return {k: v.detach().clone() for k, v in self.module.member_state_dict(i).items()}

    def probe_layers(self) -> dict[str, bool]:
        return probe_layers(self.module)

    def probe_inputs(self, batch: Tensor, train_stats: bool, norm_output: bool) -> dict[str, Tensor]:
        # The members' own dropout generators are kept out of the measurement, like torch's (`untouched`).
        dropout = self.module.dropout_state()
        try:
            captured = capture(self.module, batch, train_stats, norm_output)
        finally:
            self.module.seed_dropout(dropout)
        return {k: self.module.member_view(v) for k, v in captured.items()}

    def recompute_population(self, batches, num_batches: int) -> None:
        raise BnreproError("bn.population=average is not supported by the stacked path (check_stackable).")

    def recompute_precise(self, batches, num_batches: int) -> None:
        raise BnreproError("bn.population=precise is not supported by the stacked path (check_stackable).")


def check_stackable(cfg: Config) -> None:
    """The stacked path covers the MLP and the Inceptions on resident data; anything else is one
    clear error."""
    problems = []
    conv = cfg.model.name != "mlp"
    if choice(cfg.data.name) == "imagenet_subset":
        problems.append("data=imagenet_subset (only data sets held whole on the device are stacked)")
    if choice(cfg.model.activation) == "identity" and not conv:  # the deep linear network (issue 32)
        problems.append("model.activation=identity (the stacked MLP writes out sigmoid, tanh and relu only)")
    if choice(cfg.bn.placement) == "after" and not conv:
        problems.append("bn.placement=after (the stacked MLP: none or before)")
    if choice(cfg.bn.norm) != "batch" and choice(cfg.bn.placement) != "none" and not conv:
        problems.append(f"bn.norm={choice(cfg.bn.norm)} (the stacked MLP: batch normalization only)")
    if choice(cfg.bn.population) != "ema":
        problems.append(f"bn.population={choice(cfg.bn.population)} (stacked: ema)")
    # Beyond the paper (issue 18, bnrepro/nn/bn_variants.py): the stacked paths write BN out themselves.
    if choice(cfg.bn.norm) == "renorm" and choice(cfg.bn.placement) != "none" and conv:
        problems.append("bn.norm=renorm (stacked: batch normalization and batch-free norms)")
    if cfg.bn.ghost_batch is not None:
        problems.append(f"bn.ghost_batch={cfg.bn.ghost_batch} (stacked: the whole batch; null)")
    if cfg.bn.freeze_after is not None and cfg.bn.freeze_after < 1.0:
        problems.append(f"bn.freeze_after={cfg.bn.freeze_after} (stacked: never frozen; null)")
    if cfg.bn.eval_weight:
        problems.append(f"bn.eval_weight={cfg.bn.eval_weight} (stacked: population statistics only; 0)")
    for knob in ("compile", "channels_last") if conv else ("compile", "amp", "channels_last"):
        if getattr(cfg.trainer, knob):
            problems.append(f"trainer.{knob}=true (the stacked path is its own fast path; use trainer=faithful"
                            + (", with trainer.amp=true for bf16)" if conv else ")"))
    if distributed.active():
        problems.append("torchrun (stacked seeds train in one process)")
    # Beyond the paper (Santurkar et al. 2018): the noise layer and the gradient probes work on one
    # network's own modules; the stacked MLP writes its passes out and the stacked conv net widens them.
    if cfg.bn.noise.enabled:
        problems.append("bn.noise.enabled=true (noisy BN trains single models)")
    for knob in ("ics_every", "landscape_every"):
        if getattr(cfg.probe, knob):
            problems.append(f"probe.{knob}={getattr(cfg.probe, knob)} (the gradient probes measure single models; 0 is off)")
    if problems:
        raise BnreproError("The stacked seed path (seeds=[...]) does not support: " + "; ".join(problems)
                           + ". Drop `seeds` and sweep `seed=0,1,...` with -m instead, or change those options.")


def build_members(cfg: Config, input_shape: tuple[int, ...], num_classes: int, device: torch.device):
    """The members `cfg` trains, each initialized exactly as the single run of its seed is."""
    models, rng = [], []
    for seed in member_seeds(cfg):
        seed_everything(seed, cfg.trainer.deterministic)
        models.append(build_model(cfg.model, cfg.bn, input_shape, num_classes, seed))
        rng.append(torch.get_rng_state())  # where the single run's dropout draws start
    if cfg.seeds is None:  # the torch RNG goes on from here into training (dropout), as it always has
        model = distributed.convert_sync_bn(models[0], cfg.bn.sync, device).to(device)
        if cfg.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = cfg.trainer.cudnn_benchmark
        t = cfg.trainer
        return SingleModel(model, t.amp, t.channels_last, t.compile)
    if cfg.model.name == "mlp":
        return StackedMembers(StackedMLP([m.to(device) for m in models]))
    stacked = StackedConvNet(models).to(device)
    stacked.seed_dropout(rng)
    if note := dropout_note(device, cfg.model.dropout):
        print(note, file=sys.stderr)
    return StackedConvMembers(stacked, cfg.trainer.amp)

