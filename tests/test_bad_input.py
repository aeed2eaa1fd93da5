"""Bad inputs and faults, tried as a skeptical user would: every row asserts its outcome.

Outcomes (issue 12): a clear error (in-process: a BnreproError whose one paragraph names the key
or path, raised before any data is read; from the command line: exit status 2, no traceback),
a correct acceptance (the run does what was asked), or an exact resume. Each section below is a
table of cases; add a row for every new bad input the suite learns to catch.
"""
import subprocess
import sys

import pytest

from bnrepro.errors import BnreproError
from tests.conftest import REPO, SMOKE, run_one


def cli(args: list[str], cwd, timeout: int = 120) -> subprocess.CompletedProcess:
    """experiments/train.py as a user runs it."""
    return subprocess.run([sys.executable, str(REPO / "experiments" / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def clear_error(proc: subprocess.CompletedProcess, *names: str) -> None:
    """Exit status 2, no traceback, and the message names every one of `names`."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    for name in names:
        assert name in out, (name, out[-2000:])


def refused_in_process(make_cfg, tmp_path, overrides: list[str], match: str) -> None:
    """The run refuses `overrides` with a BnreproError matching `match`."""
    with pytest.raises(BnreproError, match=match):
        run_one(make_cfg(*SMOKE, *overrides), tmp_path / "run")


# --- the config: types, ranges, unknown keys (before any data is read) -------------------------
CONFIG_CASES: list = []

# --- the data: missing, partial, corrupt, non-finite, out-of-range labels ------------------------
DATA_CASES: list = []

# --- faults: run directories, signals, disks, damaged records, sweeps ---------------------------
# Each row is a function (make_cfg, tmp_path, capfd) that runs the fault and asserts its outcome.
# Subprocess rows only where a process boundary is the point: a lock held by another process,
# the runner's exit status, Hydra's files, a file-size limit, a read-only mount.
import json  # noqa: E402 - this section's own imports, kept inside it
import os  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bnrepro.training.checkpoint import checkpoints  # noqa: E402

FAST = [*SMOKE, "trainer.threads=1", "trainer.checkpoint_every=10"]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` (.hydra/ and checkpoints/ included): its bytes and mtime."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def train_cli(out: Path, *extra: str, cwd=REPO, prefix: str = "") -> subprocess.CompletedProcess:
    """experiments/train.py with FAST into `out`; `prefix`: a shell command line around it
    (`ulimit -f 100;`, a mount namespace)."""
    args = " ".join(shlex.quote(a) for a in [sys.executable, str(REPO / "experiments" / "train.py"), *FAST, *extra,
                                              f"hydra.run.dir={out}"])
    return subprocess.run(["bash", "-c", prefix + args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def second_writer_is_refused(make_cfg, tmp_path, capfd):
    """Another process holds the run directory: this run is refused, naming it, and writes nothing."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bnrepro.training.rundir import lock\n"
                               "with lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(BnreproError, match=rf"in use by another run \(pid {holder.pid} on host"):
            run_one(make_cfg(*FAST), out)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the holder's; nothing of ours
    finally:
        holder.kill()
        holder.wait()
    # Killed without a word: the kernel dropped its lock, its file is stale and taken over.
    assert run_one(make_cfg(*FAST), out)["status"] == "completed"
    assert f"left by a run that is no longer running (pid {holder.pid}" in capfd.readouterr().err
    assert not (out / ".lock").exists()  # released at the end


def stack_member_in_use_is_refused(make_cfg, tmp_path, capfd):
    """A single run writing `seed=1/` blocks a stack whose member that is (flock is per open file:
    a second lock in this process conflicts like another process's)."""
    from bnrepro.training.rundir import lock
    from bnrepro.training.session import run

    with lock(tmp_path / "stack" / "seed=1"):
        with pytest.raises(BnreproError, match=r"seed=1 is in use by another run"):
            run(make_cfg(*FAST, "seeds=[0,1]"), tmp_path / "stack")
    assert not (tmp_path / "stack" / ".lock").exists() and not (tmp_path / "stack" / "seed=0" / ".lock").exists()


def lock_released_however_the_run_ends(make_cfg, tmp_path, capfd):
    import bnrepro.training.session as session

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    original, session.fit = session.fit, interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            run_one(make_cfg(*FAST), tmp_path)
    finally:
        session.fit = original
    assert not (tmp_path / ".lock").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "interrupted"
    assert run_one(make_cfg(*FAST), tmp_path)["status"] == "completed"  # nothing stale in the way


def refused_rerun_leaves_every_file_as_it_was(make_cfg, tmp_path, capfd):
    """Through the runner: Hydra's .hydra/ included (written only once the refusals pass)."""
    out = tmp_path / "run"
    first = train_cli(out)
    assert first.returncode == 0, first.stderr[-2000:]
    assert {p.name for p in (out / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert not (out / "train.log").exists()  # hydra/job_logging=stdout: the suite logs nothing to a file
    before = snapshot(out)
    time.sleep(0.01)
    clear_error(train_cli(out, "optim.lr=0.3"), str(out), "different config")
    assert snapshot(out) == before


def refused_in_process_writes_nothing(make_cfg, tmp_path, capfd):
    """The session's own checks come first: a changed config, a checkpoint of another config."""
    run_one(make_cfg(*FAST), tmp_path)
    before = snapshot(tmp_path)
    for change in ("optim.lr=0.3", "seed=1"):
        with pytest.raises(BnreproError, match="different config"):
            run_one(make_cfg(*FAST, change), tmp_path)
    (tmp_path / "summary.json").rename(tmp_path / "kept")
    before = {k if k != "summary.json" else "kept": v for k, v in before.items()}
    with pytest.raises(BnreproError, match="optim.lr"):  # the checkpoint's config differs
        run_one(make_cfg(*FAST, "optim.lr=0.3"), tmp_path)
    assert snapshot(tmp_path) == before


def uncreatable_output_dir_hydra(make_cfg, tmp_path, capfd):
    """Hydra makes the run directory before the job: the runner's callback tries first and exits 2
    with the paragraph (configs/train.yaml's hydra.callbacks). Root ignores permission bits, so the
    path lies under a regular file, which no one can create."""
    from omegaconf import OmegaConf

    from bnrepro.config import OutputDirCheck

    (tmp_path / "file.txt").write_text("")
    out = tmp_path / "file.txt" / "run"
    with pytest.raises(SystemExit) as exit_:
        OutputDirCheck().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(out)}}}))
    assert exit_.value.code == 2
    err = capfd.readouterr().err
    assert err.startswith(f"Error: Could not write {out}: a part of the path is a file") and "Traceback" not in err


def unwritable_output_dir_in_process(make_cfg, tmp_path, capfd):
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(BnreproError, match=r"Could not write .*file\.txt/run.*not a directory"):
        run_one(make_cfg(*FAST), tmp_path / "file.txt" / "run")


def read_only_run_dir(make_cfg, tmp_path, capfd):
    """A read-only bind mount in a private mount namespace (root may make one; chmod does not stop root)."""
    out = tmp_path / "ro"
    out.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {out} {out}"], capture_output=True)
    if probe.returncode:
        pytest.skip("no mount namespace here (unshare -m): " + probe.stderr.decode()[-200:])
    proc = train_cli(out, prefix=f"unshare -m sh -c 'mount --bind -o ro {out} {out} && exec \"$0\" \"$@\"' ")
    clear_error(proc, str(out), "read-only")
    assert not any(out.iterdir())


def full_disk_during_checkpoint(make_cfg, tmp_path, capfd):
    """`ulimit -f 100` (KiB): the first checkpoint (~430 KB) fails with EFBIG; SIGXFSZ is ignored."""
    out = tmp_path / "run"
    clear_error(train_cli(out, prefix="ulimit -f 100; "), "checkpoints/step00000010-", "ulimit -f")
    assert not any((out / "checkpoints").iterdir())  # neither a partial checkpoint nor a temporary file
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "ulimit -f" in summary["error"] and "traceback" not in summary


def truncated_summary_in_a_sweep(make_cfg, tmp_path, capfd):
    from bnrepro.analysis.summarize import summarize

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        run_one(make_cfg(*FAST, f"seed={seed}"), sweep / f"seed={seed}")
    damaged = sweep / "seed=1" / "summary.json"
    damaged.write_text(damaged.read_text()[:40])
    frame = summarize(sweep).set_index("run")
    assert frame.status.to_dict() == {"seed=0": "completed", "seed=1": "damaged"}
    assert str(damaged) in frame.loc["seed=1", "error"] and frame.loc["seed=1", "seed"] == 1


def truncated_summary_rerun_resumes(make_cfg, tmp_path, capfd):
    first = run_one(make_cfg(*FAST), tmp_path)
    (tmp_path / "summary.json").write_text('{"status": "comp')
    summary = run_one(make_cfg(*FAST), tmp_path)
    assert "summary.json is damaged" in capfd.readouterr().err
    assert "step00000020-" in summary["resumed_from"] and summary["final"] == first["final"]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def sweep_user_error_without_traceback(make_cfg, tmp_path, capfd):
    """A multirun whose first job is a user error: its paragraph alone, no traceback; the next job runs."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "train.py"), "-m", *FAST,
                           "trainer.batch_size=5000,32", f"hydra.sweep.dir={sweep}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-2000:]
    assert "Error: trainer.batch_size=5000 exceeds" in out
    jobs = {next(k for k in d.name.split(",") if k.startswith("trainer.batch_size")):
            json.loads((d / "summary.json").read_text()) for d in sweep.iterdir() if d.is_dir()}
    bad, good = jobs["trainer.batch_size=5000"], jobs["trainer.batch_size=32"]
    assert bad["status"] == "failed" and "traceback" not in bad and good["status"] == "completed"
    # (A bug keeps its traceback, printed and in summary.json: tests/test_sweep.py.)


def stale_temp_files_are_removed(make_cfg, tmp_path, capfd):
    """Killed mid-write (`.NAME.<pid>.tmp`, bnrepro/files.py): removed at the next start, under the lock."""
    run_one(make_cfg(*FAST, "trainer.max_steps=10"), tmp_path)
    leftovers = [tmp_path / "checkpoints" / ".step00000020-0123456789abcdef.pt.4194999.tmp",
                 tmp_path / ".summary.json.4194999.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    assert run_one(make_cfg(*FAST), tmp_path)["status"] == "completed"
    assert not any(p.exists() for p in leftovers)
    assert "removed 2 temporary file(s)" in capfd.readouterr().err


def only_checkpoint_corrupt_says_so(make_cfg, tmp_path, capfd):
    ref = run_one(make_cfg(*FAST, "trainer.checkpoint_keep=1"), tmp_path)
    ((_, only),) = checkpoints(tmp_path / "checkpoints")
    only.write_bytes(only.read_bytes()[:-100])
    (tmp_path / "summary.json").unlink()  # as if killed after it
    summary = run_one(make_cfg(*FAST, "trainer.checkpoint_keep=1"), tmp_path)
    err = capfd.readouterr().err
    assert "No earlier checkpoint is left: the run starts over from step 0" in err and "Falling back" not in err
    assert "resumed_from" not in summary and summary["final"] == ref["final"]


def shortened_finished_run_is_refused(make_cfg, tmp_path, capfd):
    run_one(make_cfg(*FAST), tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(BnreproError, match=r"went further \(completed at step 20\) than trainer.max_steps=10"):
        run_one(make_cfg(*FAST, "trainer.max_steps=10"), tmp_path)
    assert snapshot(tmp_path) == before  # config.yaml still says 20, as the summary does


def shortened_interrupted_run_is_refused(make_cfg, tmp_path, capfd):
    run_one(make_cfg(*FAST), tmp_path)
    (tmp_path / "summary.json").unlink()  # killed after its last checkpoint (step 20)
    with pytest.raises(BnreproError, match=r"step00000020-.* is of step 20, further than trainer.max_steps=10"):
        run_one(make_cfg(*FAST, "trainer.max_steps=10"), tmp_path)


def stack_parent_is_not_a_job(make_cfg, tmp_path, capfd):
    from bnrepro.analysis.summarize import summarize
    from bnrepro.training.session import run

    stack = tmp_path / "sweep" / "variant=bn"

    def hydra_record():  # what the runner's on_start writes into the stack's own directory
        (stack / ".hydra").mkdir()
        (stack / ".hydra" / "config.yaml").write_text("variant: bn\nseeds:\n- 0\n- 1\n")

    run(make_cfg(*FAST, "seeds=[0,1]"), stack, on_start=hydra_record)
    frame = summarize(tmp_path / "sweep")
    assert frame.run.tolist() == ["variant=bn/seed=0", "variant=bn/seed=1"]
    assert frame.status.tolist() == ["completed", "completed"]


FAULT_CASES: list = [
    pytest.param(second_writer_is_refused, id="lock-second-writer-refused-then-stale-taken-over"),  # subprocess
    pytest.param(stack_member_in_use_is_refused, id="lock-stack-member-in-use"),
    pytest.param(lock_released_however_the_run_ends, id="lock-released-on-interrupt"),
    pytest.param(refused_rerun_leaves_every_file_as_it_was, id="refused-rerun-cli-files-identical"),  # subprocess
    pytest.param(refused_in_process_writes_nothing, id="refused-rerun-session-files-identical"),
    pytest.param(uncreatable_output_dir_hydra, id="uncreatable-output-dir-hydra-callback"),
    pytest.param(unwritable_output_dir_in_process, id="unwritable-output-dir-session"),
    pytest.param(read_only_run_dir, id="read-only-run-dir-cli"),  # subprocess
    pytest.param(full_disk_during_checkpoint, id="file-size-limit-during-checkpoint-cli"),  # subprocess
    pytest.param(truncated_summary_in_a_sweep, id="truncated-summary-summarize-damaged"),
    pytest.param(truncated_summary_rerun_resumes, id="truncated-summary-rerun-resumes"),
    pytest.param(sweep_user_error_without_traceback, id="sweep-user-error-no-traceback"),  # subprocess
    pytest.param(stale_temp_files_are_removed, id="stale-temp-files-removed"),
    pytest.param(only_checkpoint_corrupt_says_so, id="only-checkpoint-corrupt-truthful-message"),
    pytest.param(shortened_finished_run_is_refused, id="shrunk-max-steps-finished-refused"),
    pytest.param(shortened_interrupted_run_is_refused, id="shrunk-max-steps-checkpoint-refused"),
    pytest.param(stack_parent_is_not_a_job, id="summarize-stack-parent-not-a-job"),
]


@pytest.mark.parametrize("case", FAULT_CASES)
def test_fault(case, make_cfg, tmp_path, capfd):
    case(make_cfg, tmp_path, capfd)
