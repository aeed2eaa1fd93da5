"""`MemberLRN` (bnrepro/models/stacked_conv.py: its power as square roots, its gradient written
out) against the same formula in torch's ops (`pow(-0.75)`, autograd's backward), measured in the
same process: the 3-seed stacks of `make fig2`'s variants that
keep LRN (configs/experiment/fig2_fashion_mnist.yaml) on one thread, training steps of 32 images and
evaluations over 7,000 (its 5,000 val + 2,000 test), on random images of the real shape, the two
arithmetics alternating rep by rep.

    python scripts/bench_lrn.py            # --variant bn_baseline --steps 200 --evals 2 --reps 3

Prints each rep's ms/step and s/evaluation, the medians, and their ratios (torch / ours: above
1 is faster) on a line starting with RATIO. Both start from the same members and batches; the
two agree to a few float ulp, so the two trainings drift apart (max |parameter difference|
printed): a change of the arithmetic, not of the bits only.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from bench_conv import fig2_stack, time_stack
from bnrepro.models import stacked_conv
from bnrepro.training.hostmem import keep_host_memory

OURS = stacked_conv.MemberLRN.forward


def torch_ops(self, x: torch.Tensor) -> torch.Tensor:
    """MemberLRN's forward before 93e202d: pow, and autograd's chain for the gradient."""
    n, c, h, w = x.shape
    band = self.window(x)
    rows = x.permute(0, 2, 3, 1).reshape(-1, band.shape[0])
    div = torch.addmm(rows.new_full((1,), self.k), rows * rows, band)
    return (rows * div.pow(-self.beta)).reshape(n, h, w, c).permute(0, 3, 1, 2)


def setup(variant: str, images: int):
    cfg, *stack = fig2_stack(variant, images)
    if not cfg.model.lrn:
        raise SystemExit(f"bench_lrn: variant {variant} has no LRN (model.lrn=false); "
                         "use inception, bn_baseline, inception_sigmoid or inception_x5")
    return stack


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="bn_baseline")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--evals", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--images", type=int, default=7000, help="evaluated per pass (fig2: 5,000 val + 2,000 test)")
    a = ap.parse_args(argv)
    keep_host_memory()  # as every run does (bnrepro/training/hostmem.py)
    torch.set_num_threads(1)
    arith = {"torch": torch_ops, "ours": OURS}
    state = {name: setup(a.variant, a.images) for name in arith}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in arith}
    try:
        for rep in range(a.reps):
            for name in (list(arith) if rep % 2 == 0 else list(arith)[::-1]):
                stacked_conv.MemberLRN.forward = arith[name]
                times[name].append(time_stack(*state[name], a.steps, a.evals, warmup_steps=5, warmup_evals=0)[:2])
                print(f"rep {rep} {name:5s}: {times[name][-1][0]:6.1f} ms/step  {times[name][-1][1]:5.2f} s/evaluation",
                      flush=True)
    finally:
        stacked_conv.MemberLRN.forward = OURS
    med = {n: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for n, ts in times.items()}
    drift = max((p - q).abs().max().item() for p, q in zip(state["torch"][0].module.parameters(),
                                                           state["ours"][0].module.parameters()))
    print(f"medians of {a.reps} ({a.variant}): torch's ops {med['torch'][0]:.1f} ms/step, {med['torch'][1]:.2f} s/eval; "
          f"ours {med['ours'][0]:.1f} ms/step, {med['ours'][1]:.2f} s/eval; "
          f"max |parameter difference| after training: {drift:.2e}")
    ratios = {"step": med["torch"][0] / med["ours"][0], "evaluation": med["torch"][1] / med["ours"][1]}
    print(f"RATIO LRN torch/ours: step {ratios['step']:.2f}, evaluation {ratios['evaluation']:.2f}")
    return ratios


if __name__ == "__main__":
    main()
