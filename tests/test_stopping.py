"""Issue 31's stopping bugs. (1) Under trainer.stop_at_plateau a stacked member stops where its single
run stops (its own validation curve, the same rule, the same step), then stays frozen while the
others go on. (2) A finished run is reused only for a request it satisfies: the stop mode (a fixed
budget or the plateau rule) is part of what must match."""
import json

import pandas as pd
import pytest
import torch

from bnrepro.errors import BnreproError
from bnrepro.training.session import run
from tests.conftest import SMOKE, run_one

# Noisy synthetic data, checked from step 100 every 20 steps: seeds 0-2 plateau at different steps,
# all well before max_steps. SGD with momentum and weight decay, which would move a stopped member's
# parameters even with zero gradients; BN, whose running statistics a train-mode pass would move.
PLATEAU = [*SMOKE, "variant=bn", "model=mlp", "data.synthetic.noise=4", "data.synthetic.train_size=5000",
           "data.val_size=1000", "optim.momentum=0.9", "optim.weight_decay=1e-4", "trainer.max_steps=600",
           "trainer.eval_every=20", "trainer.log_every=10", "trainer.stop_at_plateau=true",
           "trainer.plateau_min_steps=100", "probe.every=20", "trainer.threads=1", "trainer.checkpoint_every=10",
           "trainer.checkpoint_keep=100"]
SEEDS = (0, 1, 2)


@pytest.fixture
def final_params(monkeypatch):
    """Every run's parameters and BN statistics as `fit` leaves them, one state dict per member (in
    the names of the single run's MLP), in the order the runs were trained."""
    from bnrepro.training import loop, session

    trained = []

    def spy(members, *args, **kwargs):
        out = loop.fit(members, *args, **kwargs)
        m = members.module
        trained.extend([m.member_state_dict(i) for i in range(members.size)] if hasattr(m, "member_state_dict")
                       else [{k: v.clone() for k, v in m.state_dict().items()}])
        return out

    monkeypatch.setattr(session, "fit", spy)
    return trained


def assert_same_member(single_dir, member_dir, single, member):
    a, b = (pd.read_csv(d / "metrics.csv") for d in (single_dir, member_dir))
    assert a[["step", "split", "name"]].equals(b[["step", "split", "name"]])
    torch.testing.assert_close(torch.tensor(b.value.values), torch.tensor(a.value.values), rtol=1e-4, atol=1e-4)
    for key in ("status", "stopped", "steps", "best_step", "best_val_step"):
        assert member[key] == single[key], key
    assert member["final"] == pytest.approx(single["final"], rel=1e-4, abs=1e-5)
    assert member["drift"].keys() == single["drift"].keys()
    for layer, stats in single["drift"].items():
        assert member["drift"][layer] == pytest.approx(stats, rel=1e-3, abs=1e-5), layer


def assert_same_params(single, member):
    names = [k for k in single if not k.endswith("num_batches_tracked")]  # the stack shares its counters
    assert names and set(names) <= set(member)
    for k in names:
        torch.testing.assert_close(member[k], single[k], rtol=1e-4, atol=1e-4, msg=k)


def test_each_stacked_member_stops_where_its_single_run_does(make_cfg, tmp_path, final_params):
    stacked = run(make_cfg(*PLATEAU, f"seeds={list(SEEDS)}"), tmp_path / "stack")
    singles = [run_one(make_cfg(*PLATEAU, f"seed={s}"), tmp_path / f"single{s}") for s in SEEDS]
    steps = [s["steps"] for s in singles]
    # The setup must tell the two rules apart: the seeds stop at different steps, before max_steps.
    assert len(set(steps)) > 1 and max(steps) < 600, steps
    assert {s["stopped"] for s in singles} == {"plateau"}
    assert [s["steps"] for s in stacked] == steps
    for seed, member, single in zip(SEEDS, stacked, singles):
        assert_same_member(tmp_path / f"single{seed}", tmp_path / "stack" / f"seed={seed}", single, member)
    # A member that stopped first stayed frozen while the others trained on: no SGD step (momentum and
    # weight decay included) and no running-statistics update after its stop.
    for i in range(len(SEEDS)):
        assert_same_params(final_params[len(SEEDS) + i], final_params[i])


def test_a_stack_resumed_after_a_member_stopped_stops_as_the_uninterrupted_one(make_cfg, tmp_path, final_params):
    """Killed after the first member stopped (the last checkpoint kept is the first one after that stop):
    resumed, the stopped member stays frozen and its record ends where it did."""
    whole = run(make_cfg(*PLATEAU, f"seeds={list(SEEDS)}"), tmp_path / "whole")
    first, last = min(s["steps"] for s in whole), max(s["steps"] for s in whole)
    assert first < last
    resumed_dir = tmp_path / "resumed"
    run(make_cfg(*PLATEAU, f"seeds={list(SEEDS)}"), resumed_dir)
    checkpoints = sorted((resumed_dir / "checkpoints").glob("seeds=*/step*.pt"))
    kept = [p for p in checkpoints if first < int(p.name[4:12]) < last][0]
    for p in checkpoints:
        if p.name > kept.name:
            p.unlink()
    for s in SEEDS:  # as if killed right after that checkpoint
        (resumed_dir / f"seed={s}" / "summary.json").unlink()
    resumed = run(make_cfg(*PLATEAU, f"seeds={list(SEEDS)}"), resumed_dir)
    assert all(s["resumed_from"] == str(kept) for s in resumed)
    assert [s["steps"] for s in resumed] == [s["steps"] for s in whole]
    assert [s["stopped"] for s in resumed] == [s["stopped"] for s in whole]
    for s in SEEDS:
        assert ((tmp_path / "whole" / f"seed={s}" / "metrics.csv").read_bytes()
                == (resumed_dir / f"seed={s}" / "metrics.csv").read_bytes())
    n = len(SEEDS)
    for a, b in zip(final_params[:n], final_params[2 * n:]):
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["mlp", "conv: paper BN", "conv: no BN, dropout, LRN"])
def test_member_tensors_are_the_members_own_parameters_and_statistics(kind):
    """What the loop holds still for a stopped member: every parameter and running statistic of that
    member (as its state dict names them), and nothing of another member's."""
    from bnrepro.models.mlp import MLP
    from bnrepro.models.stacked import StackedMLP
    from bnrepro.models.stacked_conv import StackedConvNet
    from bnrepro.training.members import StackedConvMembers, StackedMembers
    from tests.test_stacked_conv import members as conv_models

    if kind == "mlp":
        models = []
        for seed in SEEDS:
            torch.manual_seed(seed)
            models.append(MLP(20, 5, depth=2, width=8, placement="before", init_std=0.3))
        stack = StackedMembers(StackedMLP(models))
    else:
        stack = StackedConvMembers(StackedConvNet(conv_models(kind.removeprefix("conv: "))[0]))
    for i in range(stack.size):
        with torch.no_grad():
            for t in stack.member_tensors(i):
                t.fill_(7.0)
        for j in range(stack.size):
            state = {k: v for k, v in stack.module.member_state_dict(j).items() if not k.endswith("num_batches_tracked")}
            assert state and all(bool((v == 7.0).all()) == (j <= i) for v in state.values()), (i, j)


ONE = [*PLATEAU, "seed=0", "trainer.max_steps=300"]


def test_a_run_is_reused_only_for_the_stop_mode_it_was_trained_with(make_cfg, tmp_path, capsys):
    """Bug 2: a plateau-stopped run does not answer a fixed budget, nor a fixed-budget run the plateau
    rule; both are refused (one paragraph, exit status 2) with the record left as it was, and
    trainer.resume=false trains what is asked for there."""
    from bnrepro.training.session import main

    stopped = run_one(make_cfg(*ONE), tmp_path / "plateau")
    assert stopped["stopped"] == "plateau" and stopped["steps"] < 300
    budget = run_one(make_cfg(*ONE, "trainer.stop_at_plateau=false"), tmp_path / "budget")
    assert budget["stopped"] is None and budget["steps"] == 300
    records = {d: {f: (tmp_path / d / f).read_bytes() for f in ("metrics.csv", "summary.json", "config.yaml")}
               for d in ("plateau", "budget")}
    refusals = {
        ("plateau", "trainer.stop_at_plateau=false"):
            f"stopped at its plateau at step {stopped['steps']} .*fixed budget of trainer.max_steps=300 .*never trained",
        ("budget", "trainer.stop_at_plateau=true"):
            "trained its whole budget of 300 steps .*stop at the plateau .*might have stopped it earlier",
        ("plateau", "trainer.plateau_min_steps=200"): "checked from step 100.* checked from step 200",
    }
    for (where, override), match in refusals.items():
        with pytest.raises(BnreproError, match=match) as err:
            run(make_cfg(*ONE, override), tmp_path / where)
        assert str(tmp_path / where) in str(err.value) and "hydra.run.dir" in str(err.value)
        with pytest.raises(SystemExit) as exit_:
            main(lambda: make_cfg(*ONE, override), tmp_path / where)
        assert exit_.value.code == 2 and "does not answer" in capsys.readouterr().err
    for d, files in records.items():
        assert {f: (tmp_path / d / f).read_bytes() for f in files} == files
    # The same stop mode is still reused, as it is.
    assert run_one(make_cfg(*ONE), tmp_path / "plateau")["steps"] == stopped["steps"]
    assert run_one(make_cfg(*ONE, "trainer.stop_at_plateau=false"), tmp_path / "budget") == budget
    # trainer.resume=false: the fixed budget trained over there, as a straight run trains it.
    again = run_one(make_cfg(*ONE, "trainer.stop_at_plateau=false", "trainer.resume=false"), tmp_path / "plateau")
    assert again["stopped"] is None and again["steps"] == 300
    assert (tmp_path / "plateau" / "metrics.csv").read_bytes() == records["budget"]["metrics.csv"]


def test_a_checkpoint_of_another_stop_mode_is_refused(make_cfg, tmp_path):
    """An interrupted plateau run's checkpoints do not resume a fixed budget (a stacked member may have
    stopped and been frozen in them), nor a fixed budget's the plateau rule."""
    for mode, other in (("true", "false"), ("false", "true")):
        out = tmp_path / mode
        run_one(make_cfg(*ONE, f"trainer.stop_at_plateau={mode}"), out)
        (out / "summary.json").unlink()  # as if killed after its last checkpoint
        with pytest.raises(BnreproError, match="trainer.stop_at_plateau"):
            run(make_cfg(*ONE, f"trainer.stop_at_plateau={other}"), out)
