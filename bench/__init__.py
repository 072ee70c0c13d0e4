"""Every `ms3m bench …` benchmark (CLI: bench/cli.py). Each `run(...)` returns a result document
(service/output.py): {"benchmark", "settings", "columns", "rows", "summary"}.

Benchmarks import models/ and service/; neither imports bench (only service/cli.py registers bench.cli,
lazily). They need the `train` extra: models are built and exported with torch before the serving path
is timed, so in the images they run in the trainer image (the serving image has no torch).
"""
