"""The offline trainer: datasets, training loop, evaluation and benchmarks (CLI: ms3m train / eval / bench)."""
