"""Protocol v2's records of a run, written when training ends (issue 31; configs/experiment/fig2_v2_fashion_mnist.yaml).

- `trainer.keep_best_val`: each member's weights and BN statistics at its best validation evaluation
  (the loop keeps a copy, `FitResult.best_val_state`, which rides in the checkpoints) are written to
  `best_val.pt` in its run directory: {"step", "val_accuracy" (as logged), "model": the single run's
  state dict}, so a stack's member file loads into its single run's network (`posthoc.network`).
  Why: "max accuracy" in Figure 3 is a best-validation number (Sec. 4.2.2 tracks validation accuracy
  during training); the model it names is kept, so that its test accuracy is measured, not inferred.
- `trainer.final_test`: the final model and (with keep_best_val) the best-validation one evaluated
  on the WHOLE test split (10,000 images for Fashion-MNIST), whatever `data.test_size` subsample was
  evaluated during training, and on the validation split again: `full_test.json`. With
  `trainer.save_predictions`, test_probs.csv (the final model) and test_probs_best_val.csv then hold
  the whole split, for Figure 4's ensemble (Sec. 4.2.3).
Every evaluation is the training path's own (`posthoc.evaluate`: a single network in eval mode,
trainer.amp's autocast, float64 totals), on one network per member, so a stacked member is measured
as its single run would be and anyone can measure best_val.pt again the same way. For a single run the
re-evaluated validation accuracy of best_val.pt equals the logged one exactly; for a stacked member, up
to the float rounding of the stack's kernels (both are in full_test.json).
"""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import torch

from bnrepro import BEST_VAL_PREDICTIONS_FILE, FULL_TEST_FILE, PREDICTIONS_FILE
from bnrepro.data import DataBundle, build_data
from bnrepro.files import write_atomic, write_json
from bnrepro.schema import Config
from bnrepro.training import distributed
from bnrepro.training.members import SingleModel, predict
from bnrepro.training.posthoc import evaluate, network

BEST_VAL_FILE = "best_val.pt"


def save_best_val(run_dir: Path, result) -> Path | None:
    """Write a member's kept best-validation state (a `FitResult`) to run_dir/best_val.pt, atomically
    (temporary file, fsync, rename); None when it kept none (no validation evaluation yet)."""
    if result.best_val_state is None:
        return None
    buffer = io.BytesIO()
    torch.save({"step": result.best_val_step, "val_accuracy": result.best_val_accuracy,
                "model": result.best_val_state}, buffer)
    return write_atomic(Path(run_dir) / BEST_VAL_FILE, buffer.getvalue(), sync_dir=True)


def load_best_val(run_dir: str | Path) -> dict:
    """A run directory's best_val.pt: {"step", "val_accuracy", "model"}."""
    return torch.load(Path(run_dir) / BEST_VAL_FILE, map_location="cpu", weights_only=True)


def whole_test(cfg: Config, data: DataBundle) -> DataBundle:
    """The data with its whole test split: `data` itself when data.test_size took no subsample."""
    if cfg.data.test_size is None:
        return data
    return build_data(dataclasses.replace(cfg.data, test_size=None), batch_size=cfg.trainer.batch_size,
                      eval_batch_size=cfg.trainer.eval_batch_size, device=data.device)


def write_predictions(path: Path, probs: torch.Tensor, targets: torch.Tensor) -> None:
    """Class probabilities, one row per test example (label, p0, p1, ...): test_probs.csv's format
    (bnrepro.tracking.logger.RunLogger.predictions), written whole or not at all."""
    rows = torch.cat([targets.view(-1, 1).to(probs), probs], 1).tolist()
    lines = ["label," + ",".join(f"p{c}" for c in range(probs.shape[1]))]
    lines += [f"{int(row[0])}," + ",".join(f"{v:.5f}" for v in row[1:]) for row in rows]
    write_atomic(path, "\n".join(lines) + "\n")


def measure(cfg: Config, state: dict, data: DataBundle) -> tuple[dict[str, float], torch.nn.Module]:
    """One model (a state dict) on the whole test split and the validation split."""
    model = network(cfg, state, data.input_shape, data.num_classes, data.device)
    amp = cfg.trainer.amp
    test_accuracy, test_loss = evaluate(model, data.test_batches(), amp)
    row = {"test_accuracy": test_accuracy, "test_loss": test_loss}
    if data.val_size:
        val_accuracy, val_loss = evaluate(model, data.val_batches(), amp)
        row.update(val_accuracy=val_accuracy, val_loss=val_loss)
    return row, model


def after_training(cfg: Config, configs: list[Config], dirs: list[Path], members, results: list,
                   data: DataBundle) -> dict[int, dict]:
    """Write each member's best_val.pt (keep_best_val) and full_test.json (final_test), and with
    save_predictions its whole-test-split probabilities; returns {member index: full_test record}.
    `configs`, `dirs`: each member's single-run config and run directory, in the members' order."""
    t = cfg.trainer
    write = distributed.is_main()
    if t.keep_best_val and write:
        for d, r in zip(dirs, results):
            save_best_val(d, r)
    if not t.final_test:
        return {}
    full = whole_test(cfg, data)
    records = {}
    for i, (member_cfg, d, r) in enumerate(zip(configs, dirs, results)):
        models = {"final": (r.steps, members.member_state_dict(i))}
        if t.keep_best_val and r.best_val_state is not None:
            models["best_val"] = (r.best_val_step, r.best_val_state)
        record = {"test_size": full.test_size, "val_size": full.val_size, "status": r.status}
        for name, (step, state) in models.items():
            row, model = measure(member_cfg, state, full)
            record[name] = {"step": step, **row}
            if name == "best_val":
                record[name]["logged_val_accuracy"] = r.best_val_accuracy
            if t.save_predictions and r.active and write:
                probs, targets = predict(SingleModel(model, t.amp), full.test_batches())
                write_predictions(d / (PREDICTIONS_FILE if name == "final" else BEST_VAL_PREDICTIONS_FILE),
                                  probs[0], targets)
        if write:
            write_json(d / FULL_TEST_FILE, record)
        records[i] = record
    return records


def read(run_dir: str | Path) -> dict | None:
    """A run directory's full_test.json, None where it has none."""
    path = Path(run_dir) / FULL_TEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None
