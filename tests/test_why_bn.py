"""Why BN helps, measured (issue 17): Santurkar et al. 2018's noisy BN, gradient-based internal
covariate shift and the landscape along the gradient, each on a case with a known answer, and
every probe leaving training exactly as it was."""
import copy
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.func import functional_call

from bnrepro.errors import BnreproError
from bnrepro.models import build_model
from bnrepro.models.inception import InceptionSmall
from bnrepro.models.mlp import MLP
from bnrepro.nn.noise import CovariateShiftNoise, noise_factory, noise_generator
from bnrepro.schema import NoiseOptions
from bnrepro.tracking.landscape import GradientProbe, ics, landscape, parameter_layers
from bnrepro.training.checkpoint import CHECKPOINT_DIR, checkpoints, read_verified
from bnrepro.training.members import SingleModel
from bnrepro.training.session import run
from tests.conftest import SMOKE, run_one

NOISE = noise_factory(NoiseOptions(enabled=True), seed=0)
# A tiny conv net with every kind of state a probe could disturb: dropout (torch's global RNG),
# BN's running statistics, the noise's own generator.
CONV = ["variant=bn_baseline", "model=inception_small", "model.width_mult=0.125", "model.dropout=0.4",
        "data.synthetic.shape=[3,16,16]", "trainer.threads=1", "trainer.deterministic=true"]


# --- noisy BN (bnrepro/nn/noise.py) ----------------------------------------------------------------

def _terms(layer, n):
    """One training pass's additive term m and multiplicative term s, (n, C) each: the layer's output
    on zeros is m, on ones s + m (the same draws: its state is put back in between)."""
    state = layer.get_extra_state()
    m = layer(torch.zeros(n, layer.num_features))
    layer.set_extra_state(state)
    return layer(torch.ones(n, layer.num_features)) - m, m


def test_noise_has_the_papers_statistics():
    """Algorithm 1 with its constants: per unit mu_t ~ U(-0.5, 0.5), sigma_t ~ U(1, 1.25); per example
    m ~ U(mu_t +/- 0.1) and s ~ N(sigma_t, 0.1)."""
    layer = NOISE(64).train()
    s, m = _terms(layer, 20_000)
    mu, sigma = layer.mu_t, layer.sigma_t
    assert mu.abs().max() <= 0.5 and ((sigma >= 1) & (sigma <= 1.25)).all()
    assert ((m - mu).abs() <= 0.1 + 1e-6).all()
    se = 4 / 20_000 ** 0.5  # four standard errors per unit
    torch.testing.assert_close(m.mean(0), mu, atol=0.1 / 3 ** 0.5 * se, rtol=0)  # uniform: std r / sqrt(3)
    torch.testing.assert_close(m.std(0), torch.full((64,), 0.1 / 3 ** 0.5), atol=0.002, rtol=0)
    torch.testing.assert_close(s.mean(0), sigma, atol=0.1 * se, rtol=0)
    torch.testing.assert_close(s.std(0), torch.full((64,), 0.1), atol=0.003, rtol=0)
    # over time (every=1: a new shift each step) mu_t and sigma_t are uniform on their ranges
    mus, sigmas = [], []
    for _ in range(400):
        layer(torch.zeros(2, 64))
        mus.append(layer.mu_t)
        sigmas.append(layer.sigma_t)
    mus, sigmas = torch.stack(mus), torch.stack(sigmas)
    assert abs(mus.mean()) < 0.01 and abs(mus.std() - 1 / 12 ** 0.5) < 0.005
    assert abs(sigmas.mean() - 1.125) < 0.003 and abs(sigmas.std() - 0.25 / 12 ** 0.5) < 0.002


def test_noise_shift_changes_every_n_steps_and_conv_units_are_channels():
    layer = CovariateShiftNoise(3, noise_generator(1), every=3).train()
    shifts = []
    for _ in range(7):
        out = layer(torch.zeros(4, 3, 5, 5))
        shifts.append(layer.mu_t)
        assert torch.equal(out, out[:, :, :1, :1].expand_as(out))  # one (m, s) per example and channel
    assert all(torch.equal(shifts[i], shifts[i - 1]) != (i % 3 == 0) for i in range(1, 7))


def test_noise_leaves_eval_mode_untouched():
    layer = NOISE(8).eval()
    x = torch.randn(5, 8)
    state = layer.get_extra_state()["generator"]
    assert layer(x) is x and torch.equal(layer.generator.get_state(), state)
    model = MLP(8, 3, depth=2, width=6, placement="before", noise=NOISE).eval()
    plain = MLP(8, 3, depth=2, width=6, placement="before").eval()
    plain.load_state_dict(model.state_dict(), strict=False)  # no parameter or buffer of its own
    assert torch.equal(model(x), plain(x))


@pytest.mark.parametrize("placement, order", [("before", ["linear", "bn", "noise", "act"]),
                                              ("after", ["linear", "act", "bn", "noise"]),
                                              ("none", ["linear", "noise", "act"])])
def test_noise_sits_after_bn_or_where_bn_would_be(make_cfg, placement, order):
    cfg = make_cfg(*SMOKE, f"bn.placement={placement}", "bn.noise.enabled=true")
    model = build_model(cfg.model, cfg.bn, (1, 28, 28), 10)
    assert all(list(block._modules) == order for block in model.hidden)
    conv = make_cfg(*SMOKE, *CONV, "bn.noise.enabled=true")
    net = build_model(conv.model, conv.bn, (3, 16, 16), 10)
    blocks = [m for m in net.modules() if isinstance(m, nn.Sequential) and "conv" in m._modules]
    assert blocks and all(list(b._modules) == ["conv", "bn", "noise", "act"] for b in blocks)
    generators = {id(m.generator) for m in net.modules() if isinstance(m, CovariateShiftNoise)}
    assert len(generators) == 1  # one stream per network, drawn in forward order


def test_noise_off_builds_the_network_of_before(make_cfg):
    """Noise off: no layer, no state; the other noise settings change nothing."""
    models = []
    for extra in ([], ["bn.noise.mean_max=0.3", "bn.noise.every=5"]):
        cfg = make_cfg(*SMOKE, *extra)
        torch.manual_seed(0)
        models.append(build_model(cfg.model, cfg.bn, (1, 28, 28), 10))
    a, b = (m.state_dict() for m in models)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(isinstance(m, CovariateShiftNoise) for m in models[0].modules())


def test_noise_draws_from_its_own_generator(make_cfg, tmp_path):
    """Noise that changes nothing (m = 0, s = 1) trains bit-identically to no noise, dropout included:
    turning noise on shifts no other random draw. Real noise trains differently."""
    common = [*SMOKE, *CONV, "trainer.max_steps=6", "trainer.eval_every=3", "trainer.log_every=3"]
    identity = ["bn.noise.enabled=true", "bn.noise.mean_max=0", "bn.noise.scale_max=1", "bn.noise.mean_width=0",
                "bn.noise.scale_std=0"]
    runs = {"off": [], "identity": identity, "noisy": ["bn.noise.enabled=true"]}
    metrics = {}
    for name, extra in runs.items():
        run_one(make_cfg(*common, *extra), tmp_path / name)
        metrics[name] = pd.read_csv(tmp_path / name / "metrics.csv")
    pd.testing.assert_frame_equal(metrics["identity"], metrics["off"])
    train = [m[(m.split == "train") & (m.name == "loss")].value.to_numpy() for m in (metrics["noisy"], metrics["off"])]
    assert not np.array_equal(*train)


def test_noisy_run_resumes_its_noise_exactly(make_cfg, tmp_path):
    """The noise's generator and current shift are checkpointed: 10 steps, then resumed to 20, is the
    uninterrupted 20-step run."""
    common = [*SMOKE, "bn.noise.enabled=true", "bn.noise.every=3", "trainer.checkpoint_every=10", "trainer.threads=1"]
    run_one(make_cfg(*common), tmp_path / "straight")
    run_one(make_cfg(*common, "trainer.max_steps=10"), tmp_path / "resumed")
    ((_, path),) = checkpoints(tmp_path / "resumed" / CHECKPOINT_DIR)
    saved = read_verified(path)["training"]["model"]["hidden.0.noise._extra_state"]
    assert saved["calls"] == 10 and saved["generator"].dtype == torch.uint8
    summary = run_one(make_cfg(*common), tmp_path / "resumed")
    assert summary["resumed_from"].endswith(path.name)
    straight, resumed = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("straight", "resumed"))
    pd.testing.assert_frame_equal(straight, resumed)


# --- gradient-based internal covariate shift (Santurkar Def. 2.1) --------------------------------

class Chain(nn.Module):
    """f(x) = w2 * (w1 * x): two scalar layers, L = 0.5 * mean((f(x) - t)^2)."""

    def __init__(self, w1, w2):
        super().__init__()
        self.first, self.second = (nn.Linear(1, 1, bias=False, dtype=torch.float64) for _ in range(2))
        self.first.weight.data.fill_(w1)
        self.second.weight.data.fill_(w2)

    def forward(self, x):
        return self.second(self.first(x))


def _mse(model, x, t):
    return lambda replaced: 0.5 * (functional_call(model, dict(replaced), (x,)) - t).square().mean()


def test_ics_of_a_two_layer_chain_is_its_closed_form():
    w1, w2, lr = 0.7, -1.3, 0.2
    x, t = torch.tensor([[1.0], [2.0], [-0.5]], dtype=torch.float64), torch.tensor([[0.3], [1.0], [2.0]],
                                                                                  dtype=torch.float64)
    model = Chain(w1, w2)
    params = dict(model.named_parameters())
    layers = parameter_layers(model)
    assert layers == {"first": ["first.weight"], "second": ["second.weight"]}
    record = ics(_mse(model, x, t), params, layers, lr)
    r = w2 * w1 * x - t
    g1, g2 = float((r * w2 * x).mean()), float((r * w1 * x).mean())
    w1_moved = w1 - lr * g1  # layer 1's SGD step; layer 2 as it was
    g2_moved = float(((w2 * w1_moved * x - t) * w1_moved * x).mean())
    assert record["first/l2_diff"] == 0 and record["first/cosine"] == pytest.approx(1)
    assert record["second/l2_diff"] == pytest.approx(abs(g2 - g2_moved), rel=1e-12)
    assert record["second/cosine"] == pytest.approx(np.sign(g2 * g2_moved))
    assert record["second/grad_norm"] == pytest.approx(abs(g2), rel=1e-12)
    assert ics(_mse(model, x, t), params, layers, 0.0)["second/l2_diff"] == 0  # nothing moved: G' = G


def _single(model):
    return SingleModel(model)


def _mlp(seed=0, placement="before", noise=NOISE):
    torch.manual_seed(seed)
    return MLP(12, 4, depth=3, width=10, placement=placement, noise=noise)


def _batch(n=32, features=12, classes=4):
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_ics_in_a_bn_network_is_the_gradient_after_the_earlier_layers_step():
    """The probe's G' of layer 3 equals a hand-made one: a copy whose layers 1-2 took their SGD step,
    the same batch, the same noise draws and BN statistics of the batch."""
    model = _mlp().train()
    twin = copy.deepcopy(model)  # its noise generator starts where the model's does
    x, y = _batch()
    lr = 0.5
    probe = GradientProbe(_single(model), ics_every=1)
    record = probe(1, x, y, lr)["ics"]
    assert list(probe.layers) == ["layer1", "layer2", "layer3", "classifier"]
    state = copy.deepcopy(twin.state_dict())
    loss = F.cross_entropy(twin(x), y)
    grads = torch.autograd.grad(loss, list(twin.parameters()))
    g = dict(zip([n for n, _ in twin.named_parameters()], grads))
    twin.load_state_dict(state)  # BN statistics and the noise's state as before the first pass
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if name.startswith(("hidden.0.", "hidden.1.")):
                p -= lr * g[name]
    moved = torch.autograd.grad(F.cross_entropy(twin(x), y), list(twin.hidden[2].parameters()))
    G = torch.cat([g[n].flatten() for n in ("hidden.2.linear.weight", "hidden.2.bn.weight", "hidden.2.bn.bias")])
    G2 = torch.cat([m.flatten() for m in moved])
    assert record["layer3/l2_diff"] == pytest.approx(float((G - G2).norm()), rel=1e-4)
    assert record["layer3/cosine"] == pytest.approx(float(F.cosine_similarity(G, G2, 0)), abs=1e-6)
    assert record["layer3/l2_diff"] > 0 and record["layer1/l2_diff"] == 0


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_ics_is_zero_when_the_earlier_layers_do_not_move(net):
    """lr = 0: every pass sees the same weights, batch, BN statistics, dropout masks and noise, so
    G' == G exactly, layer by layer."""
    torch.manual_seed(0)
    model = _mlp() if net == "mlp" else InceptionSmall(in_channels=3, num_classes=4, width_mult=0.125, dropout=0.4,
                                                         noise=NOISE)
    x, y = _batch() if net == "mlp" else (torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,)))
    record = GradientProbe(_single(model.train()), ics_every=1)(1, x, y, 0.0)["ics"]
    assert len(record) == 3 * len(parameter_layers(model))
    assert all(v == 0 for k, v in record.items() if k.endswith("l2_diff"))
    assert all(v == pytest.approx(1) for k, v in record.items() if k.endswith("cosine"))


# --- the landscape along the gradient (Santurkar Sec. 3.2) ---------------------------------------

@pytest.mark.parametrize("curvature", [[3.0, 3.0, 3.0], [0.5, 2.0, 8.0]])
def test_landscape_of_a_quadratic_is_its_curvature(curvature):
    """L(w) = 0.5 w^T A w, A diagonal: g = A w, the gradient changes by eta * ||A g|| and L(w - eta g)
    is known, so beta = ||A g|| / ||g|| at every step size (the curvature c when A = c I)."""
    a = torch.tensor(curvature, dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    lr, steps = 0.05, (0.5, 1, 2, 4)

    def loss_of(replaced):
        v = replaced.get("w", w)
        return 0.5 * (a * v * v).sum()

    record = landscape(loss_of, {"w": w}, lr, steps)
    g = (a * w).detach()
    expected_beta = float((a * g).norm() / g.norm())
    losses = [float(0.5 * (a * (w.detach() - k * lr * g) ** 2).sum()) for k in steps]
    for k, loss in zip(steps, losses):
        assert record[f"loss_x{k:g}"] == pytest.approx(loss, rel=1e-12)
        assert record[f"grad_change_x{k:g}"] == pytest.approx(k * lr * float((a * g).norm()), rel=1e-12)
        assert record[f"beta_x{k:g}"] == pytest.approx(expected_beta, rel=1e-12)
        assert record[f"rel_loss_x{k:g}"] == pytest.approx(loss / record["loss"], rel=1e-12)
    assert record["beta"] == pytest.approx(expected_beta, rel=1e-12)
    if len(set(curvature)) == 1:
        assert record["beta"] == pytest.approx(curvature[0], rel=1e-12)
    assert record["loss_range"] == pytest.approx(max(losses) - min(losses), rel=1e-12)
    assert record["grad_change_max"] == pytest.approx(4 * lr * float((a * g).norm()), rel=1e-12)


def test_landscape_of_a_network_moves_every_weight_along_the_gradient():
    """The probe's L(w - eta g) and gradient change equal a hand-made step of a copy, on the same
    batch with the same noise draws."""
    model = _mlp().train()
    twin = copy.deepcopy(model)
    x, y = _batch()
    lr = 0.3
    record = GradientProbe(_single(model), landscape_every=1, steps=(2.0,))(1, x, y, lr)["landscape"]
    state = copy.deepcopy(twin.state_dict())
    loss = F.cross_entropy(twin(x), y)
    g = torch.autograd.grad(loss, list(twin.parameters()))
    twin.load_state_dict(state)
    with torch.no_grad():
        for p, gp in zip(twin.parameters(), g):
            p -= 2 * lr * gp
    there = F.cross_entropy(twin(x), y)
    g2 = torch.autograd.grad(there, list(twin.parameters()))
    change = float(torch.cat([(a - b).flatten() for a, b in zip(g2, g)]).norm())
    norm = float(torch.cat([gp.flatten() for gp in g]).norm())
    assert record["loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    assert record["loss_x2"] == pytest.approx(float(there.detach()), rel=1e-5)
    assert record["grad_change_x2"] == pytest.approx(change, rel=1e-4)
    assert record["beta"] == pytest.approx(change / (2 * lr * norm), rel=1e-4)


# --- the probes leave training exactly as it was ---------------------------------------------------

def _everything(model, optimizer):
    """What training holds: weights, buffers, extra state (the noise's generator), .grad, optimizer
    state, modes, and every RNG."""
    return {"state": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict()),
            "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            "modes": [m.training for m in model.modules()], "torch": torch.get_rng_state(),
            "numpy": np.random.get_state()[1].copy(), "python": random.getstate()}


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("net, mode", [("mlp", "train"), ("mlp", "eval"), ("conv", "train")])
def test_gradient_probes_leave_every_state_as_found(net, mode):
    torch.manual_seed(0)
    if net == "mlp":
        model, (x, y) = _mlp(), _batch()
    else:
        model = InceptionSmall(in_channels=3, num_classes=4, width_mult=0.125, dropout=0.4, bn_impl="paper", noise=NOISE)
        x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(model.train()(x), y).backward()
    optimizer.step()  # momentum buffers, BN statistics and the noise moved once
    model.train(mode == "train")
    before = _everything(model, optimizer)
    records = GradientProbe(_single(model), ics_every=1, landscape_every=1)(1, x, y, 0.1)
    assert set(records) == {"ics", "landscape"}
    after = _everything(model, optimizer)
    for key in before:
        assert _same(before[key], after[key]), key
    assert any(k.endswith("_extra_state") for k in after["state"])


def test_training_with_gradient_probes_is_training_without(make_cfg, tmp_path):
    """With the probes every few steps (noise and dropout in the network), every other number of the
    run is what it is without them; theirs go to metrics.csv and TensorBoard as ics/... and landscape/..."""
    common = [*SMOKE, *CONV, "bn.noise.enabled=true", "trainer.max_steps=6", "trainer.eval_every=3",
              "trainer.log_every=3"]
    run_one(make_cfg(*common), tmp_path / "off")
    run_one(make_cfg(*common, "probe.ics_every=2", "probe.landscape_every=3", "probe.landscape_steps=[1,4]"),
            tmp_path / "on")
    off, on = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("off", "on"))
    measured = on.split.isin(["ics", "landscape"])
    pd.testing.assert_frame_equal(on[~measured].reset_index(drop=True), off)
    assert sorted(on[on.split == "ics"].step.unique()) == [1, 2, 4, 6]  # step 1: the initial weights
    assert sorted(on[on.split == "landscape"].step.unique()) == [1, 3, 6]
    names = set(on[on.split == "landscape"].name)
    assert {"loss_range", "grad_change_max", "beta", "loss_x4", "rel_loss_x1"} <= names
    assert {"stem.conv1/l2_diff", "stem.conv1/cosine", "classifier/cosine"} <= set(on[on.split == "ics"].name)
    tags = EventAccumulator(str(tmp_path / "on")).Reload().Tags()["scalars"]
    assert {"landscape/beta", "ics/classifier/l2_diff"} <= set(tags)


@pytest.mark.parametrize("model", ["mlp", "inception_small"])
@pytest.mark.parametrize("overrides, named", [(["bn.noise.enabled=true"], "bn.noise.enabled=true"),
                                              (["probe.ics_every=5"], "probe.ics_every=5"),
                                              (["probe.landscape_every=5"], "probe.landscape_every=5")])
def test_stacked_seeds_refuse_noise_and_gradient_probes(make_cfg, tmp_path, model, overrides, named):
    extra = [] if model == "mlp" else CONV
    with pytest.raises(BnreproError, match=r"The stacked seed path .*" + named.replace(".", r"\.")):
        run(make_cfg(*SMOKE, *extra, "seeds=[0,1]", *overrides), tmp_path)
