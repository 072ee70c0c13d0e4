"""Benchmarks behind `ms3m bench …`: each `run(...)` returns {"benchmark", "settings", "columns", "rows", "summary"}."""
