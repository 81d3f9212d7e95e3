"""Placeholder until issue #3 lands: deep-network solvers for Kolmogorov PDEs."""
