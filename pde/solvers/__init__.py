"""PDE solvers behind one entry point, :func:`solve`."""

from ._base import AbstractMethod as AbstractMethod
from ._base import Solution as Solution
from ._base import solve as solve
from ._deep_bsde import DeepBSDE as DeepBSDE
from ._deep_kolmogorov import DeepKolmogorov as DeepKolmogorov
from ._deep_splitting import DeepSplitting as DeepSplitting
from ._multilevel_picard import MultilevelPicard as MultilevelPicard
