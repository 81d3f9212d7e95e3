"""Photonic tensor-core simulator, device level: MZI meshes and their non-idealities.

A unitary is programmed onto a mesh of Mach-Zehnder interferometers by :func:`decompose`
(``mesh="clements"``, rectangular, or ``"reck"``, triangular; ``real=True`` for one angle per MZI)
into an :class:`MZIMesh`, a pytree of phases; :func:`reconstruct` gives its matrix back, under
``jit``, ``vmap`` and ``grad``. An arbitrary matrix is mapped by its SVD onto two meshes and
attenuators (:func:`svd_mesh`, :class:`SVDMesh`, :func:`reconstruct_matrix`). :class:`Noise` holds
phase noise, phase-shifter gain variation, thermal crosstalk, insertion loss and the phase DACs'
resolution; :func:`perturb` draws a non-ideal mesh from a PRNG key and :func:`fidelity` scores it.
:func:`mzi_transfer` is the 2x2 MZI of Clements et al., Optica 3(12):1460 (2016), Eq. 1.

Grid level: a :class:`PTC` (``k x k`` core: MZI or microring, rates, reprogramming time, link budget,
energies) tiled in a :class:`Grid` of ``Rg x Cg`` cores runs layers lowered to GEMM by
:mod:`hwsim.systolic` (:func:`simulate_grid` -> :class:`GridResult`: folds, cycles, utilisation, SRAM
accesses, throughput, energy, laser feasibility), weight stationary, input stationary or the faster
of the two per layer (``dataflow="ws" | "is" | "best"``, :data:`DATAFLOWS`), with SRAM that keeps up
or that moves at most ``sram_bandwidth`` words per cycle (stalls); :func:`sweep` runs every
factorisation (:func:`factor_grids`) of several PE budgets in one compiled call (:class:`SweepResult`).

Example:
    >>> from hwsim import photonic
    >>> u = jnp.array([[0, 1j], [1j, 0]], dtype=jnp.complex64)
    >>> mesh = photonic.decompose(u)
    >>> bool(jnp.allclose(photonic.reconstruct(mesh), u, atol=1e-6))
    True
"""

from ._grid import CORES as CORES
from ._grid import DATAFLOWS as DATAFLOWS
from ._grid import ELECTRO_OPTIC_NS as ELECTRO_OPTIC_NS
from ._grid import PTC as PTC
from ._grid import THERMO_OPTIC_NS as THERMO_OPTIC_NS
from ._grid import Grid as Grid
from ._grid import GridResult as GridResult
from ._grid import SweepResult as SweepResult
from ._grid import as_topology as as_topology
from ._grid import factor_grids as factor_grids
from ._grid import simulate_grid as simulate_grid
from ._grid import sweep as sweep
from ._mesh import MESHES as MESHES
from ._mesh import MZIMesh as MZIMesh
from ._mesh import SVDMesh as SVDMesh
from ._mesh import decompose as decompose
from ._mesh import mzi_transfer as mzi_transfer
from ._mesh import reconstruct as reconstruct
from ._mesh import reconstruct_matrix as reconstruct_matrix
from ._mesh import svd_mesh as svd_mesh
from ._noise import Noise as Noise
from ._noise import fidelity as fidelity
from ._noise import perturb as perturb
