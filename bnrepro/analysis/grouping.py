"""Which runs a plot or table may average as seeds: runs whose configs differ in the seed alone.

Every plot and table averages its runs over seeds within a group: the variant, the experiment and the
config keys the script reads (`load_metrics(sweep, keys)`: a script reads a key to group or label by it).
A sweep that also varied something else (`optim.lr=0.5,1e4`) would be drawn as two seeds of one curve,
so `results.load_metrics` and `results.load_runs` refuse it, every script alike, with one paragraph
naming the keys that differ and how to select (`--where KEY=VALUE`, or the key as a sweep of its own).
Refusing, not splitting, for plots and tables alike: a figure's panels and a table's columns are laid out
per variant, and a split they were not drawn for would be as misleading as the average.
"""
from __future__ import annotations

from collections import defaultdict

# Keys that decide how a run was executed, not what it measures: runs differing only in these are seeds
# of one condition (a sweep resumed at another thread count, with the data already downloaded, ...).
NOT_A_CONDITION = frozenset({
    "seed", "seeds", "data.root", "data.download", "data.verify_checksums", "trainer.threads",
    "trainer.device", "trainer.progress", "trainer.log_every", "trainer.checkpoint_every",
    "trainer.checkpoint_keep", "trainer.resume", "trainer.eval_batch_size", "trainer.save_predictions",
})


class MixedRuns(ValueError):
    """Runs of one group whose configs differ in more than the seed."""


def flatten(cfg: dict, prefix: str = "") -> dict[str, object]:
    """A nested config as {dotted key: value}; lists as tuples, so that values compare and hash."""
    flat: dict[str, object] = {}
    for key, value in (cfg or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def differing(configs: list[dict[str, object]]) -> dict[str, list[object]]:
    """The keys (NOT_A_CONDITION aside) whose values are not the same in every flattened config, each
    with its values in first-seen order; a key absent from some configs counts as the value None."""
    keys = sorted({k for c in configs for k in c} - NOT_A_CONDITION)
    out = {}
    for key in keys:
        values = list(dict.fromkeys(c.get(key) for c in configs))
        if len(values) > 1:
            out[key] = values
    return out


def check(sweep: object, runs: list[tuple[tuple, dict[str, object]]], by: tuple[str, ...]) -> None:
    """Raise MixedRuns where runs of one group (`by`'s values, the first item of each pair) have configs
    (the second, flattened) that differ in more than the seed; the message names every such key."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for group, cfg in runs:
        groups[group].append(cfg)
    mixed = {g: d for g, cfgs in groups.items() if (d := differing(cfgs))}
    if not mixed:
        return
    keys = sorted({k for d in mixed.values() for k in d})
    named = "; ".join(
        ", ".join(f"{k}={v}" for k, v in zip(by, g) if v is not None) + ": "
        + ", ".join(f"{k} in {{{', '.join(map(str, vs))}}}" for k, vs in d.items())
        for g, d in list(mixed.items())[:3]) + ("; ..." if len(mixed) > 3 else "")
    key, values = next(iter(next(iter(mixed.values())).items()))
    raise MixedRuns(
        f"{sweep}: runs that differ in more than the seed would be averaged as seeds of one line ({named}). "
        f"Select one condition with --where KEY=VALUE (repeatable), e.g. --where {key}={values[0]}, or run "
        f"{', '.join(keys)} as sweeps of their own (hydra.sweep.dir).")


def matches(flat: dict[str, object], where: dict[str, str]) -> bool:
    """Whether a flattened config has every `where` key at its value (compared as text, and as numbers
    where both read as numbers: `optim.lr=1e4` selects 10000.0)."""
    for key, wanted in where.items():
        value = flat.get(key)
        if str(value) == wanted:
            continue
        try:
            if float(value) == float(wanted):  # type: ignore[arg-type]
                continue
        except (TypeError, ValueError):
            pass
        return False
    return True
