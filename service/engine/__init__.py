"""The streaming engine: per-cell state table, micro-batched recurrent steps."""
