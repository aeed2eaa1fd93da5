"""What a run shows in TensorBoard's HParams tab, built as the plugin's own protos.

torch's `torch.utils.tensorboard.summary.hparams` writes a session's end status at its start
(so every run reads as a success) and types booleans as numbers; TensorBoard's own
`plugins/hparams/summary.py` needs TensorFlow. The three summaries are built here from
`tensorboard.plugins.hparams` protos instead:
- the experiment: which hyperparameters and metrics the table has. Every run of a sweep writes
  the same one (TensorBoard reads the first it finds), with the swept keys marked as differing,
  so the table opens on them, listed first;
- a session's start (its hyperparameter values), written as the run starts;
- a session's end, written as the run ends, with its true status (`STATUS`). The plugin's
  Status has no "aborted" (UNKNOWN, SUCCESS, FAILURE, RUNNING only), and TensorBoard keeps the
  first end it reads: an interrupted run writes none (the table shows it as unknown), so that the
  run resumed into the same directory records how it really ended.

The keys are a curated few (`curated`): what tells runs apart, not where files live. Integers
(seed, steps, batch size) are written as text: the plugin knows no integer type and prints every
number to five digits (`0.0000` for seed 0). A sweep's own table (`sweep_experiment`, written by
bnrepro/tracking/replay.py beside its runs) lists only variant, seed and the keys whose values
differ between its runs, whenever a run was added.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

# summary.json's status -> the session's end status (interrupted: none, see above).
STATUS = {
    "completed": api_pb2.STATUS_SUCCESS,
    "diverged": api_pb2.STATUS_FAILURE,
    "failed": api_pb2.STATUS_FAILURE,
}

# The keys of the flattened config shown, in this order after the swept ones; absent or empty
# values are left out. optim.lr_effective (lr x lr_scale) is computed.
KEYS = ("variant", "seed", "experiment", "data.name", "model.name", "model.activation", "model.depth",
        "model.width", "model.width_mult", "model.init_std", "model.init", "bn.placement", "bn.norm", "optim.lr",
        "optim.lr_scale", "optim.lr_effective", "optim.momentum", "optim.weight_decay",
        "trainer.max_steps", "trainer.batch_size")
# Keys that only say where or how a run is carried out: never shown, swept or not.
NEVER = ("data.root", "data.download", "data.verify_checksums", "trainer.device", "trainer.progress",
         "trainer.threads", "trainer.checkpoint_every", "trainer.checkpoint_keep", "trainer.resume",
         "seeds")
DISCRETE = ("seed",)  # numbers that name, not measure: a discrete domain


def empty(value: Any) -> bool:
    return value is None or value in ("", "None", "null", "[]")


def curated(flat: Mapping[str, Any], swept: Iterable[str] = ()) -> dict[str, Any]:
    """The hyperparameters a run shows: the swept keys first, then `KEYS`; None and empty values,
    paths, devices and progress settings left out. Stacked members have each their own seed."""
    values = dict(flat)
    if isinstance(values.get("optim.lr"), (int, float)) and isinstance(values.get("optim.lr_scale"), (int, float)):
        values["optim.lr_effective"] = values["optim.lr"] * values["optim.lr_scale"]
    if values.get("model.name") != "mlp":  # the Inceptions have no depth/width/init_std of their own
        for key in ("model.depth", "model.width", "model.init_std"):
            values.pop(key, None)
    else:
        values.pop("model.width_mult", None)
    if values.get("bn.placement") == "none":  # no norm in the network: bn.norm=batch would mislead
        values.pop("bn.norm", None)
    order = [k for k in dict.fromkeys([*swept, *KEYS]) if k not in NEVER]
    return {k: values[k] for k in order if k in values and not empty(values[k])}


def _value(value: Any) -> struct_pb2.Value:
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int):  # text, so that seed 0 reads `0`, not `0.0000` (module docstring)
        return struct_pb2.Value(string_value=str(value))
    if isinstance(value, float):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def _type(value: Any) -> int:
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, float):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = metadata.PLUGIN_DATA_VERSION
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                                                  content=data.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def experiment_summary(hparams: Mapping[str, Any], metrics: Sequence[str], swept: Iterable[str] = (),
                       domains: Mapping[str, Sequence[Any]] | None = None) -> Summary:
    """The table's columns: `hparams` (in order; the `swept` ones marked as differing) and the
    `metrics` scalar tags. `domains`: known values of a key (a swept seed's), else its own."""
    swept, domains = set(swept), dict(domains or {})
    infos = []
    for name, value in hparams.items():
        info = api_pb2.HParamInfo(name=name, type=_type(value), differs=name in swept)
        if name in DISCRETE or name in domains or (isinstance(value, int) and not isinstance(value, bool)):
            known = domains.get(name, [value])
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=[_value(v) for v in known]))
        infos.append(info)
    experiment = api_pb2.Experiment(hparam_infos=infos,
                                    metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metrics])
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def differing(sessions: Sequence[Mapping[str, Any]], always: Sequence[str] = ("variant", "seed")
              ) -> dict[str, list[Any]]:
    """The columns of a sweep's table: `always` (variant, seed), then every key whose value is not
    the same in every session (a key some sessions lack, as bn.norm without BN, differs only
    where the others disagree), each with its values in order of appearance. `sessions`: each
    run's `curated` hyperparameters."""
    keys = list(dict.fromkeys([*always, *(k for s in sessions for k in s)]))
    out: dict[str, list[Any]] = {}
    for key in keys:
        values = [s.get(key) for s in sessions]
        known = list(dict.fromkeys(v for v in values if v is not None))
        if key in always or len(known) > 1:
            out[key] = known
    return out


def sweep_experiment(sessions: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> Summary:
    """The table of a whole sweep (or of several): variant, seed and the differing keys
    (`differing`), all marked as differing, each with its known values as its domain; `metrics`
    as the columns after them."""
    columns = differing(sessions)
    example = {k: next((v for v in vals if v is not None), "") for k, vals in columns.items()}
    return experiment_summary(example, metrics, swept=list(columns), domains=columns)


def session_start_summary(hparams: Mapping[str, Any]) -> Summary:
    start = plugin_data_pb2.SessionStartInfo()
    for name, value in hparams.items():
        start.hparams[name].CopyFrom(_value(value))
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start))


def session_end_summary(status: str) -> Summary | None:
    """`status`: summary.json's (completed | diverged | failed | interrupted); None for interrupted."""
    if status not in STATUS:
        return None
    end = plugin_data_pb2.SessionEndInfo(status=STATUS[status])
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))
