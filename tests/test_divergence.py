"""Divergence, both ways it shows (bnrepro/training/loop.py): a non-finite loss, and a dead network."""
import math

import torch
import yaml

from bnrepro.data import build_data
from bnrepro.tracking.logger import RunLogger
from bnrepro.training.loop import fit, input_independent
from bnrepro.training.members import build_members
from tests.conftest import SMOKE, run_one


def test_input_independent_flags_identical_rows_only():
    same = torch.tensor([[0.3, -1.0, 2.0]]).repeat(8, 1)
    assert input_independent(same) == 1.0
    assert input_independent(same + 1e-3 * torch.randn(8, 3)) == 0.0
    assert input_independent(same[:1]) == 0.0  # one example proves nothing
    # Stacked members (bnrepro/training/members.py): one flag per member.
    members = torch.stack([same, same + 1e-3 * torch.randn(8, 3)])
    assert input_independent(members).tolist() == [1.0, 0.0]


def fit_relu_mlp(make_cfg, tmp_path, first_bias: float):
    cfg = make_cfg(*SMOKE, "variant=baseline", "model.activation=relu", "probe.every=0", "trainer.max_steps=40")
    data = build_data(cfg.data, batch_size=cfg.trainer.batch_size, eval_batch_size=cfg.trainer.eval_batch_size,
                      device=torch.device("cpu"))
    members = build_members(cfg, data.input_shape, data.num_classes, torch.device("cpu"))
    with torch.no_grad():
        members.module.hidden[0].linear.bias.fill_(first_bias)  # every first-layer ReLU below zero for every input: a dead network
    with RunLogger(tmp_path, {}, cfg.trainer.max_steps, "none") as log:
        return fit(members, data, cfg, [log])[0][0]


def test_dead_network_ends_as_diverged(make_cfg, tmp_path):
    result = fit_relu_mlp(make_cfg, tmp_path, first_bias=-1e4)
    # Dead from the start: seen at the first two log steps (5 and 10), then the run stops.
    assert (result.status, result.divergence, result.steps) == ("diverged", "dead", 10)


def test_live_network_is_not_dead(make_cfg, tmp_path):
    result = fit_relu_mlp(make_cfg, tmp_path, first_bias=0.0)
    assert (result.status, result.divergence, result.steps) == ("completed", None, 40)
    assert not math.isnan(result.best_accuracy)


def test_sigmoid_network_at_chance_is_not_dead(make_cfg, tmp_path):
    """A saturated sigmoid network learns nothing but its output still varies with the input: the
    paper's Inception-Sigmoid ("stayed at chance") must not be recorded as diverged."""
    cfg = make_cfg(*SMOKE, "variant=baseline", "model.init_std=10.0", "probe.every=0", "optim.lr=1e-6")
    data = build_data(cfg.data, batch_size=cfg.trainer.batch_size, eval_batch_size=cfg.trainer.eval_batch_size,
                      device=torch.device("cpu"))
    members = build_members(cfg, data.input_shape, data.num_classes, torch.device("cpu"))
    with RunLogger(tmp_path, {}, cfg.trainer.max_steps, "none") as log:
        [result], _ = fit(members, data, cfg, [log])
    assert result.status == "completed"


def test_summary_names_the_divergence(make_cfg, tmp_path):
    """A ReLU MLP at lr 1e10 overflows at once: the paper's "machine infinity", at the first log step."""
    summary = run_one(make_cfg(*SMOKE, "variant=baseline", "model.activation=relu", "optim.lr=1e10"), tmp_path)
    assert (summary["status"], summary["divergence"], summary["steps"]) == ("diverged", "nonfinite", 5)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["variant"] == "baseline"


def test_small_init_sigmoid_network_is_not_dead(make_cfg, tmp_path, monkeypatch):
    """Issue 33, item 9: a sigmoid MLP at init_std=0.003 has logits that vary across the batch by less
    than the input-independence test resolves, yet it gets a gradient everywhere and learns: it was
    recorded 'diverged, dead'. Single and stacked alike."""
    from bnrepro.training import loop

    flagged = []
    monkeypatch.setattr(loop, "input_independent", lambda logits: flagged.append(1) or input_independent(logits))
    for i, seeds in enumerate(([], ["seeds=[0,1]"])):
        cfg = make_cfg(*SMOKE, "variant=baseline", "model.init_std=0.003", "optim.lr=0.01", "probe.every=0",
                       "trainer.max_steps=60", *seeds)
        data = build_data(cfg.data, batch_size=cfg.trainer.batch_size, eval_batch_size=cfg.trainer.eval_batch_size,
                          device=torch.device("cpu"))
        members = build_members(cfg, data.input_shape, data.num_classes, torch.device("cpu"))
        members.forward_backward(*next(iter(data.train_batches(cfg.seeds if cfg.seeds is not None else cfg.seed))))
        assert (input_independent(members.last_logits) == 1.0).all()  # what alone used to end the run
        dirs = [tmp_path / f"{i}-{j}" for j in range(members.size)]
        for d in dirs:
            d.mkdir()
        logs = [RunLogger(d, {}, cfg.trainer.max_steps, "none") for d in dirs]
        try:
            results, _ = fit(members, data, cfg, logs)
        finally:
            for log in logs:
                log.close()
        assert [(r.status, r.divergence, r.steps) for r in results] == [("completed", None, 60)] * members.size
    assert flagged


def test_an_exploded_but_finite_loss_is_divergence(make_cfg, tmp_path, capsys):
    """Issue 34: a BN run at lr 1e4 ended at loss 9,379 and accuracy 0.24 and counted as a success. A window's
    mean loss above loop.EXPLODED_LOSS (100 nats; chance is 2.30) ends it as diverged, `exploded`."""
    from bnrepro.training.loop import EXPLODED_LOSS, FitResult, divergence_of

    started = FitResult(first_loss=2.3)
    assert divergence_of(EXPLODED_LOSS * 1.01, started, dead=False) == "exploded"
    assert divergence_of(2.46, FitResult(), dead=False) is None  # the highest a completed committed run logged
    high = FitResult(first_loss=300.0)  # a saturated net that starts at 300 nats and stays there is not diverged
    assert [divergence_of(x, high, dead=False) for x in (300.0, 310.0, 2999.0)] == [None, None, None]
    assert divergence_of(3001.0, high, dead=False) == "exploded"
    summary = run_one(make_cfg(*SMOKE, "variant=bn", "optim.lr=1e5", "trainer.max_steps=40"), tmp_path)
    # a BN MLP at lr 1e5 starts near chance (2.3 at step 1) and sits at ~500,000 from the first log step on
    assert (summary["status"], summary["divergence"], summary["steps"]) == ("diverged", "exploded", 5)
    assert "diverged at step 5 (the loss exploded to" in capsys.readouterr().err
