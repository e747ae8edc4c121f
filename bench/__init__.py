"""Benchmark drivers for the numbers of DESIGN section 7 (`make bench`)."""
