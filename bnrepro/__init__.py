"""bnrepro: a reproduction suite for Ioffe & Szegedy, Batch Normalization (ICML 2015)."""

__version__ = "0.1.0"

# Every run writes its numbers here, in long form (step, split, name, value). Kept in this
# torch-free module so that readers (plots, reports) start without importing torch.
METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("step", "split", "name", "value")
PREDICTIONS_FILE = "test_probs.csv"  # each final model's test-set class probabilities (trainer.save_predictions)
# Protocol v2 (issue 31, trainer.final_test / keep_best_val): the final and best-validation models evaluated on
# the whole test split after training (bnrepro/training/final_eval.py), and the best model's test probabilities.
FULL_TEST_FILE = "full_test.json"
BEST_VAL_PREDICTIONS_FILE = "test_probs_best_val.csv"
