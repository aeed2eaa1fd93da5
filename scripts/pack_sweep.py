"""A sweep's compact run data (bnrepro.analysis.rundata): pack it into results/, or unpack it.

    python scripts/pack_sweep.py outputs/results/fig2_fashion_mnist
    (writes results/fig2_fashion_mnist/rundata.tar.xz: every run's metrics.csv, summary.json,
    config.yaml, provenance.json, and test_probs.csv, shift.csv and statistics.csv where saved
    (scripts/eval_shift.py, eval_statistics.py), with their file times; the same sweep gives the same bytes)

    python scripts/pack_sweep.py outputs/results/fig2_fashion_mnist --unpack
    (the reverse: restores the sweep directory from results/fig2_fashion_mnist/rundata.tar.xz,
    or from --out FILE, so that `make figures` runs on a clone that never trained)

    python scripts/pack_sweep.py outputs/results/fig1_sensitivity_fashion_mnist --last-layer-probes
    (only the deepest layer's probe rows: what the sensitivity map reads; its 180 runs fit in ~4 MB)

`make fig1`, `fig2`, `placement` and `norms` end by packing; `make figures` unpacks a missing sweep.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.rundata import NAME, pack, unpack


def run(sweep_dir: Path, out: Path | None, unpack_: bool, last_layer_probes: bool) -> list[Path]:
    file = out if out is not None else Path("results") / sweep_dir.name / NAME
    if unpack_:
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing: no packed copy of {sweep_dir.name} to unpack.")
        unpack(file, sweep_dir)
        return [sweep_dir]
    return [pack(sweep_dir, file, probes="last" if last_layer_probes else "all")]


main = command(__doc__, run, f"the packed file (default results/<sweep name>/{NAME})",
               options=[(("--unpack",), {"dest": "unpack_", "action": "store_true",
                                          "help": "restore SWEEP_DIR from the packed file instead"}),
                        (("--last-layer-probes",), {"action": "store_true",
                                                    "help": "pack only the deepest layer's probe rows (a sweep "
                                                            "whose reports read no other; a third of the size)"})])

if __name__ == "__main__":
    sys.exit(main())
