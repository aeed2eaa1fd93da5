"""TensorBoard views written from what runs left on disk (metrics.csv, config.yaml, summary.json),
never from a live run: a sweep's per-variant runs and table, and whole committed sweeps.

- `refresh_views(SWEEP)`, after every job of a sweep (bnrepro.training.session.main) and for a
  replayed sweep: one run per variant, `SWEEP/by_variant/<variant>/`, holding the mean over its
  seeds of every chart's tags (`seed_mean/...`) and, for accuracy, the seeds' range
  (`seed_min/...`, `seed_max/...`), with a custom-scalars category of its own in which each margin
  chart has one band per variant, coloured by variant and named in the run list. Diverged and failed
  runs are left out of the means (their exploding probe values would stretch every axis; the
  count left out is in the run's Text tab). And the sweep's own HParams table, in an event file at
  SWEEP itself (run `.`; the only table in a sweep, since TensorBoard takes the first it finds, in
  no set order): variant, seed and only the keys that differ between its runs, whenever one was
  added.
- `replay_run(RUN)`: a run's events rebuilt from its files, as the live run writes them (its
  scalars at their real times, its layout, HParams session and end status, its summary.json as
  text), for the committed sweeps (`results/<sweep>/rundata.tar.xz` holds no event files).
- `figures(SWEEP, PNGS)`: the figures in the Images tab (run `figures`), dated when they were drawn.

Everything written here is rewritten whole on the next call: the files are recognised by their
suffix (`.view`, `.replay`) and no other event file is touched.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
from torch.utils.tensorboard import SummaryWriter

from bnrepro import METRICS_FILE
from bnrepro.analysis.results import find_runs, load_yaml, read_metrics, read_summary
from bnrepro.tracking.hparams import NEVER, curated, differing, session_end_summary, session_start_summary, sweep_experiment
from bnrepro.tracking.logger import HPARAM_METRICS, VAL_METRICS, flatten

VIEWS = "by_variant"  # SWEEP/by_variant/<variant>/: the per-variant runs
VIEW_SUFFIX, REPLAY_SUFFIX = ".view", ".replay"
MEAN, LOW, HIGH = "seed_mean/", "seed_min/", "seed_max/"
PROBE = re.compile(r"^probe/(?P<layer>[^/]+)/(?P<kind>(?:norm_)?(?:unit|all))_p(?P<q>[0-9.]+)$")
KINDS = {"unit": "typical unit", "all": "whole layer", "norm_unit": "norm output, typical unit",
         "norm_all": "norm output, whole layer"}


def clear(directory: Path, suffix: str) -> None:
    for path in directory.glob(f"events.out.tfevents.*{suffix}"):
        path.unlink()


def writer(directory: Path, suffix: str) -> SummaryWriter:
    directory.mkdir(parents=True, exist_ok=True)
    clear(directory, suffix)
    return SummaryWriter(log_dir=str(directory), filename_suffix=suffix)


def family(model: str | None) -> tuple[str, str]:
    """The category and accuracy chart title a run of `model` has (training/loop.py's `layout`)."""
    if model == "mlp":
        return "Fig. 1: MLP", "Fig. 1(a): test accuracy"
    return f"Inception ({model})", "test accuracy"


def probe_charts(tags: Iterable[str]) -> dict[str, list]:
    """The percentile charts of a run's probe tags, titled as the live run titles them
    (tracking/probes.py's `ActivationProbe.charts`), layers in the order their tags first appear."""
    layers: dict[str, dict[str, list[float]]] = {}
    for tag in tags:
        if m := PROBE.match(tag):
            layers.setdefault(m["layer"], {}).setdefault(m["kind"], []).append(float(m["q"]))
    figure = bool(layers) and all(name.startswith("layer") for name in layers)
    last = list(layers)[-1] if layers else None
    out: dict[str, list] = {}
    for name, kinds in layers.items():
        where = f"Fig. 1(b, c): {name}{', last hidden' if name == last else ''}" if figure else name
        for kind, words in KINDS.items():
            if kind not in kinds:
                continue
            tags_ = [f"probe/{name}/{kind}_p{q:g}" for q in sorted(kinds[kind])]
            out[f"{where}: {words}"] = (["Margin", [tags_[len(tags_) // 2], tags_[0], tags_[-1]]] if len(tags_) >= 3
                                        else ["Multiline", tags_])
    return out


def run_layout(model: str | None, tags: Iterable[str]) -> dict[str, dict[str, list]]:
    category, accuracy = family(model)
    return {category: {accuracy: ["Multiline", ["test/accuracy"]], **probe_charts(list(tags))}}


def variant_layout(model: str | None, tags: Iterable[str]) -> dict[str, dict[str, list]]:
    """`run_layout` over the per-variant runs' tags: accuracy as the seeds' mean within their range,
    each percentile band as the seeds' mean band."""
    category, accuracy = family(model)
    charts: dict[str, list] = {f"{accuracy}, mean and range of seeds": [
        "Margin", [f"{MEAN}test/accuracy", f"{LOW}test/accuracy", f"{HIGH}test/accuracy"]]}
    for title, (kind, series) in probe_charts(list(tags)).items():
        charts[title] = [kind, [MEAN + t for t in series]]
    return {f"{category}, per variant (mean of seeds)": charts}


def wall_times(steps: pd.Series, summary: Mapping[str, Any]) -> pd.Series:
    """Each step's wall time, spread evenly between the run's start and end (summary.json); the
    time the replay runs where the run did not record them."""
    start, end = summary.get("started_at"), summary.get("ended_at")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return pd.Series(time.time(), index=steps.index)
    last = max(float(steps.max()), 1.0)
    return start + (end - start) * steps.astype(float) / last


def read_config(run_dir: Path) -> dict[str, Any]:
    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if path.exists():
            return load_yaml(path.read_text()) or {}
    return {}


def shown(cfg: Mapping[str, Any], extra: Iterable[str] = ()) -> dict[str, Any]:
    """A run's curated hyperparameters (tracking/hparams.py), as the live run shows them, with the
    `extra` keys (those that differ in its sweep) first."""
    return curated(flatten(cfg), extra) if cfg else {}


def differing_keys(cfgs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The keys of the whole config whose values differ between `cfgs` (bn.population in a study of
    it, not only the curated few), less those that only say where or how a run is carried out."""
    return [k for k in differing([flatten(c) for c in cfgs if c], ()) if k not in NEVER and k != "seed"]


def drift_tags(cfg: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The drift statistics a run shows in HParams: tag -> (drift key, statistic), as
    training/session.py's `drift_metrics` (the MLP's last hidden layer, with probes)."""
    model, probe = cfg.get("model") or {}, cfg.get("probe") or {}
    if model.get("name") != "mlp" or not (probe.get("every") or 0) > 0:
        return {}
    layer = f"layer{model.get('depth')}"
    return {f"drift/{layer}/{kind}_{stat}": (f"{layer}/{kind}", stat)
            for kind in ("unit", "all") for stat in ("rel_movement", "spread_ratio")}


def metric_tags(metrics: Iterable[str], cfgs: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    present = set(metrics)
    drift = dict.fromkeys(t for cfg in cfgs for t in drift_tags(cfg))
    return [t for t in (*HPARAM_METRICS, *VAL_METRICS) if t in present] + list(drift)


def replay_run(run_dir: Path, extra: Iterable[str] = ()) -> None:
    """`run_dir`'s events, from its files (module docstring); `extra`: the keys that differ in its
    sweep (`differing_keys`), in its session beside the curated ones."""
    frame = read_metrics(run_dir / METRICS_FILE)
    if frame is None:
        return
    cfg, summary = read_config(run_dir), read_summary(run_dir)
    frame["tag"] = frame.split + "/" + frame.name
    frame["wall"] = wall_times(frame.step, summary)
    tb = writer(run_dir, REPLAY_SUFFIX)
    try:
        tb.add_custom_scalars(run_layout((cfg.get("model") or {}).get("name"), frame.tag.unique()))
        # No table of its own, as a sweep's live run (tracking/logger.py): the sweep's (refresh_views).
        tb.file_writer.add_summary(session_start_summary(shown(cfg, extra)), 0, float(frame.wall.min()))
        for tag, step, value, wall in zip(frame.tag, frame.step, frame.value, frame.wall):
            tb.add_scalar(tag, float(value), int(step), walltime=float(wall))
        last_step, last_wall = int(frame.step.max()), float(frame.wall.max())
        drift = summary.get("drift") or {}
        for tag, (layer, stat) in drift_tags(cfg).items():
            if isinstance((value := (drift.get(layer) or {}).get(stat)), (int, float)):
                tb.add_scalar(tag, float(value), last_step, walltime=last_wall)
        if summary:
            tb.add_text("summary.json", "```json\n" + json.dumps(summary, indent=2, default=str) + "\n```",
                        last_step, walltime=last_wall)
        if (end := session_end_summary(str(summary.get("status")))) is not None:
            tb.file_writer.add_summary(end, last_step, last_wall)
    finally:
        tb.close()


def sweep_keys(sweep_dir: Path, cfg: Mapping[str, Any]) -> list[str]:
    """The keys that differ between a run about to start (`cfg`, its plain config) and the runs already
    in its sweep: what its own table lists besides variant and seed (a run added to an older sweep
    with another rate shows the rate)."""
    cfgs = [read_config(d) for d in find_runs(sweep_dir) if VIEWS not in d.relative_to(sweep_dir).parts]
    extra = differing_keys([*cfgs, cfg])
    return [k for k in differing([*(shown(c, extra) for c in cfgs), shown(cfg, extra)]) if k in shown(cfg, extra)]


def _status(summary: Mapping[str, Any], frame: pd.DataFrame) -> str:
    """A run's status; one that logged `diverged` before writing its summary counts as diverged."""
    if ((frame.name == "diverged") & (frame.value == 1)).any():
        return "diverged"
    return str(summary.get("status", "running"))


def refresh_views(sweep_dir: str | Path) -> list[Path]:
    """The per-variant runs and the sweep's table (module docstring); returns the directories
    written. Runs still going are averaged as far as they got."""
    root = Path(sweep_dir)
    runs = [d for d in find_runs(root) if VIEWS not in d.relative_to(root).parts]
    records = []
    for run_dir in runs:
        frame = read_metrics(run_dir / METRICS_FILE)
        if frame is None:
            continue
        cfg = read_config(run_dir)
        records.append([run_dir, frame, cfg, {}, _status(read_summary(run_dir), frame)])
    if not records:
        return []
    extra = differing_keys([r[2] for r in records])
    for r in records:
        r[3] = shown(r[2], extra)
    columns = differing([r[3] for r in records])
    # A group is named by the keys that tell it apart, less those its variant implies (bn.placement).
    by_variant: dict[Any, set] = {}
    for r in records:
        for k in columns:
            by_variant.setdefault((r[3].get("variant"), k), set()).add(repr(r[3].get(k)))
    keys = [k for k in columns if k == "variant" or (k != "seed" and any(
        len(v) > 1 for (_, key), v in by_variant.items() if key == k))]

    def name(hparams: Mapping[str, Any]) -> str:
        return ",".join(f"{k}={hparams.get(k)}" for k in keys if k in hparams) or "all"

    all_tags = set().union(*(set(r[1].split + "/" + r[1].name) for r in records))
    table = writer(root, VIEW_SUFFIX)
    try:
        table.file_writer.add_summary(sweep_experiment([r[3] for r in records], metric_tags(all_tags, [r[2] for r in records])))
    finally:
        table.close()
    written = [root]
    views = root / VIEWS
    for old in views.glob("*") if views.is_dir() else ():
        clear(old, VIEW_SUFFIX)  # a group whose runs went away keeps no stale curve
    groups: dict[str, list] = {}
    for record in records:
        groups.setdefault(name(record[3]), []).append(record)
    for group, members in groups.items():
        written.append(write_view(views / group.replace("/", "_"), members))
    return written


def write_view(out: Path, members: list) -> Path:
    """One per-variant run: the mean over its seeds that did not diverge or fail."""
    kept = [m for m in members if m[4] not in ("diverged", "failed", "damaged")]
    left_out = [f"{m[0].name} ({m[4]})" for m in members if m not in kept]
    tb = writer(out, VIEW_SUFFIX)
    try:
        model = (members[0][2].get("model") or {}).get("name")
        frames = [m[1].assign(tag=m[1].split + "/" + m[1].name, run=i) for i, m in enumerate(kept)]
        frame = pd.concat(frames) if frames else pd.DataFrame(columns=["step", "tag", "value", "run"])
        wanted = frame[frame.tag.isin(["test/accuracy", "val/accuracy", "train/loss"])
                       | frame.tag.str.startswith("probe/")]
        tb.add_custom_scalars(variant_layout(model, frame.tag.unique()))
        stats = wanted.groupby(["tag", "step"]).value.agg(["mean", "min", "max"]).reset_index()
        summary = read_summary(kept[0][0]) if kept else {}
        stats["wall"] = wall_times(stats.step, summary) if len(stats) else []
        for tag, step, mean, low, high, wall in stats.itertuples(index=False):
            tb.add_scalar(MEAN + tag, float(mean), int(step), walltime=float(wall))
            if tag.endswith("accuracy"):
                tb.add_scalar(LOW + tag, float(low), int(step), walltime=float(wall))
                tb.add_scalar(HIGH + tag, float(high), int(step), walltime=float(wall))
        note = (f"Mean of {len(kept)} run(s): " + ", ".join(m[0].name for m in kept)
                + (f". Left out: {', '.join(left_out)}." if left_out else "."))
        tb.add_text("runs", note, 0)
    finally:
        tb.close()
    return out


def figures(sweep_dir: Path, images: Iterable[Path], max_width: int = 1600) -> Path:
    """Each PNG of `images` in the Images tab, in `SWEEP_DIR/figures/` (the run `figures`), tagged
    by its file name and dated by the file's own time. A figure wider than `max_width` pixels is
    scaled down to it: TensorBoard fits an image to its card, and at full width a wide figure
    shrinks to a strip; at its actual size (the tab's "Show actual image size") it is readable."""
    import numpy as np
    from PIL import Image

    out = Path(sweep_dir) / "figures"
    tb = writer(out, REPLAY_SUFFIX)
    try:
        for path in images:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.width > max_width:
                    img = img.resize((max_width, round(img.height * max_width / img.width)), Image.LANCZOS)
                tb.add_image(Path(path).stem, np.asarray(img), 0, walltime=Path(path).stat().st_mtime,
                             dataformats="HWC")
    finally:
        tb.close()
    return out
