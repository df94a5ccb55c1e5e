"""Benchmarks: `python -m bench [name ...]` prints every figure in one table."""
