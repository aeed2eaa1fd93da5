"""bnrepro.analysis.rundata (pack/unpack of a sweep's run data) and the committed copies in results/:
the fig2 copy regenerates results/fig2_fashion_mnist/fig3.md and fig3.csv byte for byte."""
import os
import sys
from pathlib import Path

import pytest

from bnrepro.analysis.rundata import FILES, pack, unpack
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import table_fig3  # noqa: E402


def fake_sweep(root: Path) -> dict[str, float]:
    """Two jobs with the four run files (and what must stay out: events, checkpoints, Hydra's record,
    logs), each file with its own mtime; returns relative path -> mtime of the files to pack."""
    times = {}
    for i, job in enumerate(("b/seed=1", "a/seed=0")):
        d = root / job
        (d / ".hydra").mkdir(parents=True)
        (d / "checkpoints").mkdir()
        for j, name in enumerate(FILES):
            (d / name).write_text(f"{job} {name}\n" * (j + 1))
            t = 1_700_000_000.25 + 1000 * i + j
            os.utime(d / name, (t, t))
            times[f"{job}/{name}"] = t
        (d / "events.out.tfevents.1.vm.1.0").write_bytes(b"\0" * 100)
        (d / "checkpoints" / "step00000010-abc.pt").write_bytes(b"\0" * 100)
        (d / ".hydra" / "config.yaml").write_text("x: 1\n")
        (d / "train.log").write_text("log\n")
    return times


def test_pack_is_deterministic_and_round_trips_bytes_and_times(tmp_path):
    times = fake_sweep(tmp_path / "sweep")
    first, second = pack(tmp_path / "sweep", tmp_path / "one.tar.xz"), pack(tmp_path / "sweep", tmp_path / "two.tar.xz")
    assert first.read_bytes() == second.read_bytes()
    unpack(first, tmp_path / "back")
    got = {p.relative_to(tmp_path / "back").as_posix(): p for p in (tmp_path / "back").rglob("*") if p.is_file()}
    assert set(got) == set(times)  # the four run files of each job, nothing else
    for rel, path in got.items():
        assert path.read_bytes() == (tmp_path / "sweep" / rel).read_bytes()
        assert path.stat().st_mtime == pytest.approx(times[rel], abs=1e-6)
    pack(tmp_path / "back", tmp_path / "three.tar.xz")  # the unpacked sweep packs to the same bytes
    assert (tmp_path / "three.tar.xz").read_bytes() == first.read_bytes()


def test_pack_refuses_a_directory_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        pack(tmp_path / "empty", tmp_path / "x.tar.xz")


def test_a_runs_shift_csv_is_packed_and_read_back(tmp_path):
    """bn_shift's shift.csv (scripts/eval_shift.py) travels with the run data; its checkpoint does not."""
    from bnrepro.analysis.bn_statistics import load_shift

    run = tmp_path / "sweep" / "seed=0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.csv").write_text("step,split,name,value\n4,test,accuracy,0.9\n")
    (run / "shift.csv").write_text("corruption,severity,statistics,accuracy,loss,step,seed\n"
                                   "contrast,3,train,0.25,2.0,4,0\ncontrast,3,target,0.75,0.5,4,0\n")
    (run / "checkpoints" / "step00000004-abc.pt").write_bytes(b"\0" * 10)
    unpack(pack(tmp_path / "sweep", tmp_path / "s.tar.xz"), tmp_path / "back")
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in (tmp_path / "back").rglob("*")
                  if p.is_file()) == ["seed=0/metrics.csv", "seed=0/shift.csv"]
    assert load_shift(tmp_path / "back").set_index("statistics").error.to_dict() == {"train": 75.0, "target": 25.0}


def test_committed_fig2_copy_regenerates_fig3_byte_for_byte(tmp_path, monkeypatch):
    committed = REPO / "results" / "fig2_fashion_mnist"
    unpack(committed / "rundata.tar.xz", tmp_path / "outputs" / "results" / "fig2_fashion_mnist")
    monkeypatch.chdir(tmp_path)  # the report prints the sweep's path: the same relative one as `make figures`
    assert table_fig3.main(["outputs/results/fig2_fashion_mnist", "--out", "out"]) == 0
    for name in ("fig3.md", "fig3.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (committed / name).read_bytes(), name


def test_last_layer_probes_keeps_every_row_but_the_shallower_layers_probes():
    from bnrepro.analysis.rundata import last_layer_probes

    csv = ("step,split,name,value\n0,probe,layer1/unit_p15,1.0\n0,probe,layer2/unit_p15,2.0\n"
           "0,probe,layer2/all_p50,2.5\n10,test,accuracy,0.5\n10,probe,layer1/unit_p15,1.1\n10,probe,layer2/unit_p15,2.1\n")
    kept = last_layer_probes(csv.encode()).decode().splitlines()
    assert kept == ["step,split,name,value", "0,probe,layer2/unit_p15,2.0", "0,probe,layer2/all_p50,2.5",
                    "10,test,accuracy,0.5", "10,probe,layer2/unit_p15,2.1"]
    no_probes = b"step,split,name,value\n10,test,accuracy,0.5\n"
    assert last_layer_probes(no_probes) == no_probes
