"""Reading runs back and plotting them, on a small sweep made by the real runner."""
import json
import subprocess
import sys

import pytest

from bnrepro.analysis.results import curve, load_metrics, load_runs
from tests.conftest import REPO, SMOKE, run_one


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from bnrepro.config import compose

    root = tmp_path_factory.mktemp("sweep")
    for variant in ("baseline", "bn"):
        for seed in (0, 1):
            run_one(compose(*SMOKE, f"variant={variant}", f"seed={seed}"), root / f"seed={seed},variant={variant}")
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


def script(name, *args):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_plot_accuracy_writes_the_figure(sweep, tmp_path):
    out = tmp_path / "fig" / "acc.png"
    script("plot_accuracy.py", sweep, "--out", out)
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_plot_fig1_writes_png_and_pdf(sweep, tmp_path):
    script("plot_fig1.py", sweep, "--out", tmp_path / "fig1")
    assert (tmp_path / "fig1" / "fig1.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig1" / "fig1.pdf").read_bytes()[:4] == b"%PDF"


def test_fig1_report_has_accuracy_and_drift_per_variant(sweep, tmp_path):
    out = tmp_path / "report.md"
    script("report_fig1.py", sweep, "--out", out)
    text = out.read_text()
    assert "| Without BN | 2 |" in text and "| With BN | 2 |" in text
    assert "last hidden layer `layer3`" in text
    assert text.count("±") >= 2 * 4 + 2 * 6  # every cell is a mean ± std over the two seeds


def test_summary_names_the_run(sweep):
    summary = json.loads((sweep / "seed=1,variant=bn" / "summary.json").read_text())
    assert summary["variant"] == "bn" and summary["seed"] == 1 and summary["data"] == "synthetic"


def test_scripts_handle_diverged_and_running_runs(sweep, tmp_path, make_cfg):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    (copy / "seed=1,variant=bn" / "summary.json").unlink()  # still running
    # The diverged run is a condition of its own (ReLU, lr 1e10): alone in its variant, so that no run that
    # differs in more than the seed is averaged with it (issue 34; tests/test_grouping.py has the refusal)
    for seed in (0, 1):
        shutil.rmtree(copy / f"seed={seed},variant=baseline")
    diverged = run_one(make_cfg(*SMOKE, "variant=baseline", "seed=2", "model.activation=relu", "optim.lr=1e10"),
                   copy / "seed=2,variant=baseline")
    assert diverged["status"] == "diverged"
    script("plot_fig1.py", copy, "--out", tmp_path)
    assert (tmp_path / "fig1.png").exists()
    text = script("report_fig1.py", copy)
    assert "1 diverged" in text and "1 running" in text


def test_damaged_run_files_are_named_and_the_other_runs_read(sweep, tmp_path):
    """Issue 33 item 13: a summary.json holding `[]` and a torn metrics.csv, read by summarize and plot_fig1:
    one paragraph naming each bad file, no traceback, the other runs still read."""
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    (copy / "seed=0,variant=bn" / "summary.json").write_text("[]")
    (copy / "seed=1,variant=bn" / "metrics.csv").write_bytes(b'step,split\n1,"tr\x00\xff\n"unterminated')
    proc = subprocess.run([sys.executable, "-m", "bnrepro.analysis.summarize", str(copy)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "damaged" in proc.stdout and "seed=0,variant=bn" in proc.stdout
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_fig1.py"), str(copy), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"Skipped {copy / 'seed=1,variant=bn' / 'metrics.csv'}: not a readable metrics file" in proc.stderr
    assert (tmp_path / "out" / "fig1.png").is_file()
    assert sorted(load_runs(copy).status) == ["completed", "completed", "completed", "damaged"]
