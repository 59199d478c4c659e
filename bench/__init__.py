"""Benchmarks: they print figures and never assert timings (see README.md)."""
