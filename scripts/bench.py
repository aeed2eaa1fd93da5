"""The suite's speed against a naive PyTorch loop, on this machine: see bnrepro/bench.py.

    python scripts/bench.py --quick          # or the console script: bnrepro-bench --quick
    python scripts/bench.py --device cuda    # adds the Inceptions' images/s and fraction of peak
"""
from bnrepro.bench import main

if __name__ == "__main__":
    main()
