"""scripts/figures.py, the one command behind `make figures`: every registered result renders from the
committed run data, byte for byte what results/ holds, with every claim id in the scorecard."""
import filecmp
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from bnrepro.analysis import registry
from tests.conftest import REPO


def test_an_unknown_result_is_refused_with_the_list_to_choose_from():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "figures.py"), "fig9"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and "no result named 'fig9'" in proc.stderr and "fig2" in proc.stderr


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
