"""The normalization family in BN's slot: shapes, train/eval, where it goes, what it pools."""
import pytest
import torch
from torch import nn

from bnrepro.nn.bn import BatchNorm
from bnrepro.schema import scaled_lr, steps_for
from bnrepro.errors import BnreproError
from bnrepro.models.inception import InceptionSmall
from bnrepro.models.mlp import MLP
from bnrepro.nn.norms import NORMS, group_count, make_norm

LAYER_NORMS = [n for n in NORMS if n != "none"]


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("norm", LAYER_NORMS)
def test_every_norm_keeps_shapes_in_train_and_eval(norm, spatial):
    if norm == "instance" and not spatial:
        pytest.skip("refused for 1-D features, see test_instance_norm_is_refused_for_mlp_features")
    shape = (6, 12, 5, 5) if spatial else (6, 12)
    layer = make_norm(12, spatial=spatial, norm=norm, groups=4)
    x = torch.randn(*shape) * 3 + 2
    y = layer.train()(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.sum().backward()  # gamma and beta learn
    assert all(p.grad is not None for p in layer.parameters()) and len(list(layer.parameters())) == 2
    with torch.no_grad():
        assert layer.eval()(x).shape == x.shape


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("norm, depends_on_batch", [("batch", True), ("layer", False), ("group", False),
                                                    ("instance", False)])
def test_only_batch_norm_looks_at_the_other_examples(norm, spatial, depends_on_batch):
    """Seed 004: BN's training output for one example changes with the rest of the batch; the
    per-example norms give the same output alone or in any batch, in training and at inference."""
    if norm == "instance" and not spatial:
        return
    torch.manual_seed(0)
    layer = make_norm(8, spatial=spatial, norm=norm, groups=4).train()
    x = torch.randn(4, 8, 3, 3) if spatial else torch.randn(4, 8)
    other = torch.cat([x[:2], torch.randn_like(x[2:]) * 5])
    with torch.no_grad():
        changed = not torch.allclose(layer(x)[:2], layer(other)[:2], atol=1e-5)
        assert changed == depends_on_batch
        if not depends_on_batch:  # and train == eval
            torch.testing.assert_close(layer.eval()(x), layer.train()(x))


def test_layer_and_group_norm_pool_what_the_docs_say():
    x = torch.randn(3, 10) * 4 + 1
    with torch.no_grad():
        y = make_norm(10, spatial=False, norm="layer")(x)  # each example over its 10 features
        torch.testing.assert_close(y.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
        g = make_norm(10, spatial=False, norm="group", groups=2)(x).view(3, 2, 5)  # 2 groups of 5
        torch.testing.assert_close(g.mean(2), torch.zeros(3, 2), atol=1e-5, rtol=0)
        c = make_norm(6, spatial=True, norm="instance")(torch.randn(2, 6, 4, 4) + 3)  # per channel
        torch.testing.assert_close(c.mean((2, 3)), torch.zeros(2, 6), atol=1e-5, rtol=0)


def test_instance_norm_is_refused_for_mlp_features():
    with pytest.raises(BnreproError, match="instance"):
        make_norm(10, spatial=False, norm="instance")
    with pytest.raises(BnreproError, match="bn.norm=layer"):
        MLP(20, 3, placement="before", norm="instance")


def test_batch_norm_impl_and_group_count():
    assert type(make_norm(5, spatial=False, norm="batch", impl="paper")) is BatchNorm
    assert type(make_norm(5, spatial=True, norm="batch")) is nn.BatchNorm2d
    assert [group_count(c, 32) for c in (100, 96, 12, 7, 64)] == [25, 32, 12, 7, 32]
    assert group_count(100, 10) == 10 and make_norm(100, False, "group", groups=10).num_groups == 10
    with pytest.raises(ValueError, match="bn.norm"):
        make_norm(5, spatial=False, norm="weight")


@pytest.mark.parametrize("norm, cls", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm), ("group", nn.GroupNorm)])
@pytest.mark.parametrize("placement, order", [("before", ["linear", "bn", "act"]), ("after", ["linear", "act", "bn"])])
def test_mlp_puts_each_norm_where_placement_says(norm, cls, placement, order):
    model = MLP(20, 3, depth=2, width=10, activation="relu", placement=placement, norm=norm, norm_groups=5)
    for block in model.hidden:
        assert [name for name, _ in block.named_children()] == order
        assert type(block.bn) is cls
        assert (block.linear.bias is None) == (placement == "before")
    assert model(torch.randn(4, 20)).shape == (4, 3)


@pytest.mark.parametrize("placement", ["none", "before", "after"])
def test_norm_none_is_no_norm_anywhere(placement):
    model = MLP(20, 3, depth=2, width=10, placement=placement, norm="none")
    for block in model.hidden:
        assert [name for name, _ in block.named_children()] == ["linear", "act"]
        assert block.linear.bias is not None


@pytest.mark.parametrize("norm, cls", [("layer", nn.GroupNorm), ("group", nn.GroupNorm),
                                       ("instance", nn.InstanceNorm2d), ("batch", nn.BatchNorm2d)])
@pytest.mark.parametrize("placement, order", [("before", ["conv", "bn", "act"]), ("after", ["conv", "act", "bn"])])
def test_conv_model_puts_each_norm_where_placement_says(norm, cls, placement, order):
    model = InceptionSmall(1, 10, width_mult=0.125, dropout=0.0, lrn=False, placement=placement, norm=norm)
    blocks = [m for m in model.modules() if isinstance(m, nn.Sequential) and "act" in m._modules]
    assert len(blocks) == 19
    for block in blocks:
        assert [name for name, _ in block.named_children()] == order
        assert type(block.bn) is cls and (block.conv.bias is None) == (placement == "before")
    if norm == "layer":
        assert all(block.bn.num_groups == 1 for block in blocks)
    for mode in (True, False):
        assert model.train(mode)(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_resolvers_fix_examples_and_scale_the_learning_rate():
    assert steps_for(120000, 2) == 60000 and steps_for(120000, 128) == 938 and steps_for(10, 128) == 1
    assert scaled_lr("linear", 0.2, 128, 2) == pytest.approx(0.003125)
    assert scaled_lr("sqrt", 0.2, 128, 32) == pytest.approx(0.1)
    with pytest.raises(BnreproError, match="linear or sqrt"):
        scaled_lr("cubic", 0.2, 128, 32)


@pytest.mark.parametrize("batch_size, steps, lr", [(2, 60000, 0.003125), (8, 15000, 0.0125), (128, 938, 0.2)])
def test_norm_batchsize_config_states_its_rules(make_cfg, batch_size, steps, lr):
    cfg = make_cfg("experiment=norm_batchsize", f"trainer.batch_size={batch_size}", "bn.norm=layer")
    assert cfg.trainer.max_steps == steps and cfg.optim.lr == pytest.approx(lr)
    assert cfg.trainer.max_steps * cfg.trainer.batch_size == pytest.approx(120000, rel=0.001)
    assert cfg.bn.norm.value == "layer" and cfg.probe.norm_output


def test_population_average_needs_batch_norm(make_cfg, tmp_path):
    from bnrepro.training.session import run
    from tests.conftest import SMOKE

    with pytest.raises(BnreproError, match="bn.population=average"):
        run(make_cfg(*SMOKE, "bn.norm=layer", "bn.population=average"), tmp_path)
