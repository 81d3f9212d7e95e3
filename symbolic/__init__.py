"""Placeholder until issues #7/#8 land: equation discovery and neuro-symbolic fuzzy logic."""
