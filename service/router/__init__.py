"""Agentic control of MS³M experts: which experts run for each cell."""
