"""Benchmarks (not tests): `make bench`. Each prints figures beside a baseline from the same run."""
