"""Every result of the suite as one unit: its sweeps, its claims, the scripts that render its tables, plots
and report, and its line in the README. `scripts/figures.py` renders one result or all (`make figures`);
the scorecard iterates RESULTS. Adding a result is one entry here (README: "Adding a paper result").

A Result is one line of the README's status table. Its `studies` each own a set of claims read from one
sweep (`claims(root)`: the sweep root, outputs/results/ -> claim specs); its `renders` are command lines
(script and arguments; `{root}` is the sweep root, `{results}` the results/ directory), which write the
result's files. No torch, no Hydra: every loader here reads files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bnrepro.analysis import bn_statistics, claims, selection, why
from bnrepro.analysis.results import load_metrics, load_runs, load_yaml
from bnrepro.analysis.sweeps import load as load_sweep

DATA = "fashion_mnist"


def sweep(name: str) -> str:
    """A sweep's directory name, under the sweep root (outputs/results/) and under results/."""
    return f"{name}_{DATA}"


def read(root: Path, name: str, loader: Callable):
    """A sweep loaded, or None where it does not exist (its claims then read `not run`)."""
    path = root / sweep(name)
    return loader(path) if path.is_dir() else None


@dataclass(frozen=True)
class Study:
    name: str  # the scorecard's key, the prefix of its claim ids
    label: str  # the scorecard's `experiment` column
    figure: str  # the file each claim links to, under results/
    claims: Callable[[Path], list[dict]]
    sweep: str = ""  # the sweep its claims read (default: its name), for the data set the rows name
    # The study this one replaces once all its claims are read (a later protocol of the same figure): the
    # earlier rows stay on the scorecard, labelled superseded, out of the counts; until then this one's are.
    supersedes: str = ""


@dataclass(frozen=True)
class Result:
    name: str  # `scripts/figures.py NAME`
    title: str  # the README's first column
    shows: str
    config: str
    scope: str  # "paper" or "beyond": counted apart
    sweeps: tuple[str, ...]  # sweep names it reads (each sweep(name) under the root and under results/)
    renders: tuple[tuple[str, ...], ...]
    links: str  # the README's link(s) to its report(s)
    studies: tuple[Study, ...] = field(default_factory=tuple)


def _fig3(root: Path) -> list[dict]:
    metrics = read(root, "fig2", load_metrics)
    return claims.fig3_claims(metrics, read(root, "fig2", load_runs))


def _fig4(root: Path) -> list[dict]:
    return claims.fig4_claims([root / sweep("fig2"), root / sweep("fig4")] if (root / sweep("fig4")).is_dir() else [])


def _fig3_v2(root: Path) -> list[dict]:
    return claims.fig3_claims(read(root, "fig2_v2", load_metrics), read(root, "fig2_v2", load_runs), "fig3_v2")


def _fig4_v2(root: Path) -> list[dict]:
    """The recipe is chosen again from the selection sweep (as chosen.yaml was), so nothing here reads a file
    that a rerun of the selection could leave stale."""
    select, report = root / sweep("fig2_select_v2"), root / sweep("fig2_v2")
    recipe = selection.chosen_from(select)["fig4_recipe"] if select.is_dir() else None
    return claims.fig4_v2_claims(report if report.is_dir() else None, recipe)


def _why(name: str) -> Study:
    return Study(name, why.LABELS[name], f"{sweep(name)}/{why.study(name)}.png",
                 lambda root: why.claims(name, read(root, name, why.load)))


def data_set(root: Path, name: str) -> str:
    """The data set a sweep's runs used (data.name in the first run's config.yaml); "" without runs."""
    path = root / sweep(name)
    config = next(path.rglob("config.yaml"), None) if path.is_dir() else None
    if config is None:
        return ""
    cfg = load_yaml(config.read_text()) or {}
    return str((cfg.get("data") or {}).get("name") or "")


def _bn_stats(name: str, label: str) -> Study:
    loader = (lambda p: bn_statistics.load_shift(p, required=False)) if name == "bn_shift" else bn_statistics.load
    return Study(name, label, f"{sweep(name)}/{name.removesuffix(why.CONV)}.png",
                 lambda root: bn_statistics.claims(name, read(root, name, loader)))


def _report(name: str, script: str, plot: str | None = None, extra: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
    """The usual pair: a plot script and a report script, each reading the sweep and writing into results/."""
    src, out = f"{{root}}/{sweep(name)}", f"{{results}}/{sweep(name)}"
    plots = ((f"scripts/plot_{plot}.py", src, "--out", out),) if plot else ()
    return (*plots, (f"scripts/{script}.py", src, "--out", out, *extra))


# Santurkar et al.'s deep linear network (issue 32) has twins of the two studies measured on it there.
WHY_NAMES = [*why.STUDIES, *(s + why.CONV for s in why.STUDIES), "why_noisy_bn" + why.DLN, "why_ics" + why.DLN]
NORMS = {"norms": "norm_batchsize", "norms_conv": "norm_batchsize_conv"}  # study -> sweep
BN_STATS = {"bn_statistics": "BN statistics vs normalization batch",
            "bn_statistics_conv": "BN statistics vs normalization batch, small Inception",
            "bn_shift": "BN statistics under shift"}

RESULTS: tuple[Result, ...] = (
    Result("fig1", "Figure 1 (Sec. 4.1)", "MNIST MLP: BN converges faster, keeps sigmoid inputs stable",
           "`experiment=fig1_mnist`", "paper", ("fig1",),
           (("scripts/plot_fig1.py", f"{{root}}/{sweep('fig1')}", "--out", f"{{results}}/{sweep('fig1')}"),
            ("scripts/report_fig1.py", f"{{root}}/{sweep('fig1')}", "--out", f"{{results}}/{sweep('fig1')}/report.md")),
           f"[results/{sweep('fig1')}](results/{sweep('fig1')}/report.md)",
           (Study("fig1", "Figure 1", f"{sweep('fig1')}/fig1.png",
                  lambda root: claims.fig1_claims(read(root, "fig1", load_metrics))),)),
    Result("fig2", "Figures 2, 3 (Sec. 4.2)", "Inception variants: BN-x5/x30 reach Inception's accuracy in far fewer steps",
           "`experiment=fig2_fashion_mnist` (CPU), `fig2_cifar10`, `fig2_imagenet_subset` (GPU)", "paper",
           ("fig2", "fig2_lr", "fig2_single", "fig2_decay"),
           (("scripts/plot_fig2.py", f"{{root}}/{sweep('fig2')}", "--out", f"{{results}}/{sweep('fig2')}"),
            ("scripts/table_lr.py", f"{{root}}/{sweep('fig2_lr')}", "--out", f"{{results}}/{sweep('fig2_lr')}"),
            ("scripts/table_fig3.py", f"{{root}}/{sweep('fig2')}", "--out", f"{{results}}/{sweep('fig2')}"),
            ("scripts/table_fig3.py", f"{{root}}/{sweep('fig2_single')}", "--out", f"{{results}}/{sweep('fig2_single')}"),
            ("scripts/table_fig2_decay.py", f"{{root}}/{sweep('fig2_decay')}", "--base", f"{{root}}/{sweep('fig2')}",
             "--out", f"{{results}}/{sweep('fig2_decay')}")),
           f"[results/{sweep('fig2')}](results/{sweep('fig2')}/fig3.md)",
           (Study("fig3", "Figures 2, 3", f"{sweep('fig2')}/fig2.png", _fig3, "fig2"),)),
    Result("fig4", "Figure 4 (Sec. 4.2.3)", "an ensemble of BN-Inceptions beats its single networks (4.9% top-5 error "
           "on ImageNet)", "`experiment=fig4_fashion_mnist` (CPU)", "paper", ("fig4", "fig2"),
           (("scripts/table_fig4.py", f"{{root}}/{sweep('fig4')}", "--members", f"{{root}}/{sweep('fig2')}",
             "--out", f"{{results}}/{sweep('fig4')}"),),
           f"[results/{sweep('fig4')}](results/{sweep('fig4')}/fig4.md)",
           (Study("fig4", "Figure 4", f"{sweep('fig4')}/fig4.md", _fig4),)),
    Result("fig2_v2", "Figures 2-4, protocol v2 (Sec. 4.2)", "the same claims, re-run (issue 31): decay "
           "acceleration chosen on validation with held-out seeds, 6 seeds, each run to its plateau, the whole test "
           "split, Figure 4's ensemble of the val-best recipe", "`experiment=fig2_v2_fashion_mnist` (CPU)", "paper",
           ("fig2_v2", "fig2_select_v2", "fig2_v2_paper_k"),
           (("scripts/select_fig2_k.py", f"{{root}}/{sweep('fig2_select_v2')}", "--out",
             f"{{results}}/{sweep('fig2_select_v2')}"),
            ("scripts/plot_fig2.py", f"{{root}}/{sweep('fig2_v2')}", "--out", f"{{results}}/{sweep('fig2_v2')}"),
            ("scripts/table_fig3.py", f"{{root}}/{sweep('fig2_v2')}", "--v2", "--out", f"{{results}}/{sweep('fig2_v2')}"),
            ("scripts/table_fig2_decay.py", f"{{root}}/{sweep('fig2_v2_paper_k')}", "--base", f"{{root}}/{sweep('fig2_v2')}",
             "--out", f"{{results}}/{sweep('fig2_v2_paper_k')}"),
            ("scripts/table_fig4_v2.py", f"{{root}}/{sweep('fig2_v2')}", "--select", f"{{root}}/{sweep('fig2_select_v2')}",
             "--out", f"{{results}}/{sweep('fig4_v2')}")),
           f"[Figure 3](results/{sweep('fig2_v2')}/fig3.md), [Figure 4](results/{sweep('fig4_v2')}/fig4.md), "
           f"[selection](results/{sweep('fig2_select_v2')}/select.md)",
           (Study("fig3_v2", "Figures 2, 3 (v2)", f"{sweep('fig2_v2')}/fig2.png", _fig3_v2, "fig2_v2", "fig3"),
            Study("fig4_v2", "Figure 4 (v2)", f"{sweep('fig4_v2')}/fig4.md", _fig4_v2, "fig2_v2", "fig4"))),
    Result("fig1_sensitivity", "Figure 1, sensitivity (beyond the paper)", "Figure 1 over init scale x rate x momentum",
           "`experiment=fig1_sensitivity`", "beyond", ("fig1_sensitivity",),
           _report("fig1_sensitivity", "report_fig1_sensitivity", "fig1_sensitivity"),
           f"[results/{sweep('fig1_sensitivity')}](results/{sweep('fig1_sensitivity')}/report.md)"),
    Result("placement", "Beyond the paper (seeds 000, 001)", "BN before vs after the nonlinearity, ReLU and sigmoid",
           "`experiment=placement_mlp`, `placement_conv`", "beyond", ("placement_mlp", "placement_conv"),
           (*_report("placement_mlp", "report_placement", "placement"),
            *_report("placement_conv", "report_placement", "placement")),
           f"[MLP](results/{sweep('placement_mlp')}/report.md), "
           f"[small Inception](results/{sweep('placement_conv')}/report.md)",
           tuple(Study(w, f"BN placement, {m}", f"{sweep(w)}/placement.png",
                       lambda root, w=w: claims.placement_claims(read(root, w, load_sweep), w))
                 for w, m in (("placement_mlp", "MLP"), ("placement_conv", "small Inception")))),
    Result("norms", "Beyond the paper (seed 004)", "batch, layer, group normalization at batch sizes 2-128",
           "`experiment=norm_batchsize` (MLP), `norm_batchsize_conv` (small Inception)", "beyond",
           tuple(NORMS.values()), tuple(r for n in NORMS.values() for r in _report(n, "report_norms", "norms")),
           f"[MLP](results/{sweep('norm_batchsize')}/report.md), "
           f"[small Inception](results/{sweep('norm_batchsize_conv')}/report.md)",
           tuple(Study(s, label, f"{sweep(n)}/norms.png",
                       lambda root, n=n, s=s: claims.norms_claims(read(root, n, load_sweep), s), n)
                 for (s, n), label in zip(NORMS.items(), ("norm vs batch size", "norm vs batch size, small Inception")))),
    Result("bf16", "Precision check (issue 35)", "bf16 autocast against float32 on Figure 2's protocol v2, the same "
           "seeds", "`experiment=fig2_v2_bf16`", "beyond", ("fig2_v2_bf16", "fig2_v2"),
           (("scripts/compare_precision.py", f"{{root}}/{sweep('fig2_v2_bf16')}", "--base", f"{{root}}/{sweep('fig2_v2')}",
             "--out", f"{{results}}/{sweep('fig2_v2_bf16')}"),),
           f"[precision](results/{sweep('fig2_v2_bf16')}/precision.md)"),
    Result("why", "Beyond the paper (issue 17)", "why BN helps: noisy BN, gradient-based ICS, landscape smoothness, "
           "rate range", "`experiment=why_noisy_bn`, `why_ics`, `why_landscape`, `lr_range` (MLP); each with `_conv` "
           "(small Inception); `why_noisy_bn_dln`, `why_ics_dln` (25-layer linear net)", "beyond", tuple(WHY_NAMES),
           tuple(r for n in WHY_NAMES for r in _report(n, "report_why", why.study(n))),
           ", ".join(f"[{n}](results/{sweep(n)}/report.md)" for n in WHY_NAMES),
           tuple(_why(n) for n in WHY_NAMES)),
    Result("bn_statistics", "Beyond the paper II (issue 18)", "BN's population statistics at small normalization "
           "batches (EMA, PreciseBN, FrozenBN, Batch Renorm vs group norm); statistics recomputed under a shift",
           "`experiment=bn_statistics` (MLP), `bn_statistics_conv` (small Inception), `bn_shift`", "beyond",
           tuple(BN_STATS), tuple(r for n in BN_STATS for r in _report(n, "report_bn_statistics",
                                                                       n.removesuffix(why.CONV))),
           ", ".join(f"[{n}](results/{sweep(n)}/report.md)" for n in BN_STATS),
           tuple(_bn_stats(n, label) for n, label in BN_STATS.items())),
)


def get(name: str) -> Result:
    for r in RESULTS:
        if r.name == name:
            return r
    raise KeyError(f"no result named {name!r}: one of {', '.join(r.name for r in RESULTS)}")


def all_sweeps() -> list[str]:
    """Every sweep any result reads, once, in the registry's order."""
    return list(dict.fromkeys(s for r in RESULTS for s in r.sweeps))
