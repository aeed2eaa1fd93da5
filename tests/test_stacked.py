"""The stacked seed path (seeds=[...]): each member is its single run, up to float rounding."""
import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bnrepro.errors import BnreproError
from bnrepro.models.mlp import MLP
from bnrepro.models.stacked import StackedMLP
from bnrepro.training.session import run
from tests.conftest import SMOKE, run_one


@pytest.mark.parametrize("placement, activation", [("before", "sigmoid"), ("none", "sigmoid"),
                                                   ("before", "relu"), ("none", "tanh")])
def test_stacked_gradients_are_autograd_gradients(placement, activation):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(MLP(20, 5, depth=2, width=8, activation=activation, placement=placement, init_std=0.3))
    stacked = StackedMLP(models)
    x, y = torch.randn(3, 16, 20), torch.randint(0, 5, (3, 16))
    losses = stacked.forward_backward(x, y)
    for i, model in enumerate(models):
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward()
        assert losses[i].item() == pytest.approx(loss.item(), rel=1e-5)
        ours = StackedMLP([model]).member_state_dict(0)  # names of an MLP state dict
        grads = {name: p.grad for name, p in model.named_parameters()}
        flat = {}
        for l in (1, 2, 3):
            prefix = f"hidden.{l - 1}." if l < 3 else "classifier."
            flat[prefix + ("linear.weight" if l < 3 else "weight")] = stacked.grads[f"w{l}"][i]
            if f"b{l}" in stacked.grads:
                flat[prefix + ("linear.bias" if l < 3 else "bias")] = stacked.grads[f"b{l}"][i, 0]
            if f"gamma{l}" in stacked.grads:
                flat[prefix + "bn.weight"] = stacked.grads[f"gamma{l}"][i, 0]
                flat[prefix + "bn.bias"] = stacked.grads[f"beta{l}"][i, 0]
        assert set(flat) == set(grads)
        for name, grad in grads.items():
            torch.testing.assert_close(flat[name], grad, rtol=1e-4, atol=1e-6, msg=name)
        # BN's running statistics moved exactly as the module's did in train mode.
        state = stacked.member_state_dict(i)
        for name, value in model.state_dict().items():
            if "running" in name:
                torch.testing.assert_close(state[name], value, msg=name)
        assert set(ours) == set(model.state_dict())


@pytest.mark.parametrize("variant", ["bn", "baseline"])
def test_stacked_run_equals_single_runs(make_cfg, tmp_path, variant):
    overrides = [*SMOKE, f"variant={variant}", "trainer.max_steps=30", "probe.histogram_every=2"]
    stacked = run(make_cfg(*overrides, "seeds=[3,5]"), tmp_path / "stacked")
    assert [s["seed"] for s in stacked] == [3, 5]
    for seed, summary in zip((3, 5), stacked):
        single = run_one(make_cfg(*overrides, f"seed={seed}"), tmp_path / f"single{seed}")
        member = tmp_path / "stacked" / f"seed={seed}"
        a, b = (pd.read_csv(d / "metrics.csv") for d in (tmp_path / f"single{seed}", member))
        assert a[["step", "split", "name"]].equals(b[["step", "split", "name"]])
        torch.testing.assert_close(torch.tensor(b.value.values), torch.tensor(a.value.values), rtol=1e-4, atol=1e-4)
        assert summary["status"] == single["status"] == "completed" and summary["steps"] == single["steps"]
        assert summary["best_step"] == single["best_step"]
        assert set(summary["drift"]) == set(single["drift"])
        # The member's record is a single run's: its config says its own seed, and no stacking.
        assert (member / "config.yaml").read_text() == (tmp_path / f"single{seed}" / "config.yaml").read_text()
        assert json.loads((member / "summary.json").read_text())["stacked_seeds"] == [3, 5]
        assert list(member.glob("events.out.tfevents.*"))
    # The two members differ: their own init and data order.
    values = [pd.read_csv(tmp_path / "stacked" / f"seed={s}" / "metrics.csv").value for s in (3, 5)]
    assert not values[0].equals(values[1])


def test_stacked_member_dies_where_its_single_run_does(make_cfg, tmp_path):
    """A ReLU MLP at lr 0.5 with momentum 0.9 kills its ReLUs within 20 steps (train.input_independent):
    the stacked member must end as its single run does, diverged (dead) at the same step."""
    overrides = [*SMOKE, "variant=baseline", "model.activation=relu", "optim.lr=0.5", "optim.momentum=0.9",
                 "probe.every=0", "trainer.max_steps=40"]
    stacked = run(make_cfg(*overrides, "seeds=[0]"), tmp_path / "stacked")[0]
    single = run_one(make_cfg(*overrides, "seed=0"), tmp_path / "single")
    assert (single["status"], single["divergence"]) == ("diverged", "dead")
    assert (stacked["status"], stacked["divergence"], stacked["steps"]) == ("diverged", "dead", single["steps"])


@pytest.mark.parametrize("overrides, named", [(["bn.placement=after"], "bn.placement=after"),
                                              (["bn.population=average"], "bn.population"),
                                              (["bn.norm=layer"], "bn.norm=layer"),
                                              (["trainer.compile=true"], "trainer.compile"),
                                              (["model=inception_small", "trainer.compile=true"], "trainer.compile"),
                                              (["model=inception_small", "trainer.channels_last=true"],
                                               "trainer.channels_last"),
                                              (["model=inception_small", "bn.population=average"], "bn.population")])
def test_stacked_unsupported_options_are_one_clear_error(make_cfg, tmp_path, overrides, named):
    with pytest.raises(BnreproError, match=named.replace(".", r"\.")):
        run(make_cfg(*SMOKE, "seeds=[0,1]", *overrides), tmp_path)


def test_runner_dispatches_seeds_to_the_stacked_path(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "run"
    subprocess.run([sys.executable, str(REPO / "experiments" / "train.py"), *SMOKE, "seeds=[0,1]",
                    f"hydra.run.dir={out}"], check=True, capture_output=True, cwd=tmp_path)
    for seed in (0, 1):
        assert json.loads((out / f"seed={seed}" / "summary.json").read_text())["status"] == "completed"


def test_stacked_training_survives_zero_grad(make_cfg):
    """The stacked gradients live in buffers of their own that forward_backward binds on every call,
    so optimizer.zero_grad() (either form) between steps cannot turn training into a no-op."""
    from bnrepro.training.optim import build_optimizer

    def trained(zero_grad):
        torch.manual_seed(0)
        stacked = StackedMLP([MLP(20, 5, depth=2, width=8, placement="before", init_std=0.3) for _ in range(2)])
        optimizer, _ = build_optimizer(stacked, make_cfg("optim.lr=0.1", "optim.momentum=0.9").optim)
        x, y = torch.randn(2, 16, 20, generator=torch.Generator().manual_seed(1)), torch.randint(0, 5, (2, 16))
        for _ in range(3):
            if zero_grad is not None:
                optimizer.zero_grad(set_to_none=zero_grad)
            stacked.forward_backward(x, y)
            optimizer.step()
        return stacked.flat_weights.detach().clone(), stacked.flat_other.detach().clone()

    plain = trained(None)
    for set_to_none in (True, False):
        got = trained(set_to_none)
        assert all(torch.equal(a, b) for a, b in zip(got, plain)), set_to_none
    torch.manual_seed(0)
    start = StackedMLP([MLP(20, 5, depth=2, width=8, placement="before", init_std=0.3) for _ in range(2)])
    assert not torch.equal(start.flat_weights, plain[0])  # and the steps did move the parameters


def mlp_experiments():
    from bnrepro.config import compose
    from tests.conftest import EXPERIMENTS

    # bn_shift's bn.population=precise is a single-model option (check_stackable refuses it).
    return [e for e in EXPERIMENTS if compose(f"experiment={e}").model.name == "mlp"
            and compose(f"experiment={e}").bn.population.value == "ema"]


@pytest.mark.parametrize("experiment", mlp_experiments())
def test_every_mlp_experiment_stacks_with_its_single_run_s_records(make_cfg, tmp_path, experiment):
    """probe.norm_output and everything else an MLP experiment sets: a stacked member writes the
    metric names (in order) and values of its single run."""
    from tests.test_runner import TINY, tiny_data

    overrides = [f"experiment={experiment}", *TINY, *tiny_data(experiment, tmp_path / "data")]
    run(make_cfg(*overrides, "seeds=[1]"), tmp_path / "stacked")
    run_one(make_cfg(*overrides, "seeds=null", "seed=1"), tmp_path / "single")  # an experiment may set its seeds
    a, b = (pd.read_csv(d / "metrics.csv") for d in (tmp_path / "single", tmp_path / "stacked" / "seed=1"))
    assert a[["step", "split", "name"]].equals(b[["step", "split", "name"]])
    torch.testing.assert_close(torch.tensor(b.value.values), torch.tensor(a.value.values), rtol=1e-4, atol=1e-4)


STACK = [*SMOKE, "variant=bn", "trainer.threads=1", "trainer.checkpoint_every=5", "trainer.checkpoint_keep=2"]


def test_finished_stacked_members_are_not_redone(make_cfg, tmp_path):
    """Rerunning a finished stacked sweep leaves every metrics.csv untouched; a longer seed list trains
    only the new seeds (as a stack of their own, equal to their single runs); a changed config is
    refused before anything is written."""
    first = run(make_cfg(*STACK, "seeds=[0,1]"), tmp_path)
    files = {s: tmp_path / f"seed={s}" / "metrics.csv" for s in (0, 1)}
    stamps = {s: (f.stat().st_mtime_ns, f.read_bytes()) for s, f in files.items()}
    assert run(make_cfg(*STACK, "seeds=[0,1]"), tmp_path) == first
    extended = run(make_cfg(*STACK, "seeds=[0,1,2]"), tmp_path)
    assert extended[:2] == first and extended[2]["stacked_seeds"] == [2]
    assert {s: (f.stat().st_mtime_ns, f.read_bytes()) for s, f in files.items()} == stamps
    single = run_one(make_cfg(*STACK, "seed=2"), tmp_path / "single")
    assert extended[2]["final"] == pytest.approx(single["final"], rel=1e-4)
    with pytest.raises(BnreproError, match="different config"):
        run(make_cfg(*STACK, "seeds=[0,1]", "optim.lr=0.3"), tmp_path)
    assert {s: (f.stat().st_mtime_ns, f.read_bytes()) for s, f in files.items()} == stamps


def test_stacked_checkpoint_of_another_config_is_refused(make_cfg, tmp_path):
    run(make_cfg(*STACK, "seeds=[0,1]"), tmp_path)
    for s in (0, 1):
        (tmp_path / f"seed={s}" / "summary.json").unlink()  # as if killed after the last checkpoint
    with pytest.raises(BnreproError, match="optim.lr"):
        run(make_cfg(*STACK, "seeds=[0,1]", "optim.lr=0.3"), tmp_path)
    assert not any((tmp_path / f"seed={s}" / "summary.json").exists() for s in (0, 1))
