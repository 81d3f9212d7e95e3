"""pde: deep-network solvers for high-dimensional Kolmogorov and semilinear parabolic PDEs.

Convention (see :mod:`pde._problem`): u_t + 1/2 Tr(sigma sigma^T Hess u) + mu . grad u
+ f(t, x, u, sigma^T grad u) = 0, u(T, x) = g(x); the solvers estimate u(0, x).
"""

# --- problem types (pde/_problem.py) ---
# --- multilevel Picard (pde/_picard.py) ---
from ._picard import multilevel_picard as multilevel_picard
from ._problem import AbstractLinearProblem as AbstractLinearProblem
from ._problem import AbstractProblem as AbstractProblem
from ._problem import Box as Box
from ._problem import Reference as Reference

# --- SDE types (pde/_sde_types.py); sampling lives in pde.sde ---
from ._sde_types import AbstractExactSDE as AbstractExactSDE
from ._sde_types import AbstractSDE as AbstractSDE
from ._sde_types import BrownianMotion as BrownianMotion
from ._sde_types import GeometricBrownianMotion as GeometricBrownianMotion
from ._sde_types import ItoSDE as ItoSDE

# --- benchmark problems (pde/problems.py) ---
from .problems import HJB as HJB
from .problems import PROBLEMS as PROBLEMS
from .problems import AllenCahn as AllenCahn
from .problems import DefaultRisk as DefaultRisk
from .problems import HeatGaussian as HeatGaussian
from .problems import HeatParaboloid as HeatParaboloid
from .problems import MaxCall as MaxCall
from .problems import QuadraticGradient as QuadraticGradient
from .problems import ReactionDiffusion as ReactionDiffusion
from .problems import make_problem as make_problem

# --- sampling (pde/sde.py) ---
from .sde import AbstractScheme as AbstractScheme
from .sde import EulerMaruyama as EulerMaruyama
from .sde import Exact as Exact
from .sde import Milstein as Milstein
from .sde import Path as Path
from .sde import sample_path as sample_path
from .sde import sample_paths as sample_paths
from .sde import sample_terminal as sample_terminal

# --- solvers (pde/solvers) ---
from .solvers import AbstractMethod as AbstractMethod
from .solvers import DeepBSDE as DeepBSDE
from .solvers import DeepKolmogorov as DeepKolmogorov
from .solvers import DeepSplitting as DeepSplitting
from .solvers import MultilevelPicard as MultilevelPicard
from .solvers import Solution as Solution
from .solvers import solve as solve
