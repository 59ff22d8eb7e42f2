"""Benchmarks of fraudstream (``fraudstream bench``): they print tables and never fail on a missed floor."""
