"""scripts/figures.py, the one command behind `make figures`: every registered result renders from the
committed run data, byte for byte what results/ holds, with every claim id in the scorecard."""
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bnrepro.analysis import registry
from tests.conftest import REPO


def test_an_unknown_result_is_refused_with_the_list_to_choose_from():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "figures.py"), "fig9"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and "no result named 'fig9'" in proc.stderr and "fig2" in proc.stderr


def test_each_script_runs_in_its_own_forked_process_and_its_failures_are_reported(tmp_path):
    """figures.run_all: every script runs, whatever another did (exit codes, a message, a traceback)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import figures

    scripts = {"ok": "import sys; print('wrote', sys.argv[1:])", "code": "raise SystemExit(3)",
               "message": "import sys; sys.exit('no sweep here')", "crash": "1 / 0",
               "state": "import matplotlib; print(matplotlib.get_backend()); matplotlib.rcParams['lines.linewidth'] = 9"}
    for name, text in scripts.items():
        (tmp_path / f"{name}.py").write_text(text + "\n")
    jobs = [[str(tmp_path / f"{name}.py"), "x"] for name in [*scripts, "state"]]
    ended = {(Path(a[0]).stem, i): (code, out, err) for i, (a, code, out, err, _) in enumerate(figures.run_all(jobs, 2))}
    got = {}
    for (name, _), value in ended.items():
        got.setdefault(name, []).append(value)
    assert got["ok"] == [(0, "wrote ['x']\n", "")]
    assert got["code"][0][0] == 3
    assert got["message"][0][0] == 1 and "no sweep here" in got["message"][0][2]
    assert got["crash"][0][0] == 1 and "ZeroDivisionError" in got["crash"][0][2]
    # each starts from this process's state, not from what the script before it changed
    import matplotlib
    assert [g[0] for g in got["state"]] == [0, 0] and matplotlib.rcParams["lines.linewidth"] != 9


def test_rendering_some_results_unpacks_every_sweep_the_scorecard_reads(tmp_path, monkeypatch):
    """A fresh clone's `figures.py why`: the scorecard rendered with it must not read the sweeps of the
    results not named as "not run"."""
    sys.path.insert(0, str(REPO / "scripts"))
    import figures

    unpacked = []
    monkeypatch.setattr(figures, "unpack", lambda packed, target: unpacked.append(target.name))
    monkeypatch.setattr(figures, "run_all", lambda jobs, width: [])
    monkeypatch.setattr(figures, "preload", lambda: None)
    assert figures.main(["why", "--root", str(tmp_path / "sweeps"), "--results", str(REPO / "results")]) == 0
    committed = {p.parent.name for p in (REPO / "results").glob("*/rundata.tar.xz")}
    assert set(unpacked) == committed and "fig2_fashion_mnist" in unpacked


@pytest.mark.slow
def test_every_registered_result_renders_from_the_committed_run_data(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    generated = [p for p in results.rglob("*") if p.is_file() and p.suffix in (".md", ".csv") and
                 p.name not in ("history.md",)]
    for p in generated:  # written again from scratch, not left over
        if p.name != "README.md":
            p.unlink()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "figures.py"), "--root", str(tmp_path / "sweeps"),
                           "--results", str(results)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(results / "scorecard.csv")
    ids = [s["claim"] for r in registry.RESULTS for st in r.studies for s in st.claims(tmp_path / "sweeps")]
    assert frame.claim.tolist() == ids and "not run" not in set(frame.verdict)
    for p in generated:
        if p.name in ("README.md",) or "sweeps" in str(p):
            continue
        committed = REPO / p.relative_to(tmp_path)
        # the reports name the sweep directory they read; here it is another one
        text, want = p.read_text().replace(str(tmp_path / "sweeps"), "outputs/results"), committed.read_text()
        assert text == want, p.relative_to(tmp_path)
