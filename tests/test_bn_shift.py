"""Issue 18's shift evaluation (bnrepro/training/shift.py, scripts/eval_shift.py): the corruptions
against hand values, and a tiny bn_shift run evaluated from its checkpoint."""
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from bnrepro.errors import BnreproError
from bnrepro.training.shift import CORRUPTIONS, corrupt, evaluate_shift
from tests.conftest import REPO
from tests.test_runner import TINY, tiny_data


def test_corruptions_by_hand():
    x = torch.tensor([0.0, 1.0, 0.25, 0.75]).view(1, 1, 2, 2)  # image mean 0.5
    assert torch.allclose(corrupt(x, "contrast", 1), torch.tensor([0.25, 0.75, 0.375, 0.625]).view(1, 1, 2, 2))
    flat = torch.full((2, 1, 6, 6), 0.3)
    assert torch.allclose(corrupt(flat, "blur", 3), flat, atol=1e-6)  # blur keeps a constant image
    spot = torch.zeros(1, 1, 9, 9)
    spot[0, 0, 4, 4] = 1.0
    blurred = corrupt(spot, "blur", 2)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5) and blurred[0, 0, 4, 4] < 0.5  # mass spread
    noisy = corrupt(flat, "gaussian_noise", 2)
    assert torch.equal(noisy, corrupt(flat, "gaussian_noise", 2))  # seeded: the same images every call
    assert noisy.min() >= 0 and noisy.max() <= 1 and 0.1 < (noisy - flat).std() < 0.2
    with pytest.raises(BnreproError, match="severity 1, 2 or 3"):
        corrupt(x, "contrast", 4)


def test_target_statistics_undo_a_shift_the_first_bn_sees():
    """A model whose first layer is a BN: recomputed on the contrast-shifted images, its statistics
    follow them, so the evaluation differs from the training statistics' and the model is untouched."""
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    y = (x.flatten(1)[:, 0] > x.flatten(1)[:, 1]).long()
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(16), nn.Linear(16, 2)).eval()
    model[1].running_mean.copy_(x.flatten(1).mean(0))
    model[1].running_var.copy_(x.flatten(1).var(0))
    before = model[1].running_var.clone()
    rows = pd.DataFrame(evaluate_shift(model, x, y, batch_size=16, severities=(3,)))
    assert len(rows) == 2 * (1 + len(CORRUPTIONS))
    assert set(rows.statistics) == {"train", "target"} and torch.equal(model[1].running_var, before)
    contrast = rows[rows.corruption == "contrast"].set_index("statistics").loss
    assert contrast["train"] != contrast["target"]
    with pytest.raises(BnreproError, match="no batch-norm layer"):
        evaluate_shift(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), x, y)


@pytest.mark.slow  # ~13 s; eval_shift on real runs is also in test_bn_statistics_analysis
def test_bn_shift_run_is_evaluated_from_its_checkpoint(make_cfg, tmp_path):
    from bnrepro.training.session import run

    cfg = make_cfg("experiment=bn_shift", *TINY, *tiny_data("bn_shift", tmp_path / "data"))
    assert [s["status"] for s in run(cfg, tmp_path / "run")] == ["completed"]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "eval_shift.py"), str(tmp_path / "run")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "run" / "shift.csv")
    assert len(table) == 2 * (1 + 3 * len(CORRUPTIONS)) and (table.step == 4).all()
    assert table.accuracy.between(0, 1).all()
    clean = table[table.corruption == "none"].set_index("statistics").accuracy
    summary = pd.read_csv(tmp_path / "run" / "metrics.csv")
    final = summary[(summary.split == "test") & (summary.name == "accuracy")].value.iloc[-1]
    assert clean["train"] == pytest.approx(final)  # the checkpoint is the network the run evaluated last
    missing = subprocess.run([sys.executable, str(REPO / "scripts" / "eval_shift.py"), str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no config.yaml" in missing.stderr and "Traceback" not in missing.stderr
