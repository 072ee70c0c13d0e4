"""SSM layers, one file each; each file also registers the SSM stack forecaster built on it."""
