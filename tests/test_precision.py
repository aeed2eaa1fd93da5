"""scripts/compare_precision.py (issue 35 item 3): bf16 runs against float32 runs of the same seeds, each
statistic judged against the float32 seeds' spread; a bf16 copy within noise is offered, a shifted one is not."""
import json
import sys

import numpy as np
import pandas as pd
import yaml

from bnrepro.analysis.precision import DIFFERS, WITHIN, compare, decision
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compare_precision  # noqa: E402



def write_sweep(root, shift: float, jitter: float, seed_base: int = 0):
    """Inception and BN-x5, 5 seeds each: val accuracy rising to a per-seed plateau (+ `shift`, + noise)."""
    rng = np.random.default_rng(seed_base)
    for variant, top, rate in (("inception", 0.88, 400.0), ("bn_x5", 0.91, 150.0)):
        for seed in range(5):
            d = root / variant / f"seed={seed}"
            d.mkdir(parents=True)
            plateau = top + 0.004 * np.sin(seed) + shift + jitter * rng.normal()
            steps = np.arange(100, 1600 + 100 * seed + 1, 100)  # each seed stops at its own step
            acc = plateau * (1 - np.exp(-steps / rate))
            rows = [(int(s), split, "accuracy", float(a)) for s, a in zip(steps, acc) for split in ("val", "test")]
            pd.DataFrame(rows, columns=["step", "split", "name", "value"]).to_csv(d / "metrics.csv", index=False)
            (d / "config.yaml").write_text(yaml.safe_dump({"variant": variant, "seed": seed, "experiment": "x",
                                                           "data": {"name": "synthetic"}}))
            (d / "summary.json").write_text(json.dumps({"status": "completed", "steps": 2000,
                                                        "model_steps_per_s": 20.0 + 5 * (shift != 0)}))
            (d / "full_test.json").write_text(json.dumps({"test_size": 100, "final": {"test_accuracy": plateau - 0.01}}))
    return root


def test_a_copy_within_seed_noise_is_offered_and_a_shifted_one_is_not(tmp_path):
    base = write_sweep(tmp_path / "fp32", 0.0, 0.0)
    same = write_sweep(tmp_path / "same", 0.0, 0.0005, seed_base=1)
    frame, paired, threshold = compare(base, same)
    plateau = frame[frame.statistic.str.startswith("val plateau")]
    assert set(plateau.verdict) == {WITHIN} and len(paired) == 10 and 0.8 < threshold < 0.88
    assert decision(frame).startswith("all 8 statistics within seed noise")
    shifted = write_sweep(tmp_path / "shifted", -0.03, 0.0005, seed_base=2)
    frame, _, _ = compare(base, shifted)
    assert set(frame[frame.statistic.str.startswith("val plateau")].verdict) == {DIFFERS}
    assert decision(frame).startswith("float32 stays")
    speed = frame[frame.scale == "ratio"]
    assert np.allclose(speed.difference, 25 / 20)
    import shutil
    shutil.rmtree(same / "bn_x5")  # half the protocol run: no decision yet, whatever Inception shows
    frame, _, _ = compare(base, same)
    assert decision(frame).startswith("not decided: no paired bf16 runs of bn_x5")


def test_the_script_writes_its_table_and_needs_the_float32_sweep(tmp_path, capsys):
    base, other = write_sweep(tmp_path / "fp32", 0.0, 0.0), write_sweep(tmp_path / "bf16", 0.0, 0.0005, 1)
    assert compare_precision.main([str(other), "--base", str(base), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "precision.md").read_text()
    assert "Decision: all 8 statistics within seed noise" in text and "x/ " in text
    assert compare_precision.main([str(other)]) == 2 and "--base" in capsys.readouterr().err

