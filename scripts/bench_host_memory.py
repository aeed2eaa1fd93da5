"""bnrepro.training.hostmem's effect on `make fig2`'s work, measured against glibc's default in the
same run: the 3-seed BN-Baseline stack of configs/experiment/fig2_fashion_mnist.yaml on one thread,
training steps of 32 images and evaluations over 7,000 (its 5,000 val + 2,000 test), in child
processes that alternate (malloc's settings are per process), on random images of the real shape.

    python scripts/bench_host_memory.py            # --steps 200 --evals 2 --reps 3 --images 7000

Prints each child's ms/step, s/evaluation and peak resident memory, then the ratios (default /
kept: above 1 is faster) on a line starting with RATIO, and checks that both computed the same
bits (the parameters after training and the evaluation's totals).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys


def child(keep: bool, steps: int, evals: int, images: int = 7000) -> dict[str, float | str]:
    import torch

    from bench_conv import fig2_stack, time_stack
    from bnrepro.training.hostmem import keep_host_memory

    applied = keep_host_memory() if keep else False
    torch.set_num_threads(1)
    _, members, optimizer, x, y = fig2_stack("bn_baseline", images)
    step_ms, eval_s, totals = time_stack(members, optimizer, x, y, steps, evals)
    params = torch.cat([p.detach().flatten() for p in members.module.parameters()])
    digest = hashlib.sha256(params.numpy().tobytes() + totals.numpy().tobytes()).hexdigest()
    return {"applied": applied, "step_ms": step_ms, "eval_s": eval_s, "digest": digest,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--evals", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--images", type=int, default=7000, help="evaluated per pass (fig2: 5,000 val + 2,000 test)")
    ap.add_argument("--child", choices=["default", "kept"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child == "kept", a.steps, a.evals, a.images)))
        return {}
    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    for rep in range(a.reps):
        for mode in runs:
            cmd = [sys.executable, __file__, "--child", mode, "--steps", str(a.steps), "--evals", str(a.evals),
                   "--images", str(a.images)]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            runs[mode].append(out)
            print(f"rep {rep} {mode:7s}: {out['step_ms']:6.1f} ms/step  {out['eval_s']:5.2f} s/evaluation  "
                  f"peak RSS {out['peak_rss_mb']:5.0f} MB" + ("" if mode == "default" or out["applied"] else
                                                               "  (not applied: not glibc)"), flush=True)
    digests = {r["digest"] for rs in runs.values() for r in rs}
    if len(digests) != 1:
        sys.exit(f"bench_host_memory: the two settings computed different bits ({len(digests)} digests)")
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("step_ms", "eval_s", "peak_rss_mb")}
           for m, rs in runs.items()}
    ratios = {k: med["default"][k] / med["kept"][k] for k in ("step_ms", "eval_s")}
    print(f"medians of {a.reps}: default {med['default']['step_ms']:.1f} ms/step, {med['default']['eval_s']:.2f} s/eval; "
          f"kept {med['kept']['step_ms']:.1f} ms/step, {med['kept']['eval_s']:.2f} s/eval; same bits: yes")
    print(f"RATIO host memory default/kept: step {ratios['step_ms']:.2f}, evaluation {ratios['eval_s']:.2f}")
    return ratios


if __name__ == "__main__":
    main()
