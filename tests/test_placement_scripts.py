"""scripts/plot_placement.py, report_placement.py, plot_norms.py and report_norms.py on synthetic
sweeps whose answers are known exactly (accuracies in 1/8ths, percentiles chosen so the skew is
0, 0.5 or 1), and without importing torch."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

E = 0.125


def write_run(run_dir: Path, seed: int, eighths, config: dict, probes: dict | None = None) -> None:
    """A run directory as bnrepro writes it; `probes`: {"layer3/norm_unit": (p15, p50, p85), ...}."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"variant": "bn", "seed": seed, "experiment": "test", "data": {"name": "synthetic8"}, **config}))
    rows = [(100 * (i + 1), "test", "accuracy", a * E) for i, a in enumerate(eighths)]
    for key, values in (probes or {}).items():
        for step in (0, 100 * len(eighths)):
            rows += [(step, "probe", f"{key}_p{q}", v) for q, v in zip((15, 50, 85), values)]
    pd.DataFrame(rows, columns=["step", "split", "name", "value"]).to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "provenance.json").write_text(json.dumps({
        "command": "train.py -m experiment=test", "device_name": "Test CPU", "device": "cpu", "cpu_count": 2,
        "torch": "9.9", "git_sha": "0123456789abcdef", "git_dirty": False}))
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "wall_time_s": 30.0}))


def cfg(activation="relu", placement="before", norm="batch", batch_size=60, lr=0.1, steps=300):
    return {"model": {"name": "mlp", "activation": activation}, "bn": {"placement": placement, "norm": norm},
            "trainer": {"batch_size": batch_size, "max_steps": steps}, "optim": {"lr": lr}}


# (activation, placement) -> final accuracy in 1/8ths per seed; skews of norm output and g input
PLACEMENTS = {("relu", "none"): (4, 4), ("relu", "before"): (6, 7), ("relu", "after"): (5, 6),
              ("sigmoid", "none"): (1, 1), ("sigmoid", "before"): (5, 5), ("sigmoid", "after"): (6, 6)}
SYMMETRIC, HALF, SPIKE = (-1.0, 0.0, 1.0), (-1.0, 0.0, 3.0), (0.0, 0.0, 2.0)  # skew 0, 0.5, 1


@pytest.fixture
def placement_sweep(tmp_path) -> Path:
    root = tmp_path / "placement"
    for (activation, placement), finals in PLACEMENTS.items():
        for seed, final in enumerate(finals):
            probes = {"layer3/unit": HALF if placement == "none" else SYMMETRIC}
            if placement != "none":
                probes["layer3/norm_unit"] = SPIKE if placement == "after" else SYMMETRIC
            write_run(root / f"{activation},{placement},{seed}", seed, [2, 3, final], cfg(activation, placement), probes)
    return root


NORMS = {"batch": {2: (1, 2), 128: (7, 7)}, "layer": {2: (6, 6), 128: (6, 7)}}


@pytest.fixture
def norm_sweep(tmp_path) -> Path:
    root = tmp_path / "norms"
    for norm, by_size in NORMS.items():
        for size, finals in by_size.items():
            for seed, final in enumerate(finals):
                write_run(root / f"{norm},{size},{seed}", seed, [1, final], cfg(norm=norm, batch_size=size,
                          lr=0.2 * size / 128, steps=2 * 256 // size), {"layer3/norm_unit": SYMMETRIC})
    return root


def script(name, *args) -> str:
    """Run a script with torch made unimportable: plots and reports never need it."""
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_placement_report_has_the_numbers_and_the_anchors(placement_sweep, tmp_path):
    script("report_placement.py", placement_sweep, "--out", tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    # relu before: finals 6/8, 7/8 -> 81.25 ± 8.84; after: 5/8, 6/8 -> 68.75 ± 8.84. No val split here:
    # best (and the test there) is read on test. Plateau: the seed-mean best rose from 3/8 (steps <= 225).
    assert "| placement | seeds | final test accuracy (%) | best test accuracy (%) | test there (%) |" in text
    assert ("| BN before g (paper) | 2 | 81.25 ± 8.84 | 81.25 ± 8.84 | 81.25 ± 8.84 | +43.75 (not held) | "
            "0.000 ± 0.000 | 0.000 ± 0.000 |") in text
    assert ("| BN after g | 2 | 68.75 ± 8.84 | 68.75 ± 8.84 | 68.75 ± 8.84 | +31.25 (not held) | "
            "1.000 ± 0.000 | 0.000 ± 0.000 |") in text
    assert "| no BN | 2 | 50.00 ± 0.00 | 50.00 ± 0.00 | 50.00 ± 0.00 | +12.50 (not held) | n/a | 0.500 ± 0.000 |" in text
    assert "after - before: -12.50 ± 8.84 points" in text  # relu: sqrt(8.84^2/2 * 2)
    assert "after - before: +12.50 ± 0.00 points" in text  # sigmoid
    assert "58.18 ± 0.23 | 57.14 ± 0.28 | -1.04 | 10 runs" in text and "| 47.4 | 49.9 | +2.50 | 1 run |" in text
    assert "Wall time:" in text and "train.py -m experiment=test" in text
    assert "; 6.0 min summed over runs." in text  # 12 runs x wall_time_s 30
    assert "at the last probe of `layer3`'s typical unit" in text
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 12 and set(runs.placement) == {"none", "before", "after"}


def test_placement_and_norm_plots_write_one_figure_each(placement_sweep, norm_sweep, tmp_path):
    script("plot_placement.py", placement_sweep, "--out", tmp_path / "p")
    script("plot_norms.py", norm_sweep, "--out", tmp_path / "n")
    for path in (tmp_path / "p" / "placement.png", tmp_path / "n" / "norms.png"):
        assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "p" / "placement.pdf").exists() and (tmp_path / "n" / "norms.pdf").exists()


def test_norm_report_tables_norms_by_batch_size_and_checks_bn_against_ln(norm_sweep, tmp_path):
    text = script("report_norms.py", norm_sweep)
    assert "| norm | batch 2 | batch 128 |" in text
    assert "| BN (batch) | 18.75 ± 8.84 (2) | 87.50 ± 0.00 (2) |" in text
    assert "| LN (layer) | 75.00 ± 0.00 (2) | 81.25 ± 8.84 (2) |" in text
    assert "batch 2: 256 steps at lr 0.003125; batch 128: 4 steps at lr 0.2" in text
    assert "Check: at batch 2, BN - LN = -56.25 ± 6.25 points: BN is below layer normalization." in text
    # Plateau gain of each cell's seed-mean curve (test here: no val split), from 1/8 at step 100
    assert "| BN (batch) | +6.25 (not held) | +75.00 (not held) |" in text
    assert "| LN (layer) | +62.50 (not held) | +68.75 (not held) |" in text
    assert "Expected (seed 004)" in text  # the MLP's expectation; a conv sweep cites Wu & He 2018


def test_quantile_skew_and_norm_of_none():
    from bnrepro.analysis.results import quantile_skew
    from bnrepro.analysis.sweeps import placement_label

    s = quantile_skew(pd.Series([-1.0, 0.0, -1.0, 1.0]), pd.Series([0.0, 0.0, 0.0, 1.0]),
                      pd.Series([1.0, 2.0, 3.0, 1.0]))
    assert s.iloc[:3].tolist() == [0.0, 1.0, 0.5] and pd.isna(s.iloc[3])
    assert placement_label("after", "layer") == "LN after g" and placement_label("none") == "no BN"


def test_last_layer_is_the_deepest_in_the_probes_order_not_the_alphabet():
    from bnrepro.analysis.results import last_layer

    def probes(*layers):
        names = [f"{layer}/{kind}_p{q}" for layer in layers for kind in ("unit", "norm_unit") for q in (15, 85)]
        return pd.DataFrame({"split": ["test", *["probe"] * len(names)], "name": ["accuracy", *names]})

    assert last_layer(probes("stem", "1a", "2c", "3b")) == "3b"  # the small Inception (sorted: "stem")
    assert last_layer(probes(*(f"layer{i}" for i in range(1, 11)))) == "layer10"  # sorted: "layer9"
    assert last_layer(probes()) is None


def test_the_conv_arm_of_norms_is_evidence_where_the_mlp_at_batch_2_is_an_illustration():
    """norm_batchsize_conv's claim (scored when its run data land): its BN statistics pool 2 x H x W values."""
    from bnrepro.analysis.claims import norms_claims

    mlp, conv = norms_claims(None)[0], norms_claims(None, "norms_conv")[0]
    assert mlp["illustration"] and not conv["illustration"]
    assert conv["claim"] == "norms_conv_bn_below_ln_small_batch" and "Wu & He 2018" in conv["paper"]
