"""Baseline forecasters under the same streaming contract (Transformer, LSTM, TCN, …)."""
