"""pde: deep-network solvers for high-dimensional Kolmogorov and semilinear parabolic PDEs.

Convention (see :mod:`pde._problem`): u_t + 1/2 Tr(sigma sigma^T Hess u) + mu . grad u
+ f(t, x, u, sigma^T grad u) = 0, u(T, x) = g(x); the solvers estimate u(0, x).
"""

# --- problem types (pde/_problem.py) ---
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

# --- sampling (pde/sde.py) ---

# --- benchmark problems (pde/problems.py) ---

# --- multilevel Picard (pde/_picard.py) ---
from ._picard import multilevel_picard as multilevel_picard

# --- solvers (pde/solvers) ---
