"""The suite's one runner: `python experiments/train.py [overrides]`, or `-m` for a sweep.

    python experiments/train.py experiment=fig1_mnist variant=bn seed=0
    python experiments/train.py -m experiment=fig1_mnist variant=baseline,bn seed=0,1,2,3,4

Everything a run writes goes to Hydra's output directory (see configs/train.yaml), Hydra's own
.hydra/ record included, written once the run has passed its refusals (a refused rerun leaves the
directory as it was). Under `torchrun --nproc_per_node=N experiments/train.py ...` it trains
data-parallel (bnrepro/training/distributed.py). A user error exits with status 2: the suite's own
(a bad value, an unknown key, missing data) and Hydra's composition errors (a typo'd key, a wrong
type, an unknown choice or config group option) alike.
"""
import os
import sys

import hydra
from omegaconf import DictConfig

from bnrepro import config

started = []  # the task function was entered: Hydra composed the config


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    started.append(True)
    # Imported here, not above: torch and torchvision take seconds to import, and `--help`,
    # `--cfg job` and a refused config should answer without them (tests/test_startup.py).
    from bnrepro.training import session

    job = config.job()
    with config.compact_errors():
        session.main(lambda: config.typed(cfg), job.out_dir, job.sweep_dir, job.threads,
                     on_start=lambda: config.save_hydra_record(cfg, job.out_dir), sweep=job.sweep)


def run_hydra() -> None:
    """`main()`, with Hydra's exit status 1 for a config it could not compose made 2. Hydra prints
    such an error itself (one paragraph, no traceback) and exits 1 before the task function runs;
    once it has run, status 1 keeps its meaning (a bug, or a failed job of a sweep)."""
    try:
        config.check_override_keys(sys.argv[1:])  # `trainer.max_step=10` gets the suggestion too
    except config.BnreproError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except SystemExit as exit_:
        if exit_.code == 1 and not started:
            sys.exit(2)
        raise


if __name__ == "__main__":
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # only torchrun needs torch before Hydra starts
        from bnrepro.training import distributed

        distributed.init_from_env()  # one process group, one run directory for all ranks
    run_hydra()
