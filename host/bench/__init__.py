"""Benchmarks a user runs: the modes side by side (`hostctl bench`)."""
