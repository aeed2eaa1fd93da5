"""bnrepro: a reproduction suite for Ioffe & Szegedy, Batch Normalization (ICML 2015)."""

__version__ = "0.1.0"

# Every run writes its numbers here, in long form (step, split, name, value). Kept in this
# torch-free module so that readers (plots, reports) start without importing torch.
METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("step", "split", "name", "value")
PREDICTIONS_FILE = "test_probs.csv"  # each final model's test-set class probabilities (trainer.save_predictions)
