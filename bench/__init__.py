"""Benchmarks: each module starts what it needs and prints one table (`make bench`)."""
