"""Benchmarks of the served model: `make bench` (floor, served, naive, limit, memory) and `make perf`."""
