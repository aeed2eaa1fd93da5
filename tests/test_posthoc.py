"""Evaluation after training (bnrepro/training/posthoc.py): a finished run's final weights, evaluated
through the training loop's own evaluation, give back what the run logged at its last evaluation,
trainer.amp included; the final step is evaluated even when the last periodic checkpoint is older."""
import shutil

import pandas as pd
import pytest
import torch

from bnrepro.data import build_data
from bnrepro.errors import BnreproError
from bnrepro.training import posthoc
from bnrepro.training.checkpoint import CHECKPOINT_DIR, checkpoints, read_verified
from bnrepro.training.inference import evaluate_statistics
from bnrepro.training.shift import evaluate_shift
from tests.test_runner import TINY, tiny_data

# bf16 autocast (on the CPU here) and NHWC convs (the experiment's channels_last); 7 steps with a
# periodic checkpoint every 5, so the last periodic one (step 5) is older than the final step.
AMP = [*TINY, "trainer.max_steps=7", "trainer.eval_every=7", "trainer.checkpoint_every=5", "trainer.checkpoint_keep=3",
       "trainer.threads=1", "trainer.amp=true"]


@pytest.fixture(scope="module")
def amp_run(tmp_path_factory):
    from bnrepro.config import compose
    from bnrepro.training.session import run

    root = tmp_path_factory.mktemp("posthoc")
    cfg = compose("experiment=bn_statistics_conv", *AMP, *tiny_data("bn_statistics_conv", root / "data"))
    assert cfg.trainer.amp and cfg.trainer.channels_last
    assert run(cfg, root / "run")[0]["status"] == "completed"
    return root / "run"


def logged(run_dir) -> tuple[dict[str, float], int]:
    """The run's last test evaluation as metrics.csv has it, and its step."""
    m = pd.read_csv(run_dir / "metrics.csv")
    test = m[m.split == "test"]
    step = test.step.max()
    return {name: test[(test.step == step) & (test.name == name)].value.item() for name in ("accuracy", "loss")}, step


def loaded(run_dir):
    cfg = posthoc.load_config(run_dir)
    data = build_data(cfg.data, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, "cpu")
    model, step = posthoc.load_model(run_dir, cfg, data.input_shape, data.num_classes)
    return cfg, data, model, step


def test_an_amp_run_evaluated_after_training_is_what_it_logged_last(amp_run):
    last, step = logged(amp_run)
    cfg, data, model, at = loaded(amp_run)
    assert at == step == 7
    accuracy, loss = posthoc.evaluate(model, data.test_batches(), amp=True)
    assert accuracy == pytest.approx(last["accuracy"], abs=1e-12) and loss == pytest.approx(last["loss"], rel=1e-9)
    # float32 logits are another evaluation: without the run's autocast the loss is not what it logged.
    assert posthoc.evaluate(model, data.test_batches(), amp=False)[1] != pytest.approx(last["loss"], rel=1e-6)
    # The two callers give the same numbers: the EMA row, and the clean row under the training statistics.
    ema = pd.DataFrame(evaluate_statistics(amp_run)).query("statistics == 'ema' and split == 'test'").iloc[0]
    assert ema.step == 7 and ema.accuracy == pytest.approx(last["accuracy"], abs=1e-12)
    assert ema.loss == pytest.approx(last["loss"], rel=1e-9)
    x, y = (torch.cat(t) for t in zip(*data.test_batches()))
    rows = pd.DataFrame(evaluate_shift(model, x, y, cfg.trainer.batch_size, severities=(1,), amp=True,
                                       eval_batch_size=cfg.trainer.eval_batch_size))
    clean = rows[(rows.corruption == "none") & (rows.statistics == "train")].iloc[0]
    assert clean.accuracy == pytest.approx(last["accuracy"], abs=1e-12) and clean.loss == pytest.approx(last["loss"], rel=1e-9)


def test_the_final_step_is_evaluated_when_the_last_periodic_checkpoint_is_older(amp_run, tmp_path):
    saved = checkpoints(amp_run / CHECKPOINT_DIR)
    assert [s for s, _ in saved] == [7, 5]  # 7: saved as the run ended, no multiple of checkpoint_every
    last, _ = logged(amp_run)
    _, data, model, _ = loaded(amp_run)
    model.load_state_dict(read_verified(saved[1][1])["training"]["model"])  # the step-5 weights
    assert posthoc.evaluate(model, data.test_batches(), amp=True)[1] != pytest.approx(last["loss"], rel=1e-6)
    # A run directory without its final weights (trained before runs saved them) is refused, not
    # evaluated at an older step.
    older = tmp_path / "run"
    shutil.copytree(amp_run, older)
    (older / CHECKPOINT_DIR / saved[0][1].name).unlink()
    with pytest.raises(BnreproError, match="ended at step 7, but its newest checkpoint is of step 5"):
        loaded(older)
    (older / "summary.json").write_text('{"status": "interrupted", "steps": 5}')
    with pytest.raises(BnreproError, match="no finished run"):
        loaded(older)
