"""Placeholder until issues #5/#6 land: photonic and systolic hardware simulators."""
