"""symbolic: neuro-symbolic methods on JAX.

Sub-packages:

- :mod:`symbolic.fuzzy`: differentiable fuzzy logic with Logic Tensor Networks semantics (connectives,
  aggregators, quantifiers over named variables, knowledge-base satisfaction) and KLUE's differentiable
  knowledge unit (concepts, two-way rules, knowledge read-out and update).
- :mod:`symbolic.discovery`: MCI equation discovery: expressions, jitted batched evaluation, robust
  constant fitting, agents and the collective, :func:`symbolic.discover`.
"""

from . import discovery as discovery
from . import fuzzy as fuzzy
from .discovery import discover as discover
