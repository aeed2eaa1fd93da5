"""Where BN goes, from a placement_mlp or placement_conv sweep: one row per activation, with
(a) test accuracy against training steps per placement (mean and +/- 1 std band over seeds),
(b) each placement's final test accuracy (every seed as a dot, mean +/- 1 std as a bar),
(c) the quantile skew of the last probed layer's typical unit over training: the normalization's
    output (solid; with BN after the nonlinearity, the next layer's input) and the
    nonlinearity's input (dashed). Skew = ((p85 - p50) - (p50 - p15)) / (p85 - p15): 0 when
    symmetric, 1 when p15 = p50, the spike of zeros a ReLU leaves for BN-after to normalize (seed 001).

    python scripts/plot_placement.py outputs/results/placement_mlp_fashion_mnist --out results/placement_mlp_fashion_mnist
    (writes placement.png and placement.pdf into --out, default the sweep directory)

Reads metrics only (bnrepro.analysis.results via bnrepro.analysis.sweeps); plots whatever exists.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import mean_band, plt, save
from bnrepro.analysis.results import curve, last_layer, seed_band
from bnrepro.analysis.sweeps import PLACEMENT_ORDER, finals, load, placement_label, skew

BY = ("model.activation", "placement")


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = load(sweep_dir)
    acc = curve(metrics, "test", "accuracy", BY)
    runs = finals(metrics)
    layer = last_layer(metrics)
    skews = {kind: curve(skew(metrics, layer, kind), "probe", f"skew_{kind}", BY) for kind in ("norm_unit", "unit")} \
        if layer else {}
    norm = metrics["bn.norm"].dropna().iloc[0]
    activations = sorted(acc["model.activation"].unique())
    placements = [p for p in PLACEMENT_ORDER if p in set(acc.placement)]
    colours = {p: f"C{i}" for i, p in enumerate(PLACEMENT_ORDER)}
    fig, axes = plt.subplots(len(activations), 3, figsize=(14, 3.7 * len(activations)), layout="constrained",
                             squeeze=False)
    for row, activation in zip(axes, activations):
        for i, placement in enumerate(placements):
            label = placement_label(placement, norm)
            rows = acc[(acc["model.activation"] == activation) & (acc.placement == placement)]
            mean_band(row[0], rows, f"{label} (n={int(rows['count'].max())})")
            row[0].lines[-1].set_color(colours[placement])
            row[0].collections[-1].set_color(colours[placement])
            final = runs[(runs["model.activation"] == activation) & (runs.placement == placement)].final
            mean, std, _ = seed_band(final)
            row[1].errorbar(i + 0.15, mean, yerr=std, fmt="s", color=colours[placement], capsize=6)
            row[1].plot([i - 0.15] * len(final), final, "o", color=colours[placement], ms=4, alpha=0.6)
            for kind, style in (("norm_unit", "-"), ("unit", "--")):
                s = skews.get(kind)
                s = s[(s["model.activation"] == activation) & (s.placement == placement)] if s is not None else []
                if len(s):
                    what = "norm output" if kind == "norm_unit" else "g input"
                    row[2].plot(s.step, s["mean"], style, color=colours[placement], label=f"{label}: {what}")
        row[0].set(title=f"(a) {activation}: test accuracy", xlabel="training steps", ylabel="accuracy")
        row[0].legend(fontsize=8)
        row[1].set_xticks(range(len(placements)), [placement_label(p, norm).replace(" (paper)", "\n(paper)")
                                                    for p in placements], fontsize=8)
        row[1].set(title=f"(b) {activation}: final test accuracy, seeds and mean ± std", ylabel="accuracy",
                   xlim=(-0.6, len(placements) - 0.4))
        row[2].set(title=f"(c) {activation}: quantile skew, {layer} typical unit", xlabel="training steps",
                   ylabel="(p85 + p15 - 2 p50) / (p85 - p15)", ylim=(-1.05, 1.05))
        row[2].legend(fontsize=7)
        for ax in row:
            ax.grid(alpha=0.3)
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    model = ", ".join(map(str, metrics["model.name"].dropna().unique()))
    fig.suptitle(f"Where {placement_label('before', norm).split()[0]} goes: {model} on {data}")
    return save(fig, out_dir / "placement.png", out_dir / "placement.pdf")


main = command(__doc__, plot, "directory for placement.png and placement.pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
