"""Figure 1 of the paper from a fig1_mnist sweep, drawn as the paper draws it:
(a) test accuracy vs steps with and without BN (seed mean, band +/- 1 std over seeds), on the
    paper's accuracy axis (0.7-1.0), with an inset on the last 60% of training where the finals
    are compared;
(b, c) the 15th/50th/85th percentiles of one seed's typical last-hidden-layer unit's sigmoid input
    (the lowest seed; "typical": the median unit at the first probe), without and with BN, on one
    scale: a single unit's curves, as in the paper, not percentiles averaged over different units;
(d) the across-seed summary: each seed's drift of that unit, the distance its three percentiles
    travel over training in input units (dots), and the scorecard's drift statistic (the numbers): the
    factor by which its 15-85 spread changes from 5% of training to the end (bnrepro.analysis.claims.
    spread_factor), never relative to the spread at step 0, which a small initialization makes tiny.

    python scripts/plot_fig1.py outputs/results/fig1_fashion_mnist --out results/fig1_fashion_mnist
    (writes fig1.png and fig1.pdf into --out, default the sweep directory)

Reads the runs' metrics.csv only; plots whatever exists (a sweep still running, diverged runs).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bnrepro.analysis.claims import spread_factor
from bnrepro.analysis.cli import command
from bnrepro.analysis.plots import mean_band, plt, save
from bnrepro.analysis.results import curve, last_layer, load_metrics
from bnrepro.analysis.sensitivity import drift

LABELS = {"baseline": "Without BN", "bn": "With BN"}
# One colour per network in every panel (a: its curve, b/c: its unit, d: its seeds); the percentiles
# of (b, c) differ by line style, so that no colour means two things in one figure.
COLOURS = {"baseline": "tab:blue", "bn": "tab:orange"}
STYLES = {15.0: ":", 50.0: "-", 85.0: "--"}
PAPER_AXIS = (0.7, 1.0)  # Figure 1(a)'s accuracy axis
INSET_FROM = 0.4  # the inset shows training from this fraction of the steps on


def accuracy_panel(ax, acc) -> None:
    for variant, rows in acc.groupby("variant"):
        mean_band(ax, rows, f"{LABELS.get(variant, variant)} (n={int(rows['count'].max())} seeds)",
                  colour=COLOURS.get(variant))
    low = min(PAPER_AXIS[0], float((acc["mean"] - acc["std"])[acc.step >= INSET_FROM * acc.step.max()].min()) - 0.02)
    ax.set(title="(a) test accuracy", xlabel="training steps", ylabel="accuracy", ylim=(low, PAPER_AXIS[1]))
    ax.legend(loc="upper left", fontsize=8)
    end = acc[acc.step >= INSET_FROM * acc.step.max()]
    if end.empty:
        return
    inset = ax.inset_axes([0.3, 0.07, 0.67, 0.36])
    for variant, rows in end.groupby("variant"):
        mean_band(inset, rows, "", alpha=0.2, colour=COLOURS.get(variant))
    lo, hi = float((end["mean"] - end["std"]).min()), float((end["mean"] + end["std"]).max())
    inset.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    inset.tick_params(labelsize=6)
    inset.grid(alpha=0.3)
    inset.set_title(f"from step {int(end.step.min()):,}", fontsize=8)


def unit_panels(axes, probes, layer) -> None:
    seed = int(probes.seed.min())
    for ax, variant, tag in ((axes[0], "baseline", "(b)"), (axes[1], "bn", "(c)")):
        ax.set(title=f"{tag} {LABELS[variant]}: one unit of {layer} (seed {seed}, n=1)", xlabel="training steps",
               ylabel="sigmoid input")
        rows = probes[(probes.variant == variant) & (probes.seed == seed)]
        names = sorted((n for n in rows.name.unique() if n.startswith(f"{layer}/unit_p")),
                       key=lambda n: float(n.rpartition("_p")[2]))
        for name in names:
            r = rows[rows.name == name].sort_values("step")
            p = float(name.rpartition("_p")[2])
            ax.plot(r.step, r.value, STYLES.get(p, "-."), color=COLOURS[variant], label=f"{p:g}th percentile")
        ax.legend(fontsize=8)
    lims = [ax.get_ylim() for ax in axes]
    for ax in axes:  # one scale, as in the paper, so the drift is comparable by eye
        ax.set_ylim(min(lo for lo, _ in lims), max(hi for _, hi in lims))


def drift_panel(ax, probes, layer) -> None:
    for i, variant in enumerate(("baseline", "bn")):
        runs = [drift(g, layer) for _, g in probes[probes.variant == variant].groupby("run")]
        moves = np.array([d["movement"] for d in runs])
        factor = np.array([spread_factor(g, layer) for _, g in probes[probes.variant == variant].groupby("run")])
        ax.scatter(np.full(len(moves), i) + np.linspace(-0.1, 0.1, len(moves)), moves, zorder=3,
                   color=COLOURS[variant])
        if len(moves):
            sd = np.nanstd(factor, ddof=1) if len(factor) > 1 else 0.0
            ax.text(i, np.nanmax(moves) * 1.3, f"spread x{np.nanmean(factor):.2f} from 5% of training\n"
                    f"(sd {sd:.2f}; the claim: {'> 2' if variant == 'baseline' else '< 2'})", ha="center", fontsize=8)
    counts = [probes.run[probes.variant == v].nunique() for v in ("baseline", "bn")]
    ax.set_xticks([0, 1], [f"{LABELS[v]} (n={n})" for v, n in zip(("baseline", "bn"), counts)])
    ax.set_xlim(-0.6, 1.6)
    ax.set_yscale("log")
    ax.set(title="(d) drift of that unit, one dot per seed", ylabel="percentile travel (input units)")
    ax.margins(y=0.4)


def plot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    metrics = load_metrics(sweep_dir)
    acc = curve(metrics, "test", "accuracy")
    probes = metrics[metrics.split == "probe"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.4), layout="constrained")
    accuracy_panel(axes[0], acc)
    if not probes.empty:
        layer = last_layer(probes)
        unit_panels(axes[1:3], probes, layer)
        drift_panel(axes[3], probes, layer)
    for ax in axes:
        ax.grid(alpha=0.3)
    data = ", ".join(map(str, metrics.data.dropna().unique()))
    fig.suptitle(f"Figure 1 (Sec. 4.1) at CPU scale on {data}: (a) mean over seeds, band +/- 1 std; "
                 "(b, c) one seed's typical last-layer unit; (d) its drift, every seed (mean, sd over seeds)",
                 fontsize=13)
    return save(fig, out_dir / "fig1.png", out_dir / "fig1.pdf")


main = command(__doc__, plot, "directory for fig1.png and fig1.pdf (default SWEEP_DIR)", default_out=".")

if __name__ == "__main__":
    sys.exit(main())
