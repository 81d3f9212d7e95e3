"""symbolic: neuro-symbolic methods on JAX.

Sub-packages: :mod:`symbolic.fuzzy` (differentiable fuzzy logic with Logic Tensor Networks semantics:
connectives, aggregators, quantifiers over named variables, knowledge-base satisfaction). Equation
discovery (``symbolic.discovery``) and KLUE rule learning are still to come.
"""

from . import discovery as discovery
from . import fuzzy as fuzzy
