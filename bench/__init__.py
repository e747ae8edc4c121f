"""Benchmark drivers for the project's speed and quality targets (`make bench`)."""
