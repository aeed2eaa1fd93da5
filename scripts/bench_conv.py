"""The Sec. 4.2 Inceptions' speed: the Figure 2 seed sweep against a naive loop (`conv_ratio`, the
RATIO conv line of scripts/bench.py), and images/s of the faithful vs fast trainer with the
fraction of peak (`conv_report`: `--device cuda`, or `--conv` on a CPU). A training step here is the
step of `training.loop.fit`: forward under the trainer's autocast, cross-entropy, backward, SGD, with
the trainer's channels_last / compile knobs. FLOPs per image are counted once, in float32
eager mode, with torch.utils.flop_counter (forward + backward: what a training step computes).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from bnrepro.config import compose
from bnrepro.models import build_model
from bnrepro.training.members import autocast, build_members
from bnrepro.training.optim import build_optimizer
from bnrepro.training.record import REPO

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


def side_by_side(jobs: dict[str, list[str]], out: Path) -> float:
    """Model-steps/s of a sweep's layout: the runner once per job (name -> overrides), one torch
    thread each, all at once. Counted as processes x the slowest one's rate, so a process that
    finishes first and leaves the machine to the other does not inflate the number."""
    procs = {name: subprocess.Popen(
        [sys.executable, str(REPO / "experiments" / "train.py"), *overrides, "trainer.progress=none",
         "trainer.threads=1", f"hydra.run.dir={out / name}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}) for name, overrides in jobs.items()}
    rates = []
    for name, proc in procs.items():
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"the side-by-side {name} run failed:\n{err}")
        summary = json.loads(next((out / name).glob("seed=*/summary.json")).read_text())
        rates.append(summary["model_steps_per_s"])
    return len(rates) * min(rates)


# `make fig2`'s model and recipe (configs/experiment/fig2_fashion_mnist.yaml) as BN-Baseline.
# Figure 2's network and batch; evaluation at the bench's own fixed cadence (no validation split, so
# no stop at the plateau; no log-spaced schedule, no saved predictions), as when RATIO conv was first
# measured.
FIG2 = ["experiment=fig2_fashion_mnist", "variant=bn_baseline", "trainer.progress=none", "data.val_size=0",
        "trainer.stop_at_plateau=false", "trainer.eval_per_decade=0", "trainer.save_predictions=false"]
SEEDS = [0, 1, 2]


def naive_conv_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int,
                    lr: float, momentum: float) -> float:
    """Steps/s of the tutorial way for the same network: DataLoader(TensorDataset), SGD, loss.item()."""
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    step = 0
    start = time.perf_counter()
    while step < steps:
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
            step += 1
            if step == steps:
                break
    return steps / (time.perf_counter() - start)


def conv_ratio(data: list[str], steps: int, rounds: int, out: Path) -> dict[str, float]:
    """Figure 2's seed sweep, per core and on the whole machine, against the naive loop; printed."""
    from bnrepro.data import tensors
    from bnrepro.training.session import run

    every = max(1, steps // 3)  # the experiment evaluates and probes every 100 of its 800 steps
    common = [*FIG2, *data, f"trainer.max_steps={steps}", f"trainer.eval_every={every}", f"probe.every={every}",
              "trainer.threads=1"]
    cfg = compose(*common)
    splits = tensors.load(cfg.data, torch.device("cpu"))
    shape, classes = tuple(splits.x_train.shape[1:]), splits.num_classes
    t = cfg.trainer
    model = lambda: build_model(cfg.model, cfg.bn, shape, classes)  # noqa: E731
    flops = step_flops(model(), splits.x_train[:t.batch_size], splits.y_train[:t.batch_size])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    peak = peak_tflops(torch.device("cpu"), None)[0] * 1e12
    naive = lambda: naive_conv_loop(model(), splits.x_train, splits.y_train, steps, t.batch_size,  # noqa: E731
                                    cfg.optim.lr * cfg.optim.lr_scale, cfg.optim.momentum)
    r = {"conv_naive": [], "conv_single": [], "conv_stacked": [], "conv_naive_machine": [], "conv_suite_machine": []}
    cores = os.cpu_count() or 1
    for i in range(rounds):  # interleaved, best of each (scripts/bench.py)
        torch.set_num_threads(1)
        r["conv_naive"].append(naive())
        r["conv_single"].append(run(compose(*common, "seed=0"), out / f"conv{i}" / "single")[0]["steps_per_s"])
        seeds = f"seeds=[{','.join(map(str, SEEDS))}]"
        r["conv_stacked"].append(run(compose(*common, seeds), out / f"conv{i}" / "stacked")[0]["model_steps_per_s"])
        if cores >= 2:
            torch.set_num_threads(cores)
            r["conv_naive_machine"].append(naive())
            jobs = {f"p{p}": [*common, f"seeds=[{','.join(str(s + len(SEEDS) * p) for s in SEEDS)}]"]
                    for p in range(cores)}
            r["conv_suite_machine"].append(side_by_side(jobs, out / f"conv{i}" / "machine"))
    torch.set_num_threads(threads)
    report = {k: max(v) for k, v in r.items() if v}
    gflop = flops / 1e9
    report["conv_gflop_per_step"], report["conv_peak_gflops"] = gflop, peak / 1e9
    report["conv_peak_fraction"] = report["conv_stacked"] * flops / peak
    report["conv_ratio_per_core"] = report["conv_stacked"] / report["conv_naive"]
    print(f"Figure 2's small Inception ({cfg.experiment}, variant={cfg.variant}, width {cfg.model.width_mult:g}, "
          f"batch {t.batch_size}): {gflop:.2f} GFLOP per training step; one core's sgemm peak {peak / 1e9:.0f} GFLOP/s")
    print(f"(e) naive loop (DataLoader, batch {t.batch_size}), training only: {report['conv_naive']:8.1f} steps/s "
          f"({100 * report['conv_naive'] * flops / peak:.0f}% of peak)")
    print(f"(f) suite, one run, eval + probes on:                  {report['conv_single']:8.1f} steps/s "
          f"({report['conv_single'] / report['conv_naive']:.2f}x naive)")
    print(f"(g) suite, {len(SEEDS)} seeds stacked, eval + probes on:          {report['conv_stacked']:8.1f} model-steps/s "
          f"({report['conv_ratio_per_core']:.2f}x naive, {100 * report['conv_peak_fraction']:.0f}% of peak)")
    if "conv_suite_machine" in report:
        report["conv_ratio"] = report["conv_suite_machine"] / report["conv_naive_machine"]
        print(f"(h) whole machine, {cores} cores: naive with {cores} threads {report['conv_naive_machine']:.1f} steps/s; "
              f"make fig2's layout ({cores} stacked {len(SEEDS)}-seed processes side by side) "
              f"{report['conv_suite_machine']:.1f} model-steps/s ({report['conv_ratio']:.2f}x)")
    else:
        report["conv_ratio"] = report["conv_ratio_per_core"]
    return report


def fig2_stack(variant: str, images: int = 7000):
    """`make fig2`'s 3-seed stack of `variant` (configs/experiment/fig2_fashion_mnist.yaml) on the
    CPU, its optimizer, and `images` random images of the padded Fashion-MNIST shape with labels:
    what scripts/bench_host_memory.py and scripts/bench_lrn.py time."""
    cfg = compose("experiment=fig2_fashion_mnist", f"variant={variant}", "seeds=[0,1,2]")
    members = build_members(cfg, (1, 32, 32), 10, torch.device("cpu"))
    optimizer, _ = build_optimizer(members.module, cfg.optim)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(images, 1, 32, 32, generator=g), torch.randint(0, 10, (images,), generator=g)
    return cfg, members, optimizer, x, y


def time_stack(members, optimizer, x: torch.Tensor, y: torch.Tensor, steps: int, evals: int,
               warmup_steps: int = 10, warmup_evals: int = 1) -> tuple[float, float, torch.Tensor]:
    """ms per training step of 32 images (cycling over the first 200 batches) and s per evaluation
    over all of `x` in chunks of 1,000 (fig2's eval_batch_size), each after its warm-up; and the
    last evaluation's totals."""
    def step(i: int) -> None:
        j = 32 * (i % min(200, x.size(0) // 32))
        optimizer.zero_grad(set_to_none=True)
        members.forward_backward(x[j:j + 32], y[j:j + 32])
        optimizer.step()

    for i in range(warmup_steps):
        step(i)
    tic = time.perf_counter()
    for i in range(steps):
        step(i)
    step_ms = (time.perf_counter() - tic) / steps * 1e3
    batches = [(x[i:i + 1000], y[i:i + 1000]) for i in range(0, x.size(0), 1000)]
    for _ in range(warmup_evals):
        members.evaluate(batches)
    tic = time.perf_counter()
    for _ in range(evals):
        totals = members.evaluate(batches)
    return step_ms, (time.perf_counter() - tic) / evals, totals
