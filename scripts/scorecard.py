"""The reproduction scorecard: one row per claim of every registered result, the paper's value beside ours,
and a verdict under the one statistics policy.

    python scripts/scorecard.py outputs/results --out results
    (reads every sweep bnrepro/analysis/registry.py names under SWEEP_DIR; writes results/scorecard.csv,
    replaces the sections between the scorecard markers and the paper markers (the page's opening, where it
    has them) of results/README.md, and the status table between
    the markers of --readme, default README.md beside --out; a missing sweep makes its claims `not run`, and
    a SWEEP_DIR holding none of them is refused)

The claims: bnrepro/analysis/claims.py, why.py, bn_statistics.py; the policy: bnrepro/analysis/stats.py;
the rendering: bnrepro/analysis/scorecard.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bnrepro.analysis.cli import command
from bnrepro.analysis.scorecard import scorecard, section, sizes_line, write  # noqa: F401 (the tests use them)

main = command(__doc__, write, "directory for scorecard.csv and README.md's scorecard section (default: print it)",
               options=[(("--readme",), {"type": Path, "help": "a page whose status table (between its markers) "
                                                                "to regenerate (default: README.md beside --out)"})])

if __name__ == "__main__":
    sys.exit(main())
