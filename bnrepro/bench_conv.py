"""Images/s of the Sec. 4.2 Inceptions at 32 px, faithful vs fast trainer, and the fraction of peak.

Used by bnrepro/bench.py (`--device cuda`, or `--conv` on a CPU). A training step here is the
step of `training.loop.fit`: forward under the trainer's autocast, cross-entropy, backward, SGD, with
the trainer's channels_last / compile knobs. FLOPs per image are counted once, in float32
eager mode, with torch.utils.flop_counter (forward + backward: what a training step computes).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bnrepro.config import compose
from bnrepro.models import build_model
from bnrepro.training.members import autocast
from bnrepro.training.optim import build_optimizer

# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, SXM parts); --peak-tflops overrides.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}
MODELS = {"inception_small": [], "bn_inception": ["model.small_input=true"]}


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    """The peak to compare against: given, known for the GPU, or measured (a CPU's big GEMM)."""
    if given:
        return given, "given"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_TFLOPS.items():
            if key in name:
                return value, f"{key} bf16 dense data-sheet peak"
        return None, "unknown GPU: pass --peak-tflops"
    a = torch.randn(2048, 2048)
    a @ a
    start = time.perf_counter()
    for _ in range(5):
        a @ a
    return 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e12, "measured fp32 2048^2 GEMM"


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one training step's forward and backward pass (float32, eager)."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def images_per_s(model_name: str, trainer: str, device: torch.device, batch: int, steps: int,
                 warmup: int, extra: list[str] = ()) -> dict[str, float]:
    cfg = compose(f"model={model_name}", "variant=bn_baseline", f"trainer={trainer}", "optim.lr=0.01",
                  *MODELS[model_name], *extra)
    t = cfg.trainer
    model = build_model(cfg.model, cfg.bn, (3, 32, 32), 10).to(device)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    flops = step_flops(model, x, y) / batch
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = t.cudnn_benchmark
    net = torch.compile(model) if t.compile else model
    optimizer, _ = build_optimizer(model, cfg.optim)
    model.train()

    def step() -> None:
        with autocast(t.amp, device):
            loss = F.cross_entropy(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):  # compilation and autotuning happen here
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    rate = steps * batch / (time.perf_counter() - start)
    return {"images_per_s": rate, "flops_per_image": flops, "tflops": rate * flops / 1e12}


def conv_report(device: torch.device, quick: bool, peak: float | None, batch: int | None = None,
                extra: list[str] = ()) -> dict[str, float]:
    peak, source = peak_tflops(device, peak)
    cpu = device.type == "cpu"
    batch = batch or (16 if cpu else 256)
    steps, warmup = (3, 1) if cpu else ((20, 10) if quick else (100, 20))
    print(f"Inceptions at 32 px, batch {batch}, training steps; peak {peak or float('nan'):.1f} TFLOP/s ({source})")
    report = {}
    for name in MODELS:
        for trainer in ("faithful", "fast"):
            if cpu and trainer == "fast":
                continue  # bf16 autocast is CUDA-only here and compiling takes minutes on a CPU
            r = images_per_s(name, trainer, device, batch, steps, warmup, extra)
            frac = r["tflops"] / peak if peak else float("nan")
            print(f"  {name:16s} {trainer:9s} {r['images_per_s']:10,.0f} images/s  "
                  f"{r['flops_per_image'] / 1e9:6.2f} GFLOP/image  {r['tflops']:7.2f} TFLOP/s  "
                  f"{100 * frac:5.1f}% of peak")
            report[f"{name}_{trainer}_images_per_s"] = r["images_per_s"]
            report[f"{name}_{trainer}_peak_fraction"] = frac
    return report
