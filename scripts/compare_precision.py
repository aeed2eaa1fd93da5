"""bf16 against float32 on Figure 2's protocol v2 (issue 35 item 3; the rule: configs/experiment/fig2_v2_bf16.yaml):
per variant, the per-seed paired differences of the val plateau, the final model's whole-test accuracy, the steps
to the float32 reference level and the step the plateau rule stopped at, each judged against the float32
seeds' spread (bnrepro.analysis.precision).

    python scripts/compare_precision.py outputs/results/fig2_v2_bf16_fashion_mnist \
        --base outputs/results/fig2_v2_fashion_mnist --out results/fig2_v2_bf16_fashion_mnist
    (writes precision.csv, precision_seeds.csv and precision.md; without --out, prints the Markdown)
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.precision import compare, decision
from bnrepro.analysis.results import provenance_lines


def shown(value: float, scale: str) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+.2f}" if scale == "points" else f"{math.exp(value):.3f}x" if scale == "log" else f"{value:.2f}"


def noise(delta: float, scale: str) -> str:
    """The float32 seeds' spread as the band a difference is judged against."""
    if math.isnan(delta):
        return "-"
    return f"+-{delta:.2f}" if scale == "points" else f"x/ {math.exp(delta):.3f}"


def write(sweep_dir: Path, out: Path | None, base: Path | None = None) -> str | list[Path]:
    if base is None:
        raise ValueError("Give the float32 sweep with --base (outputs/results/fig2_v2_fashion_mnist; `make figures` "
                         "unpacks it from its committed run data).")
    frame, paired, threshold = compare(base, sweep_dir)
    lines = ["# bf16 against float32: Figure 2's protocol v2, the same seeds", "",
             f"bf16: `{sweep_dir}`; float32: `{base}`; reference level (float32 Inception's val plateau - 1 point): "
             f"{100 * threshold:.2f}%. Rule (committed before the sweep): configs/experiment/fig2_v2_bf16.yaml.", "",
             *provenance_lines(sweep_dir), "",
             "| variant | statistic | seeds | float32 | bf16 | bf16 - float32 [95% t interval] | seed noise | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in frame.itertuples():
        if r.scale == "ratio":
            lines.append(f"| {r.variant} | {r.statistic} | {r.seeds} | {r.fp32:.2f} | {r.bf16:.2f} | {r.difference:.2f}x | - | |")
            continue
        level = (lambda v: f"{v:.2f}") if r.scale == "points" else (lambda v: f"{math.exp(v):,.0f}")
        lines.append(f"| {r.variant} | {r.statistic} | {r.seeds} | {level(r.fp32)} | {level(r.bf16)} | "
                     f"{shown(r.difference, r.scale)} [{shown(r.ci_low, r.scale)}, {shown(r.ci_high, r.scale)}] | "
                     f"{noise(r.delta, r.scale)} | **{r.verdict}** |")
    lines += ["", "Points are accuracy points; steps are compared as ratios (geometric means; the interval on the "
              "log scale).", "", f"Decision: {decision(frame)}."]
    text = "\n".join(lines) + "\n"
    return text if out is None else write_files(out, {"precision.csv": frame, "precision_seeds.csv": paired,
                                                      "precision.md": text})


main = command(__doc__, write, "directory for precision.csv, precision_seeds.csv and precision.md (default: print)",
               options=[(("--base",), {"type": Path, "help": "the float32 sweep (fig2_v2's)"})])

if __name__ == "__main__":
    sys.exit(main())
