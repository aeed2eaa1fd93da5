"""bnrepro.nn.bn against autograd, against torch's BatchNorm, and against Algorithm 2 computed directly."""
import pytest
import torch
from torch import nn

from bnrepro.nn.bn import (Affine, BatchNorm, BatchNormFunction, bn_affine, fold_batchnorm,
                        is_batchnorm, make_batchnorm, recompute_population_stats)
from bnrepro.schema import BNImpl

EPS = 1e-5
SHAPES = [(8, 4), (8, 4, 5), (4, 3, 5, 6)]  # (N, C), (N, C, L), (N, C, H, W)


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def torch_bn(shape, **kwargs):
    return (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], **kwargs)


def random_affine(*bns):
    """Give every BN the same random gamma and beta, so tests do not pass on gamma=1, beta=0."""
    gamma, beta = torch.rand(bns[0].num_features) + 0.5, torch.randn(bns[0].num_features)
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(gamma)
            bn.bias.copy_(beta)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck(shape, affine):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    gamma_beta = [torch.randn(shape[1], dtype=torch.float64, requires_grad=True) for _ in range(2)]
    inputs = (x, *gamma_beta) if affine else (x,)
    assert torch.autograd.gradcheck(
        lambda x, gamma=None, beta=None: BatchNormFunction.apply(x, gamma, beta, EPS)[0], inputs)


def test_function_returns_batch_stats_without_grad():
    x = torch.randn(10, 3, 4, requires_grad=True) * 2 + 1
    y, mu_B, var_B = BatchNormFunction.apply(x, None, None, EPS)
    close(mu_B, x.mean((0, 2)))
    close(var_B, x.var((0, 2), unbiased=False))
    assert y.requires_grad and not mu_B.requires_grad and not var_B.requires_grad


@pytest.mark.parametrize("shape", SHAPES)
def test_train_mode_matches_torch(shape):
    torch.manual_seed(0)
    ours, ref = BatchNorm(shape[1]), torch_bn(shape)
    random_affine(ours, ref)
    x = (torch.randn(shape) * 3 + 1).requires_grad_()
    dy = torch.randn(shape)
    grads = []
    for bn in (ours, ref):
        y = bn(x)
        grads.append((y, *torch.autograd.grad(y, (x, bn.weight, bn.bias), dy)))
    for a, b in zip(*grads):
        close(a, b)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", SHAPES)
def test_running_stats_and_eval_match_torch(shape, momentum):
    torch.manual_seed(0)
    ours, ref = BatchNorm(shape[1], momentum=momentum), torch_bn(shape, momentum=momentum)
    random_affine(ours, ref)
    for step in range(5):
        x = torch.randn(shape) * (step + 1) + step
        close(ours(x), ref(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        close(getattr(ours, name), getattr(ref, name))
    assert not torch.allclose(ours.running_mean, torch.zeros(shape[1]))
    x = torch.randn(shape) * 2 + 1
    close(ours.eval()(x), ref.eval()(x))


def test_state_dict_round_trip():
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3)
    random_affine(ref)
    ref(torch.randn(4, 3, 5, 5) + 2)
    ours = BatchNorm(3)
    ours.load_state_dict(ref.state_dict())
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for key, value in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)
    back = nn.BatchNorm2d(3)
    back.load_state_dict(ours.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)


def test_module_surface():
    bn = BatchNorm(4)
    assert bn.gamma is bn.weight and bn.beta is bn.bias
    assert repr(bn) == "BatchNorm(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    with pytest.raises(ValueError, match="channels"):
        bn(torch.randn(5, 3))
    with pytest.raises(ValueError, match="1D"):
        bn(torch.randn(4))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn(torch.randn(1, 4))
    plain = BatchNorm(4, affine=False, track_running_stats=False).eval()
    assert plain.weight is None and plain.running_mean is None
    close(plain(torch.randn(6, 4) * 3 + 2).mean(0), torch.zeros(4))  # batch stats in eval too


def mlp(impl):
    return nn.Sequential(nn.Linear(5, 4), make_batchnorm(4, False, impl), nn.ReLU(),
                         nn.Linear(4, 3), make_batchnorm(3, False, impl))


def convnet(impl):
    return nn.Sequential(nn.Conv2d(2, 3, 3), make_batchnorm(3, True, impl), nn.ReLU(),
                         nn.Conv2d(3, 2, 3), make_batchnorm(2, True, impl))


@pytest.mark.parametrize("impl", ["torch", "paper"])
@pytest.mark.parametrize("build, shape", [(mlp, (10, 5)), (convnet, (3, 2, 7, 7))])
def test_population_stats_are_algorithm_2(impl, build, shape):
    torch.manual_seed(0)
    model = build(impl).eval()
    bns = [m for m in model.modules() if is_batchnorm(m)]
    inputs = {bn: [] for bn in bns}
    for bn in bns:
        bn.register_forward_pre_hook(lambda mod, args: inputs[mod].append(args[0]))
    data = [torch.randn(shape) * 2 + 1 for _ in range(6)]
    batches = [(x, torch.zeros(len(x))) if i % 2 else x for i, x in enumerate(data)]
    batches.append(torch.full(shape, 1e3))  # beyond num_batches: must not be used
    assert recompute_population_stats(model, iter(batches), num_batches=6) is model

    for bn in bns:
        xs = inputs[bn]
        assert len(xs) == 6
        dims = [0, *range(2, xs[0].dim())]
        m = xs[0].numel() // xs[0].size(1)  # Sec. 3.2: m' = N * H * W for conv layers
        mean = torch.stack([x.mean(dims) for x in xs]).mean(0)
        var = m / (m - 1) * torch.stack([x.var(dims, unbiased=False) for x in xs]).mean(0)
        close(bn.running_mean, mean)
        close(bn.running_var, var)
        assert bn.momentum == 0.1
    assert not any(module.training for module in model.modules())

    model.train()
    model[1].momentum = 0.3
    recompute_population_stats(model, data, num_batches=2)
    assert model[1].momentum == 0.3 and all(module.training for module in model.modules())


def test_population_stats_errors():
    with pytest.raises(ValueError, match="no batch-norm"):
        recompute_population_stats(nn.Linear(5, 4), [torch.randn(3, 5)], 1)
    model = mlp("paper")
    with pytest.raises(ValueError, match="only 2"):
        recompute_population_stats(model, [torch.randn(3, 5)] * 2, 3)
    assert model[1].momentum == 0.1


def train_a_little(model, shape, steps=5):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(shape) * 2 + 1).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def block(impl, fan_in, fan_out, bn_before):
    layers = [nn.Linear(fan_in, fan_out), make_batchnorm(fan_out, False, impl), nn.Sigmoid()]
    return nn.Sequential(*(layers if bn_before else [layers[0], layers[2], layers[1]]))


@pytest.mark.parametrize("impl", ["torch", "paper"])
@pytest.mark.parametrize("net", ["bn_before", "bn_after", "conv"])
def test_fold_matches_eval(impl, net):
    torch.manual_seed(0)
    if net == "conv":
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, bias=False), make_batchnorm(4, True, impl), nn.ReLU(),
            nn.Conv2d(4, 4, 3, bias=False), make_batchnorm(4, True, impl), nn.ReLU(),
            nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
        shape = (8, 3, 8, 8)
    else:  # nested Sequentials: folding must recurse
        before = net == "bn_before"
        model = nn.Sequential(block(impl, 6, 5, before), block(impl, 5, 5, before), nn.Linear(5, 3))
        shape = (16, 6)
    train_a_little(model, shape)
    folded = fold_batchnorm(model)

    assert model.training and any(is_batchnorm(m) for m in model.modules())  # original untouched
    assert not folded.training and not any(is_batchnorm(m) for m in folded.modules())
    n_affine = sum(isinstance(m, Affine) for m in folded.modules())
    assert n_affine == (2 if net == "bn_after" else 0)
    x = torch.randn(shape) * 2 + 1
    close(folded(x), model.eval()(x))


def test_bn_affine_and_fold_refuse_bn_without_running_stats():
    bn = BatchNorm(3, track_running_stats=False)
    with pytest.raises(ValueError, match="running statistics"):
        bn_affine(bn)
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3, track_running_stats=False)))


def test_bn_affine_is_algorithm_2():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4)
    random_affine(bn)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    scale, shift = bn_affine(bn)
    close(scale, bn.weight / torch.sqrt(bn.running_var + bn.eps))
    close(shift, bn.bias - scale * bn.running_mean)
    x = torch.randn(7, 4, 3)
    close(Affine(scale, shift)(x), bn.eval()(x))


@pytest.mark.parametrize("impl", ["torch", "paper", BNImpl.torch, BNImpl.paper])
@pytest.mark.parametrize("spatial", [False, True])
def test_make_batchnorm(impl, spatial):
    bn = make_batchnorm(7, spatial, impl, eps=1e-3, momentum=None)
    name = str(getattr(impl, "value", impl))
    expected = BatchNorm if name == "paper" else (nn.BatchNorm2d if spatial else nn.BatchNorm1d)
    assert type(bn) is expected and is_batchnorm(bn)
    assert (bn.num_features, bn.eps, bn.momentum) == (7, 1e-3, None)


def test_make_batchnorm_rejects_unknown_impl():
    with pytest.raises(ValueError, match="'torch', 'paper'"):
        make_batchnorm(4, False, "keras")
    assert not is_batchnorm(nn.LayerNorm(4))


@pytest.mark.parametrize("impl", ["torch", "paper"])
def test_bn_under_cpu_autocast_keeps_float32_statistics(impl):
    """trainer.amp: convs run in bf16 under autocast; BN's statistics and parameters stay float32
    (bn.impl=paper used to crash here: lerp_ of a bf16 mu_B into the float32 running mean)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), make_batchnorm(4, spatial=True, impl=impl), nn.ReLU())
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    ref.load_state_dict(net.state_dict())
    x = torch.randn(8, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
        y_ref = ref(x)
    y.float().sum().backward()
    bn = net[1]
    assert net[0](x).dtype == torch.float32  # outside autocast: float32
    assert {bn.running_mean.dtype, bn.running_var.dtype, bn.weight.dtype, bn.weight.grad.dtype} == {torch.float32}
    assert torch.isfinite(bn.weight.grad).all() and bn.num_batches_tracked == 1
    close(bn.running_mean, ref[1].running_mean, tol=1e-2)  # from the same bf16 conv output
    close(y.float(), y_ref.float(), tol=5e-2)
    net.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(net(x).float()).all()
