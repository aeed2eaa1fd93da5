"""The runner answers `--help` and `--cfg job` without the heavy imports (issue 35 item 4): torch
and torchvision were ~4 of the 4.6 s a `--cfg job` took before they moved into the job."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ["torch", "torchvision", "tensorboard", "pandas", "matplotlib"]

# `python experiments/train.py ARGS` in this process (runpy, as __main__), then the heavy packages it
# ended up holding and its exit status, on the last line.
PROBE = f"""
import json, runpy, sys
sys.argv = ["experiments/train.py", *sys.argv[1:]]
try:
    runpy.run_path("experiments/train.py", run_name="__main__")
    code = 0
except SystemExit as exit_:
    code = exit_.code or 0
print(json.dumps([[m for m in {HEAVY!r} if m in sys.modules], code]))
"""


def heavy_imports(*args: str) -> tuple[list[str], int, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    found, code = json.loads(proc.stdout.strip().splitlines()[-1])
    return found, code, proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [("--cfg", "job", "experiment=fig1_mnist"), ("--help",)])
def test_the_runner_answers_without_torch(args):
    found, code, out = heavy_imports(*args)
    assert code == 0, out
    assert found == [], f"{' '.join(args)} imported {found}"
    assert ("optim:" in out) if "--cfg" in args else ("Powered by Hydra" in out)


def test_a_job_that_starts_imports_torch(tmp_path):
    """The probe sees torch once the job starts: here a run the session refuses at validation."""
    found, code, out = heavy_imports("data=synthetic", "trainer.max_steps=0", f"hydra.run.dir={tmp_path}")
    assert code == 2 and "trainer.max_steps" in out, out
    assert "torch" in found
