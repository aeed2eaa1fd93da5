"""The suite's speed, measured against a naive baseline in the same process on the same machine.

    python scripts/bench.py                  # CPU: Figure 1's MLP, Figure 2's Inception, figure regeneration
    python scripts/bench.py --quick          # shorter runs
    python scripts/bench.py --device cuda    # also the Inceptions' images/s and fraction of peak
    make bench                               # the first, in the project's venv

(a) naive: the tutorial loop for the Figure 1 MLP, a DataLoader over a TensorDataset, batch 60,
    `loss.item()` each step, training only;
(b) suite, single run: `bnrepro.training.session.run` at the Figure 1 defaults (variant=bn), evaluation
    every 500 steps and probes every 200 steps on;
(c) suite, stacked: the same five seeds as one process (`seeds=[0,1,2,3,4]`), evaluation and
    probes on; its model-steps/s is steps/s times the number of seeds.
(d) the whole machine, the way each is meant to be run for Figure 1: the naive loop with torch's
    default threads (every core, one run after another) against `make fig1`'s layout, one
    stacked 5-seed process per variant side by side with one thread each. Its ratio (RATIO mlp)
    is the speed-up a user sees on the Figure 1 sweep; (c)/(a) at --threads is the per-core one.
Then, on a CPU, the same for Figure 2's conv network (scripts/bench_conv.py `conv_ratio`): the
small Inception of `make fig2` as BN-Baseline, (e) naive eager loop (DataLoader over a
TensorDataset, batch 32, training only), (f) the suite's single run and (g) its 3-seed stack,
evaluation and probes on (every third of the steps), each also as a fraction of one core's
measured sgemm peak, and (h) the whole machine: the naive loop on every core against `make fig2`'s
layout, one stacked 3-seed process per core. Each whole-machine ratio is printed last, on its
own line starting with RATIO (mlp, conv), after the two ROOFLINE lines (scripts/roofline.py: each
sweep's training step against this machine's bandwidth and sgemm peak, and the five ops furthest from
their bound). Then the time to regenerate Figure 1
(scripts/plot_fig1.py) from a sweep of 100 runs: a timing fixture of 100 run directories in the real format with made-up numbers, in a temporary
directory, never next to real results.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnrepro import METRICS_COLUMNS, METRICS_FILE
from bnrepro.errors import BnreproError
from bnrepro.config import compose
from bnrepro.training.record import REPO, cpu_name

from bench_conv import side_by_side  # scripts/bench_conv.py

FIG1 = ["experiment=fig1_mnist", "variant=bn", "trainer.progress=none"]


def machine(device: torch.device) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return (f"{name} ({device}), {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, load average {load} (other processes slow every number alike)")


def data_overrides(data: str) -> list[str]:
    """Fashion-MNIST where it is found (the shapes of Figure 1's MNIST); else a synthetic stand-in."""
    if data != "auto":
        return [f"data={data}"]
    from bnrepro.data import tensors

    try:
        tensors.load(compose("data=fashion_mnist").data, torch.device("cpu"))
        return ["data=fashion_mnist"]
    except BnreproError:
        print("Fashion-MNIST not found: timing on synthetic data of the same shapes.", file=sys.stderr)
        return ["data=synthetic", "data.synthetic.train_size=60000", "data.synthetic.test_size=10000"]


def naive_loop(x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device, batch_size: int = 60,
               losses: list[float] | None = None) -> float:
    """Steps/s of the tutorial way: DataLoader(TensorDataset), module, optimizer, loss.item().
    `losses`, if given, receives every step's loss (what the tutorial's `.item()` reads anyway)."""
    torch.manual_seed(0)
    layers, width = [nn.Flatten()], x[0].numel()
    for _ in range(3):
        layers += [nn.Linear(width, 100, bias=False), nn.BatchNorm1d(100), nn.Sigmoid()]
        width = 100
    model = nn.Sequential(*layers, nn.Linear(100, 10)).to(device)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    step, running_loss = 0, 0.0
    start = time.perf_counter()
    while step < steps:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if losses is not None:
                losses.append(loss.item())
            step += 1
            if step == steps:
                break
    return steps / (time.perf_counter() - start)


def suite_runs(overrides: list[str], steps: int, seeds: list[int], out: Path) -> dict[str, float]:
    """Model-steps/s of the single-run path (seed 0) and of the stacked path (all `seeds`),
    evaluation and probes on, and the share of the stacked loop spent evaluating and probing."""
    from bnrepro.training.session import run

    common = [*FIG1, *overrides, f"trainer.max_steps={steps}"]
    single = run(compose(*common, "seed=0"), out / "single")[0]
    stacked = run(compose(*common, f"seeds=[{','.join(map(str, seeds))}]"), out / "stacked")[0]
    return {"single": single["steps_per_s"], "stacked": stacked["model_steps_per_s"],
            "eval_pct": 100 * stacked["eval_time_s"] / stacked["train_time_s"],
            "probe_pct": 100 * stacked["probe_time_s"] / stacked["train_time_s"]}


def fig1_layout(overrides: list[str], steps: int) -> dict[str, list[str]]:
    """`make fig1`: one stacked 5-seed process per variant."""
    common = [*FIG1[:1], *[o for o in overrides if not o.startswith("trainer.threads")], f"trainer.max_steps={steps}",
              "seeds=[0,1,2,3,4]"]
    return {v: [*common, f"variant={v}"] for v in ("baseline", "bn")}


def write_fixture(root: Path, runs: int = 100, steps: int = 50_000, seed: int = 0) -> Path:
    """A TIMING FIXTURE: `runs` run directories of Figure 1's format and length (train loss every
    100 steps, test every 500, probes every 200), filled with made-up numbers."""
    g = torch.Generator().manual_seed(seed)
    names = [f"layer{l}/{k}_p{p}" for l in (1, 2, 3) for k in ("unit", "all") for p in (15, 50, 85)]
    for r in range(runs):
        variant, run_seed = ("baseline", "bn")[r % 2], r // 2
        d = root / "fixture" / f"seed={run_seed},variant={variant}"
        d.mkdir(parents=True)
        noise = torch.rand(steps // 100 + 1, len(names) + 3, generator=g).tolist()
        with open(d / METRICS_FILE, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(METRICS_COLUMNS)
            for step in range(0, steps + 1, 100):
                row = noise[step // 100]
                if step:
                    w.writerows([(step, "train", "loss", row[0]), (step, "train", "lr", 0.1),
                                 (step, "train", "epoch", step // 1000)])
                if step and step % 500 == 0:
                    w.writerows([(step, "test", "loss", row[1]), (step, "test", "accuracy", row[2]),
                                 (step, "test", "best_accuracy", row[2])])
                if step % 200 == 0:
                    w.writerows((step, "probe", n, v) for n, v in zip(names, row[3:]))
        (d / "config.yaml").write_text(f"variant: {variant}\nseed: {run_seed}\nexperiment: fig1_mnist\n"
                                       "data:\n  name: fashion_mnist\n")
        (d / "summary.json").write_text(json.dumps({"status": "completed", "timing_fixture": True}))
    return root / "fixture"


def time_figure(sweep: Path, out: Path) -> float:
    """Seconds for `python scripts/plot_fig1.py SWEEP`, interpreter start and imports included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "scripts" / "plot_fig1.py"), str(sweep), "--out", str(out)],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1,000 steps instead of 3 of 3,000")
    parser.add_argument("--steps", type=int, help="training steps per measurement (a multiple of 500)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, best of each kept (default 2 quick, 3 full)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every measurement (default 1: the sweep runs one process per core)")
    parser.add_argument("--data", default="auto", help="data config (default: fashion_mnist if found, else synthetic)")
    parser.add_argument("--conv-steps", type=int,
                        help="training steps per Figure 2 measurement (default 300, 150 quick; 0 skips the conv path)")
    parser.add_argument("--runs", type=int, default=100, help="runs in the figure-regeneration fixture")
    parser.add_argument("--conv", action=argparse.BooleanOptionalAction, default=None,
                        help="the Inceptions' images/s (default: on for cuda, off for cpu)")
    parser.add_argument("--conv-batch", type=int, help="batch size of the Inception timings (default 256 on cuda)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, for the fraction of peak")
    parser.add_argument("--roofline", action=argparse.BooleanOptionalAction, default=None,
                        help="the two steps against this machine's roofline (scripts/roofline.py; default: on for cpu)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    steps = args.steps or (1000 if args.quick else 3000)
    if args.conv_steps is None:
        args.conv_steps = 150 if args.quick else 300
    args.rounds = args.rounds or (2 if args.quick else 3)
    report: dict[str, float] = {}
    print(f"Machine: {machine(device)}")
    with tempfile.TemporaryDirectory(prefix="bnrepro-bench-") as tmp:
        tmp = Path(tmp)
        overrides = [*data_overrides(args.data), f"trainer.device={args.device}", f"trainer.threads={args.threads}"]
        from bnrepro.data import tensors

        splits = tensors.load(compose(*FIG1, *overrides).data, torch.device("cpu"))
        # Interleaved rounds, best of each: on a shared machine the quietest round of each path
        # is the fairest comparison (other processes only ever slow a round down).
        rounds = []
        for r in range(args.rounds):
            naive = naive_loop(splits.x_train, splits.y_train, steps, device)
            rounds.append({"naive": naive, **suite_runs(overrides, steps, [0, 1, 2, 3, 4], tmp / f"runs{r}")})
        report["naive"] = max(r["naive"] for r in rounds)
        report["single"] = max(r["single"] for r in rounds)
        report.update({k: v for k, v in max(rounds, key=lambda r: r["stacked"]).items() if k != "single" and k != "naive"})
        print(f"best of {args.rounds} interleaved rounds of {steps:,} steps each:")
        print(f"(a) naive loop (DataLoader, batch 60), training only: {report['naive']:8,.0f} steps/s")
        print(f"(b) suite, one run, eval + probes on:                 {report['single']:8,.0f} steps/s "
              f"({report['single'] / report['naive']:.2f}x naive)")
        print(f"(c) suite, 5 seeds stacked, eval + probes on:         {report['stacked']:8,.0f} model-steps/s "
              f"({report['stacked'] / report['naive']:.2f}x naive)")
        print(f"    of (c)'s training loop: evaluation {report['eval_pct']:.1f}%, probes {report['probe_pct']:.1f}%")
        report["ratio_per_core"] = report["stacked"] / report["naive"]
        if device.type == "cpu" and (os.cpu_count() or 1) >= 2:
            torch.set_num_threads(os.cpu_count())
            report["naive_machine"] = max(naive_loop(splits.x_train, splits.y_train, steps, device)
                                          for _ in range(args.rounds))
            report["suite_machine"] = max(side_by_side(fig1_layout(overrides, steps), tmp / f"machine{r}")
                                          for r in range(args.rounds))
            torch.set_num_threads(args.threads)
            report["ratio"] = report["suite_machine"] / report["naive_machine"]
            print(f"(d) whole machine, {os.cpu_count()} cores: naive with {os.cpu_count()} threads "
                  f"{report['naive_machine']:,.0f} steps/s; make fig1's layout (2 stacked processes side by side) "
                  f"{report['suite_machine']:,.0f} model-steps/s ({report['ratio']:.2f}x)")
            fig1_rate = report["suite_machine"]
        else:
            report["ratio"], fig1_rate = report["ratio_per_core"], report["stacked"]
        report["figure1_minutes"] = 2 * 5 * 50_000 / fig1_rate / 60
        print(f"    the whole Figure 1 (2 variants x 5 seeds x 50,000 steps) at that rate: "
              f"~{report['figure1_minutes']:.1f} min of training")
        sweep = write_fixture(tmp / "fig", runs=args.runs)
        report["figure_s"] = time_figure(sweep, tmp / "fig" / "out")
        print(f"Figure 1 from a {args.runs}-run sweep (timing fixture): {report['figure_s']:.1f} s")
        if device.type == "cpu" and args.conv_steps:
            from bench_conv import conv_ratio

            report.update(conv_ratio(data_overrides(args.data), args.conv_steps, args.rounds, tmp))
    if args.conv if args.conv is not None else device.type == "cuda":
        from bench_conv import conv_report

        report.update(conv_report(device, args.quick, args.peak_tflops, args.conv_batch))
    if args.roofline if args.roofline is not None else device.type == "cpu":
        from roofline import roofline, roofline_lines

        report.update(roofline(args.quick))
    print(f"per-core ratio (c)/(a) = {report['ratio_per_core']:.2f}")
    if "conv_ratio" in report:
        print(f"per-core ratio (g)/(e) = {report['conv_ratio_per_core']:.2f}")
    if "roofline_mlp_pct" in report:
        print("\n".join(roofline_lines(report)))
    print(f"RATIO mlp suite/naive, eval + probes on, whole machine = {report['ratio']:.2f}")
    if "conv_ratio" in report:
        print(f"RATIO conv suite/naive, eval + probes on, whole machine = {report['conv_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


if __name__ == "__main__":
    main()
