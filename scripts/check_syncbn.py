"""Check SyncBatchNorm (bn.sync=true) against per-GPU BN on CUDA; prints what agrees and exits 1 if not.

    python scripts/check_syncbn.py                              # one GPU (world size 1, nccl)
    torchrun --nproc_per_node=2 scripts/check_syncbn.py         # several GPUs

Every rank builds the same global batch and keeps its slice, as bnrepro/training/distributed.py does.
Expected: SyncBatchNorm's output (and gradient, and running statistics) on a slice equals plain
BatchNorm2d applied to the *whole* global batch, restricted to that slice; per-GPU BN equals
BatchNorm2d applied to the slice alone. With one GPU the two coincide, so both checks must pass
and per-GPU BN equals SyncBN; with N > 1 they differ, which is printed as the effective BN
batch size (global batch vs global batch / N).
"""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn


def main() -> int:
    if not torch.cuda.is_available():
        print("No CUDA device: SyncBatchNorm needs GPUs. Run this on a GPU machine.", file=sys.stderr)
        return 2
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", local_rank)

    torch.manual_seed(0)
    batch, channels = 32 * world, 8
    x = (torch.randn(batch, channels, 6, 6) * 3 + 1).to(device)  # the same global batch on every rank
    dy = torch.randn_like(x)
    sl = slice(rank * 32, (rank + 1) * 32)

    def bn_run(module: nn.Module, inp: torch.Tensor, grad: torch.Tensor):
        inp = inp.clone().requires_grad_(True)
        out = module(inp)
        out.backward(grad)
        return out.detach(), inp.grad.detach(), module.running_mean.clone(), module.running_var.clone()

    base = nn.BatchNorm2d(channels).to(device)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(channels))).to(device)[0]
    # The global-batch reference: plain BN over all of x, backward of sum over ranks <dy_r, y_r>.
    ref_out, ref_grad, ref_mean, ref_var = bn_run(nn.BatchNorm2d(channels).to(device), x, dy)
    s_out, s_grad, s_mean, s_var = bn_run(sync, x[sl], dy[sl])
    p_out, _, _, _ = bn_run(base, x[sl], dy[sl])  # per-GPU BN: BatchNorm2d on the slice alone

    def close(a, b):
        return torch.allclose(a, b, rtol=1e-4, atol=1e-5)

    checks = {
        "SyncBN output == global-batch BN on this slice": close(s_out, ref_out[sl]),
        "SyncBN running mean/var == global-batch BN's": close(s_mean, ref_mean) and close(s_var, ref_var),
        # SyncBN's backward all-reduces its two sums, so a slice gets the global-batch gradient.
        "SyncBN input gradient == global-batch BN's on this slice": close(s_grad, ref_grad[sl]),
    }
    agree = close(s_out, p_out)
    ok = all(checks.values()) and (agree if world == 1 else True)
    if rank == 0:
        print(f"world size {world}, global batch {batch}: SyncBN normalizes over {batch} examples, "
              f"per-GPU BN over {batch // world}.")
        for name, passed in checks.items():
            print(f"  {'ok  ' if passed else 'FAIL'} {name}")
        diff = (s_out - p_out).abs().max().item()
        expect = "equal (one GPU)" if world == 1 else "different (each GPU sees a slice)"
        print(f"  {'ok  ' if (agree if world == 1 else diff > 0) else 'FAIL'} SyncBN vs per-GPU BN: "
              f"max |difference| {diff:.3g}, expected {expect}")
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
