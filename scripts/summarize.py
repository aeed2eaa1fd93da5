"""One table of every job in a sweep, however it ended: `python scripts/summarize.py SWEEP_DIR`.

The same as the `bnrepro-summarize` command (bnrepro/analysis/summarize.py): writes SWEEP_DIR/summary.csv
and prints it.
"""
import sys

from bnrepro.analysis.summarize import main

if __name__ == "__main__":
    sys.exit(main())
