"""Figure 2 plot and Figure 3 table on a synthetic sweep whose answers are known exactly."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import REPO

# variant -> test accuracy at steps 100..500 (the same for both seeds, so means are exact)
CURVES = {
    "inception": [0.2, 0.4, 0.5, 0.6, 0.6],
    "bn_baseline": [0.3, 0.5, 0.6, 0.7, 0.7],   # reaches 0.6 at step 300: 4/3x faster
    "bn_x5": [0.6, 0.7, 0.7, 0.8, 0.8],          # at step 100: 4x
    "bn_x5_sigmoid": [0.1, 0.2, 0.3, 0.4, 0.5],  # never
}


def write_run(run_dir: Path, variant: str, seed: int, accuracy, status: str | None = "completed"):
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"variant": variant, "seed": seed, "experiment": "fig2_test", "data": {"name": "synthetic"}}))
    rows = [(100 * (i + 1), "test", "accuracy", a) for i, a in enumerate(accuracy)]
    if status == "diverged":
        rows.append((100 * len(accuracy), "train", "diverged", 1.0))
    pd.DataFrame(rows, columns=["step", "split", "name", "value"]).to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "provenance.json").write_text(json.dumps({
        "command": "train.py -m experiment=fig2_test", "device_name": "test CPU", "device": "cpu",
        "cpu_count": 2, "torch": "x", "git_sha": "abc", "git_dirty": False}))
    if status:
        (run_dir / "summary.json").write_text(json.dumps({"status": status}))


def make_sweep(root: Path) -> Path:
    for variant, acc in CURVES.items():
        for seed in (0, 1):
            write_run(root / f"seed={seed},variant={variant}", variant, seed, acc)
    write_run(root / "seed=0,variant=inception_x5", "inception_x5", 0, [0.1], status="diverged")
    write_run(root / "seed=1,variant=bn_x30", "bn_x30", 1, [0.65, 0.7], status=None)  # still running
    return root


def script(name, *args) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fig3_table_has_the_constructed_answers(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    script("table_fig3.py", sweep, "--out", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "fig3.csv").set_index("variant")
    assert list(table.index) == ["inception", "bn_baseline", "bn_x5", "bn_x30", "bn_x5_sigmoid", "inception_x5"]
    assert table.loc["inception", "steps_to_threshold"] == 400
    assert table.loc["bn_baseline", "steps_to_threshold"] == 300
    assert table.loc["bn_baseline", "speedup"] == 400 / 300
    assert table.loc["bn_x5", "speedup"] == 4.0
    assert table.loc["bn_x5", "best_accuracy"] == 0.8 and table.loc["bn_x5", "best_step"] == 400
    assert pd.isna(table.loc["bn_x5_sigmoid", "steps_to_threshold"])
    assert table.loc["inception_x5", "diverged"] == 1 and table.loc["bn_x30", "running"] == 1
    text = (tmp_path / "out" / "fig3.md").read_text()
    assert "threshold = the no-BN Inception's best seed-mean accuracy: 0.6000" in text
    assert "| BN-x5-Sigmoid | 2 ok | never |" in text
    assert "| Inception-x5 | 0 ok, 1 diverged | diverged |" in text
    assert "| BN-x30 | 0 ok, 1 running | 100 | 4.0x |" in text


def test_fig3_without_inception_says_the_threshold_is_missing(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "a", "bn_x5", 0, [0.5, 0.6])
    assert "missing: no `inception` runs" in script("table_fig3.py", root)


def test_fig2_plot_writes_png_and_pdf(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    script("plot_fig2.py", sweep, "--out", tmp_path / "out")
    assert (tmp_path / "out" / "fig2.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "fig2.pdf").read_bytes()[:4] == b"%PDF"
