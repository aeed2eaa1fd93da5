"""Data-parallel training over several processes: `torchrun --nproc_per_node=N experiments/train.py ...`.

Every process (rank) runs the same run: same seed, same model initialization, same data order.
`trainer.batch_size` stays the *global* batch: each step, every rank draws the same global batch
(augmented as a single process would), keeps its slice `rank` of `world_size`, and DDP averages
the gradients, so without BN the step is the single-process step up to float rounding.

BN and the effective batch: with `bn.sync=false` (default) each rank normalizes over its own
slice, so the BN statistics of Algorithm 1 come from `batch_size / world_size` examples (the
"ghost batch" of the multi-GPU Inception training; smaller batches mean noisier mu_B, var_B).
With `bn.sync=true` BN layers become `torch.nn.SyncBatchNorm`, whose statistics cover the whole
global batch, as on one device (CUDA only; `bn.impl=torch`).

Only rank 0 writes (config, metrics, TensorBoard, checkpoints, summary); the others log to a
`tracking.logger.QuietLogger`. Every rank must use the same run directory, but Hydra names it from `${now:...}`,
which can straddle a second between ranks: `init_from_env` therefore starts the process group
before Hydra, broadcasts rank 0's time as BNREPRO_RUN_TIME (configs/train.yaml names run and
sweep directories from it when set), and turns off Hydra's own files on ranks > 0.
"""
from __future__ import annotations

import atexit
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bnrepro.errors import BnreproError


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(argv: list[str] | None = None) -> None:
    """Under torchrun (WORLD_SIZE > 1): start the process group and agree on one run directory."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    argv = sys.argv if argv is None else argv
    cuda = torch.cuda.is_available() and "trainer.device=cpu" not in argv
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    atexit.register(dist.destroy_process_group)
    stamp = [os.environ.get("BNREPRO_RUN_TIME") or time.strftime("%Y-%m-%d_%H-%M-%S")]
    dist.broadcast_object_list(stamp, src=0)
    os.environ["BNREPRO_RUN_TIME"] = stamp[0]
    if dist.get_rank() > 0:  # one .hydra/ and one log file, rank 0's
        argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def device_for_rank(device: torch.device) -> torch.device:
    """cuda -> cuda:LOCAL_RANK under torchrun; any other device unchanged."""
    if active() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def convert_sync_bn(model: nn.Module, sync: bool, device: torch.device) -> nn.Module:
    """`bn.sync=true`: every torch BN layer becomes SyncBatchNorm (statistics over all ranks)."""
    if not sync:
        return model
    if device.type != "cuda":
        raise BnreproError("bn.sync=true needs CUDA devices (torch's SyncBatchNorm does not run on the CPU). "
                           "Use bn.sync=false, where each process normalizes over its own slice of the batch.")
    if any(type(m).__name__ == "BatchNorm" for m in model.modules()):
        raise BnreproError("bn.sync=true works with bn.impl=torch only: bnrepro.bn.BatchNorm (bn.impl=paper) "
                           "has no synchronized version.")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model: nn.Module) -> nn.Module:
    """DistributedDataParallel around `model` when several ranks train it; `model` itself otherwise."""
    if not active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def shard(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """This rank's slice of a global batch."""
    n = world_size()
    if n == 1:
        return x, y
    if len(y) % n:
        raise BnreproError(f"trainer.batch_size={len(y)} is not divisible by the {n} processes; "
                           f"choose a multiple of {n}.")
    size = len(y) // n
    r = rank()
    return x[r * size:(r + 1) * size], y[r * size:(r + 1) * size]


def average(t: Tensor) -> Tensor:
    """The mean of `t` over ranks (in place); `t` itself in a single process."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world_size()
    return t


def any_rank(flag: bool) -> bool:
    """True when `flag` is true on some rank: a stop request must stop every rank at the same step."""
    if not active():
        return flag
    t = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def any_rank_each(flags: list[bool]) -> list[bool]:
    """`any_rank` of each flag, in one collective: per member of a stack, which every rank must
    stop at the same step."""
    if not active():
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
