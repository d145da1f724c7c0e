"""Benchmark harness: ``python -m benchmarks [--quick] [--json FILE]``."""
