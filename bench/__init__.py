"""Reproducible benchmarks. Each starts what it needs and prints what it measured."""
