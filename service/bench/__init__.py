"""Benchmarks that drive the serving code (`ms3m bench runtime | service | controllability`). They need the
`train` extra: models are built and exported with torch before the serving path (torch-free) is timed."""
