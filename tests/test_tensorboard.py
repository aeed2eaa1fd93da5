"""A tiny sweep read back with TensorBoard's own loader: the custom-scalars layout (margin charts),
the HParams entries (curated keys, their types, the swept ones marked and first), the sessions'
end statuses (one session per run), and every scalar of metrics.csv in the events."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from tests.conftest import REPO, SMOKE

SWEEP = [*SMOKE, "trainer.threads=1", "variant=baseline,bn", "seed=0,1"]


def hparams_data(events: EventAccumulator, tag: str) -> plugin_data_pb2.HParamsPluginData:
    data = plugin_data_pb2.HParamsPluginData()
    data.ParseFromString(events.PluginTagToContent(metadata.PLUGIN_NAME)[tag])
    return data


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 variants x 2 seeds through the runner (~8 s), and one run that diverges at once."""
    out = tmp_path_factory.mktemp("tb") / "sweep"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "experiments/train.py", "-m", *SWEEP, f"hydra.sweep.dir={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diverged = out.parent / "diverged"
    from bnrepro.config import compose
    from bnrepro.training.session import run

    (summary,) = run(compose(*SMOKE, "optim.lr=1e10", "model.activation=relu", "variant=baseline"), diverged)
    assert summary["status"] == "diverged"
    return out, diverged


def runs(out):
    """The sweep's own runs (not the per-variant views of bnrepro/tracking/replay.py)."""
    return sorted(p for p in out.iterdir() if p.is_dir() and p.name != "by_variant")


def test_sweep_runs_are_named_deciding_keys_first(sweep):
    out, _ = sweep
    names = [p.name for p in runs(out)]
    assert [n.split(",")[:2] for n in names] == [["variant=baseline", "seed=0"], ["variant=baseline", "seed=1"],
                                                 ["variant=bn", "seed=0"], ["variant=bn", "seed=1"]]
    assert not any("trainer.threads" in n or "trainer.device" in n for n in names)


def test_layout_holds_margin_charts(sweep):
    out, _ = sweep
    events = EventAccumulator(str(runs(out)[0])).Reload()
    layout = layout_pb2.Layout()
    layout.ParseFromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    (category,) = layout.category
    assert category.title == "Fig. 1: MLP"
    charts = {c.title: c for c in category.chart}
    assert list(charts["Fig. 1(a): test accuracy"].multiline.tag) == ["test/accuracy"]
    last = charts["Fig. 1(b, c): layer3, last hidden: typical unit"].margin.series[0]
    assert (last.value, last.lower, last.upper) == ("probe/layer3/unit_p50", "probe/layer3/unit_p15",
                                                    "probe/layer3/unit_p85")
    assert charts["Fig. 1(b, c): layer1: whole layer"].margin.series[0].value == "probe/layer1/all_p50"
    assert len(charts) == 1 + 3 * 2
    assert "probe/layer3/unit_p15" in events.Tags()["scalars"]  # the raw tags stay


def test_hparams_curated_swept_first_and_typed(sweep):
    """Each run: one session with every curated value (no table of its own: the sweep's, below, is
    the one TensorBoard shows); the sweep's table: the swept keys first, typed, seed as text."""
    out, _ = sweep
    table = hparams_data(EventAccumulator(str(out)).Reload(), metadata.EXPERIMENT_TAG).experiment
    infos = list(table.hparam_infos)
    assert [i.name for i in infos[:2]] == ["variant", "seed"] and all(i.differs for i in infos)
    assert {i.name for i in infos[2:]} <= {"bn.placement"} and len(infos) < 20  # only what differs
    # text, so that the table prints seed 0 as `0`, not TensorBoard's `0.0000`
    assert sorted(v.string_value for v in infos[1].domain_discrete.values) == ["0", "1"]
    metrics = [m.name.tag for m in table.metric_infos]
    assert {"test/accuracy", "test/best_accuracy", "drift/layer3/unit_spread_ratio"} <= set(metrics)
    for run in runs(out):
        events = EventAccumulator(str(run)).Reload()
        tags = events.PluginTagToContent(metadata.PLUGIN_NAME)
        assert set(tags) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
        start = hparams_data(events, metadata.SESSION_START_INFO_TAG).session_start_info.hparams
        assert {i.name for i in infos} < set(start) and len(start) < 20  # every curated value, for any column
        assert start["trainer.max_steps"].string_value == "20"
        assert start["bn.placement"].string_value != "none" or "bn.norm" not in start  # no norm, no bn.norm
        assert not {"data.root", "trainer.device", "trainer.progress", "trainer.threads", "seeds"} & set(start)
        assert not any(v.string_value in ("None", "") and v.WhichOneof("kind") == "string_value" for v in start.values())
        cfg_lr = start["optim.lr"].number_value * start["optim.lr_scale"].number_value
        assert start["optim.lr_effective"].number_value == pytest.approx(cfg_lr)
        assert start["variant"].WhichOneof("kind") == "string_value" and start["optim.lr"].WhichOneof("kind") == "number_value"
        assert set(metrics) <= set(events.Tags()["scalars"])  # each metric column has its values


def test_one_session_per_run_with_its_true_end(sweep):
    out, diverged = sweep
    for run, status in [*((r, api_pb2.STATUS_SUCCESS) for r in runs(out)), (diverged, api_pb2.STATUS_FAILURE)]:
        assert [p for p in run.iterdir() if p.is_dir() and p.name not in (".hydra", "checkpoints")] == []
        events = EventAccumulator(str(run)).Reload()
        assert hparams_data(events, metadata.SESSION_END_INFO_TAG).session_end_info.status == status
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        texts = events.Tags()["tensors"]
        assert "summary.json/text_summary" in texts and "provenance.json/text_summary" in texts


def test_session_end_follows_the_summary_status(tmp_path):
    from bnrepro.tracking.logger import RunLogger

    for status, expected in [("completed", api_pb2.STATUS_SUCCESS), ("failed", api_pb2.STATUS_FAILURE)]:
        (tmp_path / status).mkdir()
        with RunLogger(tmp_path / status, {"variant": "bn", "flag": True}, 10, "none") as log:
            log.end(status)
        events = EventAccumulator(str(tmp_path / status)).Reload()
        assert hparams_data(events, metadata.SESSION_END_INFO_TAG).session_end_info.status == expected
        start = hparams_data(events, metadata.SESSION_START_INFO_TAG).session_start_info.hparams
        assert start["variant"].string_value == "bn"
    (tmp_path / "stopped").mkdir()
    with pytest.raises(KeyboardInterrupt), RunLogger(tmp_path / "stopped", {}, 10, "none"):
        raise KeyboardInterrupt  # interrupted: no end (a resumed run records how it ended)
    events = EventAccumulator(str(tmp_path / "stopped")).Reload()
    assert metadata.SESSION_END_INFO_TAG not in events.PluginTagToContent(metadata.PLUGIN_NAME)


def test_every_metrics_point_is_in_the_events(sweep):
    out, diverged = sweep
    for run in [*runs(out), diverged]:
        metrics = pd.read_csv(run / "metrics.csv")
        events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
        for (split, name), rows in metrics.groupby(["split", "name"]):
            points = events.Scalars(f"{split}/{name}")
            assert [p.step for p in points] == rows.step.tolist()
            assert [p.value for p in points] == pytest.approx(rows.value.tolist(), rel=1e-6, nan_ok=True)
        assert json.loads((run / "summary.json").read_text())["status"] in ("completed", "diverged")


def test_plot_scripts_put_their_figures_in_the_images_tab(tmp_path):
    """`--tensorboard`: the figure a plot script writes also lands in TensorBoard's Images tab."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bnrepro.analysis.plots import plt, save, to_tensorboard

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    (png,) = save(fig, tmp_path / "out" / "fig9.png")
    events = EventAccumulator(str(to_tensorboard(tmp_path / "sweep", [png]))).Reload()
    assert events.Tags()["images"] == ["fig9"]
    (image,) = events.Images("fig9")
    assert image.encoded_image_string == png.read_bytes() and image.width > 0 and image.height > 0
    assert image.wall_time == pytest.approx(png.stat().st_mtime)  # a real date, not 1 January 1970


def test_a_single_run_has_its_own_table(tmp_path):
    """Outside a sweep a run's table lists every curated key, with val/ metrics where there is a split."""
    from bnrepro.config import compose
    from bnrepro.training.session import run

    run(compose(*[o for o in SMOKE if o != "data.val_size=0"], "data.val_size=200"), tmp_path)
    events = EventAccumulator(str(tmp_path)).Reload()
    table = hparams_data(events, metadata.EXPERIMENT_TAG).experiment
    assert {"variant", "seed", "optim.lr", "trainer.max_steps"} <= {i.name for i in table.hparam_infos}
    metrics = {m.name.tag for m in table.metric_infos}
    assert {"val/accuracy", "val/best_accuracy", "val/loss"} <= metrics <= set(events.Tags()["scalars"])


def test_per_variant_runs_average_the_seeds(sweep):
    """by_variant/<variant>/: the seeds' mean (and range for accuracy), with margin charts of their own,
    so that each band is one variant's colour."""
    out, _ = sweep
    views = sorted(p.name for p in (out / "by_variant").iterdir())
    assert views == ["variant=baseline", "variant=bn"]
    for view in views:
        events = EventAccumulator(str(out / "by_variant" / view), size_guidance={"scalars": 0}).Reload()
        layout = layout_pb2.Layout()
        layout.ParseFromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
        (category,) = layout.category
        assert category.title == "Fig. 1: MLP, per variant (mean of seeds)"
        charts = {c.title: c for c in category.chart}
        last = charts["Fig. 1(b, c): layer3, last hidden: typical unit"].margin.series[0]
        assert (last.value, last.lower, last.upper) == ("seed_mean/probe/layer3/unit_p50", "seed_mean/probe/layer3/unit_p15",
                                                        "seed_mean/probe/layer3/unit_p85")
        seeds = [pd.read_csv(r / "metrics.csv") for r in runs(out) if r.name.startswith(view + ",")]
        assert len(seeds) == 2
        for tag in ("probe/layer3/unit_p50", "test/accuracy"):
            split, name = tag.split("/", 1)
            values = pd.concat(s[(s.split == split) & (s.name == name)] for s in seeds).groupby("step").value
            points = events.Scalars("seed_mean/" + tag)
            assert [p.step for p in points] == list(values.mean().index)
            assert [p.value for p in points] == pytest.approx(values.mean().tolist(), rel=1e-5)
        assert [p.value for p in events.Scalars("seed_max/test/accuracy")] == pytest.approx(
            values.max().tolist(), rel=1e-5)
        assert not any(p.is_file() for p in (out / "by_variant").rglob("*") if not p.name.startswith("events."))


def test_diverged_runs_are_left_out_of_the_means(tmp_path):
    """A diverged seed's probes (which explode before the loss does) stay out of its variant's band."""
    from bnrepro.config import compose
    from bnrepro.tracking.replay import refresh_views
    from bnrepro.training.session import run

    for seed in (0, 1):
        run(compose(*SMOKE, "variant=baseline", f"seed={seed}"), tmp_path / f"seed={seed}")
    # seed 1 as a run that diverged at its last step (a real one differs in its rate, so in its group)
    summary = json.loads((tmp_path / "seed=1" / "summary.json").read_text())
    (tmp_path / "seed=1" / "summary.json").write_text(json.dumps({**summary, "status": "diverged"}))
    refresh_views(tmp_path)
    (view,) = (tmp_path / "by_variant").iterdir()
    events = EventAccumulator(str(view), size_guidance={"scalars": 0}).Reload()
    kept = pd.read_csv(tmp_path / "seed=0" / "metrics.csv")
    kept = kept[(kept.split == "probe") & (kept.name == "layer1/all_p50")]
    assert [p.value for p in events.Scalars("seed_mean/probe/layer1/all_p50")] == pytest.approx(kept.value.tolist(), rel=1e-5)
    text = events.Tensors("runs/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "Left out: seed=1 (diverged)" in text


def test_committed_runs_replay_into_tensorboard(sweep, tmp_path):
    """scripts/tensorboard_runs.py's steps on a run's files alone (as rundata.tar.xz holds them): the
    same scalars, layout and session end as the live run, at the run's own times; figures dated."""
    import shutil

    from bnrepro.tracking.replay import figures, refresh_views, replay_run

    out, _ = sweep
    live = runs(out)[0]
    copy = tmp_path / "sweep" / live.name
    copy.mkdir(parents=True)
    for name in ("metrics.csv", "config.yaml", "summary.json"):
        shutil.copy(live / name, copy / name)
    replay_run(copy)
    refresh_views(tmp_path / "sweep")
    a = EventAccumulator(str(live), size_guidance={"scalars": 0}).Reload()
    b = EventAccumulator(str(copy), size_guidance={"scalars": 0}).Reload()
    metrics = pd.read_csv(live / "metrics.csv")
    for tag in {f"{s}/{n}" for s, n in zip(metrics.split, metrics.name)}:
        assert [(p.step, p.value) for p in a.Scalars(tag)] == [(p.step, p.value) for p in b.Scalars(tag)]
    summary = json.loads((live / "summary.json").read_text())
    walls = [p.wall_time for p in b.Scalars("test/accuracy")]
    assert summary["started_at"] <= walls[0] <= walls[-1] <= summary["ended_at"] + 1e-3
    assert a.Tensors("custom_scalars__config__")[0].tensor_proto == b.Tensors("custom_scalars__config__")[0].tensor_proto
    assert hparams_data(b, metadata.SESSION_END_INFO_TAG).session_end_info.status == api_pb2.STATUS_SUCCESS
    assert hparams_data(EventAccumulator(str(tmp_path / "sweep")).Reload(), metadata.EXPERIMENT_TAG).experiment.hparam_infos

    from bnrepro.analysis.plots import plt, save

    fig = plt.figure(figsize=(17, 3.8))  # as wide as Figure 1's three panels
    (png,) = save(fig, tmp_path / "fig1.png")
    (image,) = EventAccumulator(str(figures(tmp_path / "sweep", [png]))).Reload().Images("fig1")
    assert image.width == 1600 and image.wall_time == pytest.approx(png.stat().st_mtime)


def test_two_processes_refresh_one_sweeps_views_one_after_the_other(sweep):
    """make fig2_v2's two chains write one sweep: a refresh waits while another holds SWEEP/.views.lock, so
    neither deletes the other's view files mid-write (seen once: 'Could not refresh ... FileNotFoundError')."""
    import fcntl
    import threading
    import time

    from bnrepro.training.session import refresh_sweep

    out, _ = sweep
    refresh_sweep(out)  # imports done, so that the timing below measures the lock, not them
    (out / "summary.csv").unlink()
    with open(out / ".views.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=refresh_sweep, args=(out,))
        worker.start()
        time.sleep(1.5)  # a refresh of this sweep takes ~0.3 s
        assert worker.is_alive() and not (out / "summary.csv").exists()  # waiting, not writing beside the holder
    worker.join(timeout=60)
    assert not worker.is_alive() and (out / "summary.csv").is_file()
