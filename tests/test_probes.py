"""Figure 1's probes: percentiles as numpy computes them, a stable typical unit, no side effects."""
import copy

import numpy as np
import pytest
import torch

from bnrepro.models.mlp import MLP
from bnrepro.tracking.probes import ActivationProbe, percentiles, typical_unit
from bnrepro.training.members import SingleModel


@pytest.mark.parametrize("q", [(15, 50, 85), (1, 99), (50,)])
def test_percentiles_equal_numpy(q):
    values = torch.randn(1001, generator=torch.Generator().manual_seed(0)) ** 3
    np.testing.assert_allclose(percentiles(values, q).numpy(), np.percentile(values.numpy(), q), rtol=1e-5, atol=1e-6)


def test_percentiles_on_known_values():
    assert percentiles(torch.arange(101.0), (15, 50, 85)).tolist() == pytest.approx([15.0, 50.0, 85.0])


def test_typical_unit_is_the_median_unit():
    x = torch.randn(200, 5) * 0.01 + torch.tensor([4.0, -3.0, 0.5, 10.0, -8.0])
    assert typical_unit(x) == 2
    conv = x[:, :, None, None].expand(200, 5, 3, 3)
    assert typical_unit(conv) == 2


def _probe(seed, placement="before", **kw):
    torch.manual_seed(seed)
    model = MLP(20, 4, depth=3, width=16, placement=placement)
    batch = torch.randn(64, 20, generator=torch.Generator().manual_seed(99))
    return model, Probe(model, batch, **kw)


class Probe(ActivationProbe):
    """The probe of a single model, with one member's record, units and drift."""

    def __init__(self, model, batch, **kw):
        super().__init__(SingleModel(model), batch, **kw)
        self.model = model

    def __call__(self, step):
        return super().__call__(step)[0]

    @property
    def unit_choice(self):
        return self.units[0]


def test_typical_unit_is_stable_across_runs_and_probes():
    _, a = _probe(seed=0)
    _, b = _probe(seed=0)
    a(0), b(0)
    assert a.unit_choice == b.unit_choice and set(a.unit_choice) == {"layer1", "layer2", "layer3"}
    first = dict(a.unit_choice)
    a.model.hidden[0].linear.weight.data.mul_(3)  # training moves the weights; the unit stays
    a(1)
    assert a.unit_choice == first
    _, fixed = _probe(seed=0, unit=5)
    fixed(0)
    assert set(fixed.unit_choice.values()) == {5}


def test_probe_records_the_nonlinearity_input_and_leaves_the_model_alone():
    model, probe = _probe(seed=1)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    record = probe(0)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # layer3's input to the sigmoid, computed by hand in train mode (batch statistics)
    twin = copy.deepcopy(model).train()
    with torch.no_grad():
        h = twin.hidden[1](twin.hidden[0](probe.batch))
        block = twin.hidden[2]
        pre = torch.nn.functional.batch_norm(block.linear(h), None, None, block.bn.weight, block.bn.bias, training=True)
    unit = probe.unit_choice["layer3"]
    expected = np.percentile(pre[:, unit].numpy(), [15, 50, 85])
    got = [record[f"layer3/unit_p{q}"] for q in (15, 50, 85)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert len(record) == 3 * 2 * 3  # layers x (unit, all) x percentiles


def test_drift_is_larger_when_the_distribution_moves():
    model, probe = _probe(seed=2, placement="none")
    probe(0)
    for step in range(1, 4):
        model.hidden[2].linear.bias.data += 1.0  # shift layer 3's inputs by 1 each time
        probe(step)
    drift = probe.drift()
    assert drift["layer3/unit"]["median_shift"] == pytest.approx(3.0, abs=1e-4)
    assert drift["layer3/unit"]["movement"] == pytest.approx(3.0, abs=1e-4)
    assert drift["layer1/unit"]["movement"] == pytest.approx(0.0, abs=1e-6)
    assert drift["layer1/unit"]["spread_ratio"] == pytest.approx(1.0)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_probe_records_the_norm_output_of_the_same_unit(placement):
    torch.manual_seed(3)
    model = MLP(20, 4, depth=2, width=16, activation="relu", placement=placement)
    batch = torch.randn(64, 20, generator=torch.Generator().manual_seed(99))
    probe = Probe(model, batch, norm_output=True)
    record = probe(0)
    plain = Probe(model, batch)(0)
    assert len(record) == 2 * 4 * 3 and all(record[k] == plain[k] for k in plain)  # layers x kinds x q
    with torch.no_grad():  # layer2's BN output by hand, batch statistics
        block = model.hidden[1]
        h = block.linear(model.hidden[0](batch))
        out = block.bn(h) if placement == "before" else block.bn(block.act(h))
    unit = probe.unit_choice["layer2"]  # the nonlinearity input's typical unit, for both
    expected = np.percentile(out[:, unit].numpy(), [15, 50, 85])
    np.testing.assert_allclose([record[f"layer2/norm_unit_p{q}"] for q in (15, 50, 85)], expected, rtol=1e-5, atol=1e-6)
    if placement == "before":  # the norm's output is the nonlinearity's input
        assert record["layer2/norm_unit_p50"] == pytest.approx(record["layer2/unit_p50"], abs=1e-6)
    else:  # seed 001: BN after a ReLU sees (and keeps) a right-skewed distribution, a spike at the zeros
        p15, p50, p85 = (record[f"layer2/norm_all_p{q}"] for q in (15, 50, 85))
        assert p85 - p50 > 2 * (p50 - p15)


def test_probe_without_norms_records_no_norm_output():
    model = MLP(20, 4, depth=2, width=16, placement="none")
    record = Probe(model, torch.randn(32, 20), norm_output=True)(0)
    assert not any("norm" in k for k in record)


def test_probing_leaves_training_untouched_with_dropout(make_cfg, tmp_path):
    """A probe is a measurement: with dropout in the model (variant=inception), training with probes
    every 2 steps gives exactly the numbers of training without them (no RNG draw, no BN update)."""
    import pandas as pd

    from tests.conftest import SMOKE, run_one

    common = [*SMOKE, "variant=inception", "model=inception_small", "model.width_mult=0.125", "model.dropout=0.4",
              "data.synthetic.shape=[3,16,16]", "trainer.max_steps=6", "trainer.eval_every=3", "trainer.log_every=3",
              "trainer.threads=1", "trainer.deterministic=true", "trainer.stop_at_plateau=false"]
    for every in (0, 2):
        run_one(make_cfg(*common, f"probe.every={every}"), tmp_path / f"every{every}")
    off, on = (pd.read_csv(tmp_path / f"every{e}" / "metrics.csv") for e in (0, 2))
    assert (on.split == "probe").any() and not (off.split == "probe").any()
    pd.testing.assert_frame_equal(on[on.split != "probe"].reset_index(drop=True), off)


def test_untouched_restores_rng_buffers_and_modes():
    from bnrepro.tracking.probes import untouched

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.5))
    model.eval()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with untouched(model):
        model.train()
        out = model(torch.randn(16, 4))  # draws dropout masks and the input from the global RNG
        assert not out.requires_grad
    assert torch.equal(torch.get_rng_state(), rng) and not model.training
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())
