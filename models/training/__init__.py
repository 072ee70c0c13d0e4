"""The offline trainer: datasets (data/), the training loop, evaluation and comparisons (CLI: ms3m train / eval)."""
