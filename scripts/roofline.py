"""How far the sweeps' training steps are from what this CPU allows: a roofline (issue 35 item 1).

    python scripts/roofline.py             # both steps, printed (scripts/bench.py prints it too)
    python scripts/roofline.py --quick     # fewer repetitions

The machine's two roofs, measured here on one thread: memory bandwidth, a STREAM-like triad
(a = b + s*c) at several working-set sizes, and one core's sgemm peak (a 2048^2 GEMM,
scripts/bench_conv.py `peak_tflops`). The two steps are the ones the sweeps repeat, one thread each
as `make fig1` / `make fig2` run them: Figure 1's MLP as the 5-seed stack (batch 60) and Figure 2's
small Inception as BN-Baseline in the 3-seed stack (width 1/8, 32x32, batch 32), each a forward and
backward pass and the SGD step.

Every aten op of a step is intercepted (a TorchDispatchMode) and timed around its kernel, with its
FLOPs (torch.utils.flop_counter's formulas for GEMMs and convolutions; one per output element for
anything else) and the minimum bytes it must move: each distinct input tensor read once, each output
written once (views move nothing). An op's bound is max(FLOPs / peak, bytes / bandwidth); the step's
bound is the sum over its ops. `ROOFLINE <step> = X%` is that bound over the step's measured time
(best of its steps, timed without the interception), against the DRAM roof (the triad over 384 MiB,
what the issue asks for). A second figure takes for each op the triad bandwidth of the smallest
working set that holds its bytes (a cache-aware roof, and so a stricter bound): the MLP's tensors
live in L2, where the DRAM roof is no limit at all. The time outside every op (Python, dispatch,
autograd's bookkeeping) is printed as its own line; it counts in the measured time, not in the bound.
"""
from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry
from torch.utils.module_tracker import ModuleTracker

from bench_conv import fig2_stack, peak_tflops  # scripts/bench_conv.py
from bnrepro.config import compose
from bnrepro.training.members import build_members
from bnrepro.training.optim import build_optimizer

TRIAD_SIZES = (2**14, 2**16, 2**18, 2**20, 2**22, 2**25)  # floats per array: 192 KiB to 384 MiB in all


def triad(n: int, seconds: float = 0.3) -> float:
    """Best bytes/s of a = b + 3c over arrays of n floats (12n bytes a pass, STREAM's count)."""
    a, b, c = torch.zeros(n), torch.rand(n), torch.rand(n)  # zeros: no first-touch page faults in the timing
    reps = max(2, int(2**24 // n))
    best, end, rounds = float("inf"), time.perf_counter() + seconds, 0
    while time.perf_counter() < end or rounds < 3:
        rounds += 1
        tic = time.perf_counter()
        for _ in range(reps):
            torch.add(b, c, alpha=3.0, out=a)
        best = min(best, (time.perf_counter() - tic) / reps)
    return 12 * n / best


@dataclass
class Roofs:
    peak: float  # FLOP/s, one core's sgemm
    bandwidth: list[tuple[int, float]]  # (working set in bytes, bytes/s), smallest first

    @property
    def dram(self) -> float:
        return self.bandwidth[-1][1]

    def cached(self, nbytes: float) -> float:
        """The triad bandwidth of the smallest measured working set that holds `nbytes`."""
        return next((bw for size, bw in self.bandwidth if size >= nbytes), self.dram)

    def bound(self, flops: float, nbytes: float, cache_aware: bool = False) -> float:
        return max(flops / self.peak, nbytes / (self.cached(nbytes) if cache_aware else self.dram))


def measure_roofs(rounds: int = 3, prior: Roofs | None = None) -> Roofs:
    """The best of `rounds` (and of `prior`): on a shared machine a roof measured low would make
    every op look closer to it than it is."""
    best = prior
    for _ in range(rounds):
        peak = max(peak_tflops(torch.device("cpu"), None)[0] for _ in range(2)) * 1e12
        r = Roofs(peak, [(12 * n, triad(n)) for n in TRIAD_SIZES])
        best = r if best is None else Roofs(max(best.peak, r.peak), [(size, max(a, b)) for (size, a), (_, b)
                                                                     in zip(best.bandwidth, r.bandwidth)])
    return best


def _nbytes(t: torch.Tensor) -> int:
    # An expanded (stride-0) view reads its storage once, not once per element.
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


def op_cost(func, args, kwargs, out) -> tuple[float, float]:
    """(FLOPs, minimum bytes) of one aten op call."""
    if func.is_view or func.overloadpacket.__name__.startswith("empty"):
        return 0.0, 0.0
    ins = {(t.data_ptr(), _nbytes(t)) for t in tree_flatten((args, {k: v for k, v in kwargs.items() if k != "out"}))[0]
           if isinstance(t, torch.Tensor)}
    outs = {(t.data_ptr(), _nbytes(t)) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
    nbytes = sum(n for _, n in ins) + sum(n for _, n in outs)
    packet = func.overloadpacket
    if packet is torch.ops.aten.convolution_backward:
        # flop_counter counts a grouped convolution's weight gradient `groups` times over (torch
        # 2.14); each gradient asked for costs what the forward convolution does.
        grad_out, weight, mask = args[0], args[2], args[10]
        forward = 2 * weight.numel() * grad_out.shape[0] * math.prod(grad_out.shape[2:])
        flops = float(forward * (bool(mask[0]) + bool(mask[1])))
    elif packet.__name__ == "_linear_pointwise":  # oneDNN's linear (bnrepro/models/stacked.py): x (m, k) @ w (n, k)^T
        flops = 2.0 * args[0].numel() * args[1].shape[0]
    elif packet in flop_registry:
        flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
    else:
        flops = float(sum(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)))
    return flops, float(nbytes)


@dataclass
class Call:
    name: str  # the op and where: "convolution_backward @ net.inc3a.b1.conv (bw)"
    flops: float
    nbytes: float
    seconds: list[float] = field(default_factory=list)


class OpTimer(TorchDispatchMode):
    """Times every aten op of the steps run under it; `calls[i]` is the step's i-th op, its times
    one per step (the steps must run the same ops in the same order)."""

    def __init__(self, tracker: ModuleTracker):
        super().__init__()
        self.tracker, self.calls, self.index = tracker, [], 0

    def next_step(self) -> None:
        self.index = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tic = time.perf_counter()
        out = func(*args, **kwargs)
        elapsed = time.perf_counter() - tic
        if self.index == len(self.calls):
            where = max(self.tracker.parents, key=len, default="")
            tag = f" @ {where}" + (" (bw)" if self.tracker.is_bw else "") if where and where != "Global" else ""
            self.calls.append(Call(func.overloadpacket.__name__ + tag, *op_cost(func, args, kwargs, out)))
        self.calls[self.index].seconds.append(elapsed)
        self.index += 1
        return out


def mlp_step():
    cfg = compose("experiment=fig1_mnist", "variant=bn", "seeds=[0,1,2,3,4]", "data=synthetic")
    members = build_members(cfg, (1, 28, 28), 10, torch.device("cpu"))
    optimizer, _ = build_optimizer(members.module, cfg.optim)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 60, 1, 28, 28, generator=g), torch.randint(0, 10, (5, 60), generator=g)
    return "mlp", "Figure 1's MLP, 5 seeds stacked, batch 60", members, optimizer, x, y


def conv_step():
    cfg, members, optimizer, x, y = fig2_stack("bn_baseline", images=32)
    s = members.size
    x, y = x.unsqueeze(0).expand(s, *x.shape).contiguous(), y.unsqueeze(0).expand(s, -1).contiguous()
    return ("conv", f"Figure 2's small Inception (BN-Baseline), {s} seeds stacked, width {cfg.model.width_mult:g}, "
            "batch 32", members, optimizer, x, y)


def profile(step_spec, steps: int, op_steps: int) -> dict:
    """The step's best measured time and its per-op account."""
    key, title, members, optimizer, x, y = step_spec
    members.module.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        members.forward_backward(x, y)
        optimizer.step()

    for _ in range(3):
        step()
    times, tracker = [], ModuleTracker()
    timer = OpTimer(tracker)
    # Interleaved, best of each (scripts/bench.py): other processes only ever slow a round down.
    for _ in range(op_steps):
        for _ in range(steps // op_steps):
            tic = time.perf_counter()
            step()
            times.append(time.perf_counter() - tic)
        with tracker, timer:
            timer.next_step()
            step()
    return {"key": key, "title": title, "step_s": min(times), "calls": timer.calls}


def account(result: dict, roofs: Roofs, top: int = 5) -> dict:
    """Bounds, measured per-op times (best of the steps), and the ops furthest from their bound."""
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0])
    bound = bound_cached = ops_s = flops = nbytes = 0.0
    for c in result["calls"]:
        b, bc, t = roofs.bound(c.flops, c.nbytes), roofs.bound(c.flops, c.nbytes, cache_aware=True), min(c.seconds)
        bound, bound_cached, ops_s, flops, nbytes = bound + b, bound_cached + bc, ops_s + t, flops + c.flops, nbytes + c.nbytes
        g = groups[c.name]
        g[0], g[1], g[2], g[3], g[4] = g[0] + t, g[1] + b, g[2] + c.flops, g[3] + c.nbytes, g[4] + 1
    worst = sorted(groups.items(), key=lambda kv: kv[1][1] - kv[1][0])[:top]
    return {**result, "bound_s": bound, "bound_cached_s": bound_cached, "ops_s": ops_s, "flops": flops,
            "nbytes": nbytes, "worst": worst, "ops": len(result["calls"])}


def report(a: dict, roofs: Roofs) -> dict[str, float]:
    ms = 1e3
    step = a["step_s"]
    print(f"{a['title']}: {a['ops']} aten ops a step, {a['flops'] / 1e9:.3f} GFLOP, {a['nbytes'] / 2**20:.1f} MiB "
          f"moved at least; measured {step * ms:.2f} ms a step (best), of it {a['ops_s'] * ms:.2f} ms inside ops, "
          f"{(step - a['ops_s']) * ms:.2f} ms outside (Python, dispatch, autograd)")
    print(f"  bound {a['bound_s'] * ms:.2f} ms at the DRAM roof, {a['bound_cached_s'] * ms:.2f} ms cache-aware; "
          f"the ops alone at {100 * a['bound_s'] / a['ops_s']:.0f}% / {100 * a['bound_cached_s'] / a['ops_s']:.0f}%")
    print("  furthest from their bound (summed over a step's calls; GFLOP/s and GB/s achieved):")
    for name, (t, b, f, n, count) in a["worst"]:
        print(f"    {name[:90]:90s} x{count:<3d} {t * ms:7.2f} ms, bound {b * ms:6.2f} ms "
              f"({f / t / 1e9:5.1f} GFLOP/s, {n / t / 1e9:5.1f} GB/s)")
    return {f"roofline_{a['key']}_pct": 100 * a["bound_s"] / step,
            f"roofline_{a['key']}_cached_pct": 100 * a["bound_cached_s"] / step,
            f"roofline_{a['key']}_step_ms": step * ms, f"roofline_{a['key']}_bound_ms": a["bound_s"] * ms,
            f"roofline_{a['key']}_outside_ms": (step - a["ops_s"]) * ms}


def roofline(quick: bool = False) -> dict[str, float]:
    """Measure the roofs and both steps, print the account; the numbers (the ROOFLINE lines are the
    caller's: scripts/bench.py prints them beside the RATIO lines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        roofs = measure_roofs(1 if quick else 2)
        results = []
        for spec, (steps, op_steps) in ((mlp_step, (50, 5) if quick else (300, 20)),
                                        (conv_step, (5, 2) if quick else (20, 5))):
            results.append(profile(spec(), steps, op_steps))
            roofs = measure_roofs(1 if quick else 2, roofs)  # around each step's timing, best of all
        print(f"Roofs, one thread, best of {'3' if quick else '6'} rounds: sgemm peak {roofs.peak / 1e9:.0f} GFLOP/s; "
              "triad " + ", ".join(f"{bw / 1e9:.0f} GB/s at {size / 2**20:.2g} MiB" for size, bw in roofs.bandwidth))
        out = {"roofline_peak_gflops": roofs.peak / 1e9, "roofline_dram_gbs": roofs.dram / 1e9}
        for result in results:
            out.update(report(account(result, roofs), roofs))
        return out
    finally:
        torch.set_num_threads(threads)


def roofline_lines(r: dict[str, float]) -> list[str]:
    return [f"ROOFLINE {k} step = {r[f'roofline_{k}_pct']:.0f}% of its bound ({r[f'roofline_{k}_bound_ms']:.2f} of "
            f"{r[f'roofline_{k}_step_ms']:.2f} ms; cache-aware {r[f'roofline_{k}_cached_pct']:.0f}%)" for k in ("conv", "mlp")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    numbers = roofline(parser.parse_args().quick)
    print("\n".join(roofline_lines(numbers)))
