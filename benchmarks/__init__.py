"""Benchmarks, kept out of the library and the default test suite (`make bench`)."""
