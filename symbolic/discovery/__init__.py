"""symbolic.discovery: equation discovery, the expression and constant-fitting layer of MCI.

Na & Park (2026), "Machine Collective Intelligence": agents propose equation skeletons, the collective
fits and judges them by extrapolation. This package holds the shared machinery:

- **grammar** (:mod:`symbolic.discovery._grammar`): ``Operator(name, arity, jax_fn, sympy_fn)`` and an
  explicit ``Grammar`` (``default_grammar()``: ``+ - * / pow exp log sqrt sin cos tanh abs gamma erf``);
  operators are plain IEEE functions (no protection; non-finite predictions make a candidate invalid).
- **expressions** (:mod:`symbolic.discovery._expr`): trees of ``Var``, ``Const``, ``Literal``, ``Call``;
  ``parse``, ``from_sympy`` (rejects anything not whitelisted or not pointwise), ``to_sympy``,
  ``complexity``, ``n_constants``, ``free_constants``.
- **evaluation** (:mod:`symbolic.discovery._program`): ``compile_programs`` to fixed-length postfix
  programs, ``evaluate``/``evaluate_batch``: a ``lax.scan`` stack machine, operators vmapped over rows,
  ``lax.map`` over candidates (one compiled kernel for many candidates; row-wise by construction).
- **constant fitting** (:mod:`symbolic.discovery._fit`): ``fit_constants`` (variable projection for
  linear constants, multi-start Levenberg-Marquardt in float64 on log-magnitudes for the rest, snapping
  to simple rationals and multiples of pi, refit), ``linear_constants``, ``snap_value``.

Example:
    >>> from symbolic import discovery as d
    >>> e = d.from_sympy(d.parse("c0*exp(-c1/T)", ["T"]), ["T"])
    >>> d.complexity(e), d.n_constants(e)
    (8, 2)
"""

# --- agents (symbolic/discovery/_agent.py, _agents_*.py) ---
from ._agent import AbstractAgent as AbstractAgent
from ._agent import Context as Context
from ._agent import Hypothesis as Hypothesis
from ._agents_refine import ResidualAgent as ResidualAgent
from ._agents_refine import SimplifierAgent as SimplifierAgent
from ._agents_refine import skeleton as skeleton
from ._agents_regression import DimensionalAgent as DimensionalAgent
from ._agents_regression import PowerLawAgent as PowerLawAgent
from ._agents_regression import SparseRegressionAgent as SparseRegressionAgent
from ._agents_search import EnumerationAgent as EnumerationAgent
from ._agents_search import GeneticAgent as GeneticAgent
from ._agents_search import SeparabilityAgent as SeparabilityAgent

# --- the collective (symbolic/discovery/_collective.py) ---
from ._collective import Discovery as Discovery
from ._collective import Round as Round
from ._collective import default_agents as default_agents
from ._collective import discover as discover
from ._collective import internal_extrapolation_split as internal_extrapolation_split
from ._collective import residual_structure as residual_structure

# --- export (symbolic/discovery/_export.py) ---
from ._export import ExprFunction as ExprFunction
from ._export import VectorField as VectorField
from ._export import to_callable as to_callable
from ._export import to_latex as to_latex
from ._export import to_sympy_expr as to_sympy_expr
from ._export import to_vector_field as to_vector_field

# --- grammar (symbolic/discovery/_grammar.py) ---
# --- expressions (symbolic/discovery/_expr.py) ---
from ._expr import AbstractExpr as AbstractExpr
from ._expr import Call as Call
from ._expr import Const as Const
from ._expr import Literal as Literal
from ._expr import Var as Var
from ._expr import complexity as complexity
from ._expr import free_constants as free_constants
from ._expr import from_sympy as from_sympy
from ._expr import n_constants as n_constants
from ._expr import parse as parse
from ._expr import to_sympy as to_sympy

# --- constant fitting (symbolic/discovery/_fit.py) ---
from ._fit import FitResult as FitResult
from ._fit import fit_constants as fit_constants
from ._fit import linear_constants as linear_constants
from ._fit import snap_value as snap_value
from ._grammar import BUILTIN_OPERATORS as BUILTIN_OPERATORS
from ._grammar import Grammar as Grammar
from ._grammar import Operator as Operator
from ._grammar import default_grammar as default_grammar
from ._llm import AbstractBackend as AbstractBackend
from ._llm import BackendError as BackendError
from ._llm import LLMAgent as LLMAgent
from ._llm import LLMState as LLMState
from ._llm import OllamaBackend as OllamaBackend
from ._llm import OpenAIBackend as OpenAIBackend
from ._llm import ReplayBackend as ReplayBackend
from ._llm import ReplayMissError as ReplayMissError
from ._llm import message_hash as message_hash
from ._llm import parse_reply as parse_reply

# --- evaluation (symbolic/discovery/_program.py) ---
from ._program import Program as Program
from ._program import compile_programs as compile_programs
from ._program import evaluate as evaluate
from ._program import evaluate_batch as evaluate_batch
