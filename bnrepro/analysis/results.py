"""Reading what runs wrote: plots and tables use only these functions and never train.

A sweep directory is any directory tree containing run directories; a run directory is one
with a metrics.csv. Runs still in progress (no summary.json yet) are read as far as they got.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import yaml

from bnrepro import METRICS_FILE
from bnrepro.analysis import grouping

RUN_KEYS = ("variant", "seed", "experiment")
STATUSES = ("completed", "diverged", "running", "failed")
BASE = "inception"
# libyaml's parser where PyYAML was built with it: a sweep's configs read ~10x faster (make figures reads hundreds)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# --where KEY=VALUE of the analysis scripts (bnrepro/analysis/cli.py): the runs load_runs/load_metrics read
WHERE: dict[str, str] = {}


def load_yaml(text: str):
    return yaml.load(text, Loader=_LOADER)  # Figure 3: the no-BN network whose best accuracy is the threshold


def find_runs(sweep_dir: str | Path) -> list[Path]:
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory: pass the sweep (or run) directory.")
    return sorted(p.parent for p in root.rglob(METRICS_FILE))


def find_jobs(sweep_dir: str | Path) -> list[Path]:
    """Every job directory, including jobs that failed before logging a metric: a directory with
    a metrics.csv, a summary.json, a config.yaml or Hydra's .hydra/config.yaml."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory: pass the sweep (or run) directory.")
    found = {p.parent for name in (METRICS_FILE, "summary.json", "config.yaml") for p in root.rglob(name)}
    return sorted(d for d in {d.parent if d.name == ".hydra" else d for d in found} if not is_stack_parent(d))


def is_stack_parent(directory: Path) -> bool:
    """The run directory of a stack (`seeds=[...]`): its members' `seed=<s>/` directories are the
    jobs; it holds only their shared checkpoints/ and Hydra's record, which names `seeds`."""
    if any((directory / name).exists() for name in (METRICS_FILE, "summary.json", "config.yaml")):
        return False
    try:
        cfg = load_yaml((directory / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(cfg, dict) and cfg.get("seeds") is not None


def read_summary(run_dir: Path) -> dict[str, object]:
    """A run's summary.json, or {} while it has none (still running, or killed before writing it).
    One that is not valid JSON (torn by a full disk, a bad copy) reads as status `damaged`, with
    the path in its error, so that one damaged job does not stop the table of a whole sweep."""
    path = run_dir / "summary.json"
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        return {"status": "damaged", "error": f"{path} is not valid JSON ({err}); rerun the job's command to "
                                              "resume it from its last checkpoint, which rewrites it."}
    if not isinstance(summary, dict):
        return {"status": "damaged", "error": f"{path} holds a JSON {type(summary).__name__}, not a run's summary "
                                              "(an object); rerun the job's command to resume it, which rewrites it."}
    return summary


def config_value(cfg: dict, key: str):
    """A dotted key ("bn.placement") of a resolved config dict; None where it is absent."""
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def unfinished(sweep_dir: Path) -> tuple[int, int]:
    """(runs not finished, runs) of a sweep directory: a run whose summary.json (read_summary) has no final
    status: still training, interrupted (it resumes from its checkpoint) or damaged. The scorecard and
    scripts/figures.py read no claim or table from a sweep while any is left."""
    runs = find_runs(sweep_dir) if Path(sweep_dir).is_dir() else []
    done = sum(read_summary(run).get("status") in ("completed", "diverged", "failed") for run in runs)
    return len(runs) - done, len(runs)


def read_config(run_dir: Path) -> dict:
    """A run's resolved config (config.yaml), else Hydra's record of it; {} where it has neither."""
    path = next((p for p in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml") if p.exists()), None)
    return (load_yaml(path.read_text()) or {}) if path else {}


def budget(sweep_dir: Path) -> str:
    """How long a sweep's finished runs trained, under the rule they ran by (the scorecard's `budget`): the
    steps, then "a fixed budget", or under trainer.stop_at_plateau how many stopped at their plateau (the
    rest ran to the cap, not at a plateau), and the diverged runs; "" without finished runs."""
    runs = find_runs(sweep_dir) if Path(sweep_dir).is_dir() else []
    ended = [(read_summary(r), r) for r in runs]
    done = [(s, r) for s, r in ended if s.get("status") == "completed" and s.get("steps") is not None]
    diverged = sum(s.get("status") == "diverged" for s, _ in ended)
    if not done:
        return f"{diverged} diverged" if diverged else ""
    steps = sorted({int(s["steps"]) for s, _ in done})
    text = f"{steps[0]:,}" + (f"-{steps[-1]:,}" if len(steps) > 1 else "") + " steps"
    ruled = [s for s, r in done if (read_config(r).get("trainer") or {}).get("stop_at_plateau")]
    if not ruled:
        text += " (a fixed budget)"
    else:
        held = sum(s.get("stopped") == "plateau" for s in ruled)
        text += f", {held} of {len(ruled)} stopped at their plateau" + (
            f" ({len(ruled) - held} at the cap, not at a plateau)" if held < len(ruled) else "")
        if len(ruled) < len(done):
            text += f", {len(done) - len(ruled)} on a fixed budget"
    return text + (f", {diverged} diverged" if diverged else "")


def run_info(run_dir: Path, sweep_dir: Path, keys: tuple[str, ...] = (), cfg: dict | None = None) -> dict[str, object]:
    """Who a run is (from its resolved config, else Hydra's) and how it ended (from its summary, if
    any). `keys`: more dotted config keys to report, each as a column of that name ("bn.placement")."""
    cfg = read_config(run_dir) if cfg is None else cfg
    summary = read_summary(run_dir)
    info = {"run": str(run_dir.relative_to(sweep_dir)) if run_dir != sweep_dir else run_dir.name}
    # A job refused before its config was written has only its summary, which names it too.
    info.update({k: cfg.get(k, summary.get(k)) for k in RUN_KEYS})
    info["data"] = (cfg.get("data") or {}).get("name") or summary.get("data")
    info["status"] = summary.get("status", "running")
    info["divergence"] = summary.get("divergence")  # nonfinite | exploded | dead (training/loop.py), when diverged
    info["stopped"] = summary.get("stopped")  # plateau, when trainer.stop_at_plateau ended it
    info.update({k: config_value(cfg, k) for k in keys})
    return info


def runs_of(sweep_dir: str | Path, keys: tuple[str, ...] = ()) -> list[tuple[Path, dict[str, object]]]:
    """Each run (WHERE-selected) with its run_info; refused (grouping.MixedRuns) where runs of one group
    (variant, experiment and `keys`) differ in more than the seed: they would be averaged as seeds."""
    root = Path(sweep_dir)
    found, configs = [], []
    for run_dir in find_runs(root):
        cfg = read_config(run_dir)
        flat = grouping.flatten(cfg)
        if WHERE and not grouping.matches(flat, WHERE):
            continue
        info = run_info(run_dir, root, keys, cfg)
        found.append((run_dir, info))
        by = ("variant", "experiment", *keys)
        configs.append((tuple(info.get(k) for k in by), flat))
    if WHERE and not found:
        raise FileNotFoundError(f"No run under {root} matches --where "
                                f"{' '.join(f'{k}={v}' for k, v in WHERE.items())}.")
    grouping.check(root, configs, ("variant", "experiment", *keys))
    return found


def load_runs(sweep_dir: str | Path, keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per run: run, variant, seed, experiment, data, status, divergence, stopped, and the config `keys`."""
    return pd.DataFrame([info for _, info in runs_of(sweep_dir, keys)])


def read_metrics(path: Path) -> pd.DataFrame | None:
    """One run's metrics.csv; None, with one paragraph on stderr naming the file, where it cannot be read
    (torn by a crash, a bad copy), so that one damaged run does not stop the figures of a whole sweep."""
    try:
        frame = pd.read_csv(path)
        missing = {"step", "split", "name", "value"} - set(frame.columns)
        if missing:
            raise ValueError(f"no column {', '.join(sorted(missing))}")
        return frame
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        print(f"Skipped {path}: not a readable metrics file ({str(err).strip() or type(err).__name__}). Rerun the "
              "job's command to resume it from its last checkpoint, which rewrites it; the other runs are read.",
              file=sys.stderr)
        return None


def load_metrics(sweep_dir: str | Path, keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every run's metrics in long form (step, split, name, value) plus the run columns."""
    root = Path(sweep_dir)
    frames = []
    for run_dir, info in runs_of(root, keys):
        frame = read_metrics(run_dir / METRICS_FILE)
        if frame is None:
            continue
        for key, value in info.items():
            frame[key] = value
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"No readable runs (no readable {METRICS_FILE}) under {root}.")
    return pd.concat(frames, ignore_index=True)


def curve(metrics: pd.DataFrame, split: str, name: str, by: tuple[str, ...] = ("variant",)) -> pd.DataFrame:
    """Mean, std and count over seeds of one metric, per `by` group (the variant) and step."""
    rows = metrics[(metrics.split == split) & (metrics.name == name)]
    return (rows.groupby([*by, "step"])["value"].agg(["mean", "std", "count"])
            .reset_index().fillna({"std": 0.0}))


def final_values(metrics: pd.DataFrame, split: str, name: str) -> pd.DataFrame:
    """Each run's last value of one metric: the run's metrics rows at its largest step."""
    rows = metrics[(metrics.split == split) & (metrics.name == name)]
    return rows.sort_values("step").groupby("run").tail(1).reset_index(drop=True)


def last_layer(metrics: pd.DataFrame) -> str | None:
    """The deepest probed layer ("layer3" of the MLP, "3b" of the small Inception): the layer of
    the last probe name in the order the probes first wrote them, which is the network's forward
    order (bnrepro/probes.py), whatever the names. The one definition for every plot and report.
    None without probes."""
    names = metrics.name[metrics.split == "probe"].unique()
    return names[-1].split("/")[0] if len(names) else None


def seed_band(values: pd.Series) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of a column of per-run numbers."""
    values = values.dropna()
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)


def quantile_skew(p_lo: pd.Series, p_mid: pd.Series, p_hi: pd.Series) -> pd.Series:
    """Bowley's quantile skewness ((hi - mid) - (mid - lo)) / (hi - lo), in [-1, 1]: 0 for a
    symmetric distribution, 1 when the lower and middle percentiles coincide (a ReLU's spike of
    zeros under half the values). NaN where hi == lo (a constant, e.g. a dead unit)."""
    spread = (p_hi - p_lo).where(lambda d: d > 0)
    return (p_hi + p_lo - 2 * p_mid) / spread


def provenance_lines(sweep_dir: str | Path) -> list[str]:
    """Markdown lines naming the commands, machine and git SHAs behind a sweep's runs."""
    provs = [json.loads((d / "provenance.json").read_text()) for d in find_runs(sweep_dir)
             if (d / "provenance.json").exists()]
    if not provs:
        return []
    p = provs[0]
    shas = sorted({f"{str(q['git_sha'])[:10]}{' (dirty)' if q['git_dirty'] else ''}" for q in provs})
    return ["Commands:", "", *sorted({f"    {q['command']}" for q in provs}), "",
            f"Machine: {p['device_name']} ({p['device']}, {p['cpu_count']} CPUs, {p.get('torch_threads', '?')} "
            f"torch threads), torch {p['torch']}, git {', '.join(shas)}."]


def run_status(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per variant (index) and status (columns STATUSES). A run that logged `diverged` but
    has not written its summary.json yet counts as diverged, not running; an interrupted one (it
    will resume from its checkpoint) counts as running."""
    logged = set(metrics.run[(metrics.name == "diverged") & (metrics.value == 1)])
    status = runs.status.replace({"interrupted": "running"}).mask(runs.run.isin(logged), "diverged")
    return pd.crosstab(runs.variant, status).reindex(columns=list(STATUSES), fill_value=0)


def diverged_at(metrics: pd.DataFrame) -> dict[str, float]:
    """Per diverged run, the step it diverged at: its logged `diverged` row's (bnrepro/training/loop.py),
    not its last evaluation's. The one reading for fig2.png's marks and fig3.md's per-seed rows."""
    rows = metrics[(metrics.name == "diverged") & (metrics.value == 1)]
    return {run: float(step) for run, step in rows.groupby("run").step.min().items()}


def divergence_kinds(runs: pd.DataFrame) -> dict[str, str]:
    """Per variant, how its diverged runs diverged ("dead", "nonfinite", or both joined by '/')."""
    if "divergence" not in runs:
        return {}
    rows = runs[(runs.status == "diverged") & runs.divergence.notna()]
    return {v: "/".join(sorted(set(g.divergence))) for v, g in rows.groupby("variant")}


def is_diverged(counts: pd.Series) -> bool:
    """A variant diverged when some of its runs diverged and none completed or is still running."""
    return bool(counts["diverged"] and not counts["completed"] and not counts["running"])


def threshold_of(acc: pd.DataFrame) -> float:
    """The maximum of Inception's seed-mean accuracy curve (a `results.curve` frame); NaN without it."""
    base = acc[acc.variant == BASE]["mean"]
    return float(base.max()) if base.notna().any() else math.nan
