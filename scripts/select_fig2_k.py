"""Protocol v2's selection step (configs/experiment/fig2_v2_fashion_mnist.yaml; bnrepro.analysis.selection):
the accelerated decay factor k of BN-x5 and BN-x30 chosen on the selection sweep's validation curves (seeds
100, 101), and Figure 4's recipe; reads no test number.

    python scripts/select_fig2_k.py outputs/results/fig2_select_v2_fashion_mnist --out results/fig2_select_v2_fashion_mnist
    (writes select.csv, select.md and chosen.yaml, which `make fig2_v2` and `make fig4_v2` read; without --out,
    prints the Markdown)
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from bnrepro.analysis.cli import command, write_files
from bnrepro.analysis.results import load_metrics, provenance_lines
from bnrepro.analysis.selection import KEY, TIE, candidates, choose
from bnrepro.analysis.sweeps import wall_times
from bnrepro.paper import fig3_name


def write(sweep_dir: Path, out: Path | None) -> str | list[Path]:
    table = candidates(load_metrics(sweep_dir, keys=(KEY,)))
    chosen = choose(table)
    summed, elapsed = wall_times(sweep_dir)
    lines = ["# Protocol v2's selection step: the accelerated decay factor k", "",
             f"Sweep: `{sweep_dir}` (selection seeds only; validation split only). Rule: per variant, the k with the "
             f"highest seed-mean validation plateau (mean over the last 25% of its steps); within {100 * TIE:.2f} points, "
             "the larger k. Figure 4's recipe: the variant with the higher plateau at its chosen k.", "",
             *provenance_lines(sweep_dir),
             f"Wall time: {elapsed / 60:.1f} min; {summed / 60:.1f} min summed over processes.", "",
             "| model | k | seeds | steps run | val plateau (seed mean) | per seed | chosen |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in table.itertuples():
        mark = "**chosen**" if chosen.get(r.variant) == r.k else ""
        lines.append(f"| {fig3_name(r.variant)} | {r.k:g} | {r.seeds} | {r.steps_run:,.0f} | {100 * r.val_plateau:.2f}% | "
                     f"{r.seed_plateaus} | {mark} |")
    lines += ["", "Chosen: " + ", ".join(f"{fig3_name(v)} k = {k}" for v, k in chosen.items() if v != "fig4_recipe")
              + f"; Figure 4's recipe: {fig3_name(chosen['fig4_recipe'])} at its k."]
    text = "\n".join(lines) + "\n"
    if out is None:
        return text
    return write_files(out, {"select.csv": table, "select.md": text,
                             "chosen.yaml": yaml.safe_dump(chosen, sort_keys=True)})


main = command(__doc__, write, "directory for select.csv, select.md and chosen.yaml (default: print the Markdown)")

if __name__ == "__main__":
    sys.exit(main())
