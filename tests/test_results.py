"""Reading runs back and plotting them, on a small sweep made by the real runner."""
import json
import subprocess
import sys

import pytest

from bnrepro.results import curve, load_metrics, load_runs
from bnrepro.run import run
from tests.conftest import REPO, SMOKE


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    root = tmp_path_factory.mktemp("sweep")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        for variant in ("baseline", "bn"):
            for seed in (0, 1):
                cfg = compose("train", overrides=[*SMOKE, f"variant={variant}", f"seed={seed}"])
                run(cfg, root / f"seed={seed},variant={variant}")
    return root


def test_load_runs_and_curve(sweep):
    runs = load_runs(sweep)
    assert sorted(runs.run) == ["seed=0,variant=baseline", "seed=0,variant=bn",
                                "seed=1,variant=baseline", "seed=1,variant=bn"]
    assert set(runs.status) == {"completed"}
    acc = curve(load_metrics(sweep), "test", "accuracy")
    assert set(acc.variant) == {"baseline", "bn"}
    assert (acc["count"] == 2).all() and acc.step.tolist() == [10, 20, 10, 20]


def test_unfinished_run_is_read_as_running(sweep, tmp_path):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    (copy / "seed=1,variant=bn" / "summary.json").unlink()
    runs = load_runs(copy).set_index("run")
    assert runs.loc["seed=1,variant=bn", "status"] == "running"


def test_plot_script_writes_the_figure(sweep, tmp_path):
    out = tmp_path / "fig" / "acc.png"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/plot_accuracy.py"), str(sweep), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_summary_names_the_run(sweep):
    summary = json.loads((sweep / "seed=1,variant=bn" / "summary.json").read_text())
    assert summary["variant"] == "bn" and summary["seed"] == 1 and summary["data"] == "synthetic"
