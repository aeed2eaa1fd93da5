"""The paper's MLP: BN where `bn.placement` says, the bias BN makes redundant, the init."""
import pytest
import torch
from torch import nn

from bnrepro.nn.bn import BatchNorm, fold_batchnorm, is_batchnorm
from bnrepro.models.mlp import MLP


@pytest.mark.parametrize("placement, order", [
    ("none", ["linear", "act"]),
    ("before", ["linear", "bn", "act"]),
    ("after", ["linear", "act", "bn"]),
])
def test_placement_sets_module_order(placement, order):
    model = MLP(784, 10, depth=3, width=100, placement=placement)
    assert len(model.hidden) == 3
    for block in model.hidden:
        assert [name for name, _ in block.named_children()] == order
        # Sec. 3.2: with BN on Wu the bias is redundant (beta replaces it).
        assert (block.linear.bias is None) == (placement == "before")


@pytest.mark.parametrize("impl, cls", [("torch", nn.BatchNorm1d), ("paper", BatchNorm)])
def test_bn_impl_selects_the_module_everywhere(impl, cls):
    model = MLP(784, 10, placement="before", bn_impl=impl)
    bns = [m for m in model.modules() if is_batchnorm(m)]
    assert len(bns) == 3 and all(type(m) is cls for m in bns)


def test_activation_and_shapes():
    model = MLP(3 * 8 * 8, 7, depth=2, width=16, activation="tanh", placement="before")
    assert all(isinstance(block.act, nn.Tanh) for block in model.hidden)
    assert model(torch.randn(5, 3, 8, 8)).shape == (5, 7)


def test_gaussian_init_std():
    torch.manual_seed(0)
    model = MLP(784, 10, width=100, init_std=0.05)
    w = model.hidden[0].linear.weight
    assert abs(w.std().item() - 0.05) < 0.002 and abs(w.mean().item()) < 0.002
    assert torch.count_nonzero(model.classifier.bias) == 0


@pytest.mark.parametrize("placement", ["before", "after"])
def test_folded_mlp_equals_eval_mlp(placement):
    torch.manual_seed(0)
    model = MLP(20, 4, depth=2, width=8, placement=placement, bn_impl="paper")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        loss = model(torch.randn(16, 20)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(32, 20)
    folded = fold_batchnorm(model)
    assert not any(is_batchnorm(m) for m in folded.modules())
    torch.testing.assert_close(folded(x), model.eval()(x), atol=1e-5, rtol=1e-5)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="placement"):
        MLP(10, 2, placement="inside")
    with pytest.raises(ValueError, match="activation"):
        MLP(10, 2, activation="gelu")
