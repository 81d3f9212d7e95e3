r"""Mach-Zehnder interferometer (MZI) meshes: transfer matrices, Clements and Reck decompositions.

**Convention.** Clements et al., "Optimal design for universal multiport interferometers", Optica
3(12):1460 (2016), Eq. 1, which is also the convention of the ``interferometer`` package 1.1.2. An MZI
with phases ``(theta, phi)`` on the adjacent modes ``(m, n) = (k, k + 1)`` acts on those two modes as

.. math::
    T(\theta, \phi) = \begin{pmatrix} e^{i\phi}\cos\theta & -\sin\theta \\
                                      e^{i\phi}\sin\theta & \cos\theta \end{pmatrix}

and as the identity on every other mode. A mesh of MZIs ``T_1, ..., T_M`` (``T_1`` is the first the
light meets) followed by a column of output phase shifters ``D = diag(exp(i * output_phases))``
implements

.. math::
    U = D \, T_M \cdots T_2 T_1 .

Modes are 0-indexed here; the paper and the reference data count them from 1.

**Meshes** (:data:`MESHES`). Both use ``N(N-1)/2`` MZIs, the fewest that reach every ``N x N``
unitary:

* ``"clements"``: the rectangular mesh of Clements et al. (2016), depth ``N`` (1 for ``N = 2``).
  Elements of ``U`` are nulled alternately from the right (``U T^{-1}``) and from the left (``T U``),
  one anti-diagonal at a time; the left factors are then moved through the diagonal,
  ``T^{-1} D = D' T'``, to the right of ``D``.
* ``"reck"``: the triangular mesh of Reck et al., "Experimental realization of any discrete unitary
  operator", Phys. Rev. Lett. 73(1):58 (1994), depth ``2N - 3``; row ``i`` is nulled from its right
  end by MZIs acting from the right.

The order of the nulling steps, and so of the MZIs, follows ``square_decomposition`` and
``triangle_decomposition`` of the ``interferometer`` package, whose output the tests compare with.

**Columns.** Every MZI sits in the first column after all earlier MZIs that share one of its modes
(as-soon-as-possible scheduling). The MZIs of a column act on disjoint mode pairs: a column is one
physical layer of the chip, and :func:`reconstruct` applies it as one vectorised step of a
``lax.scan``.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Complex, Float

import sciml.backend as B

__all__ = [
    "MESHES",
    "MZIMesh",
    "SVDMesh",
    "decompose",
    "mzi_transfer",
    "reconstruct",
    "reconstruct_matrix",
    "svd_mesh",
]

#: The valid values of ``mesh`` in :func:`decompose` and :func:`svd_mesh`.
MESHES: tuple[str, ...] = ("clements", "reck")


# --------------------------------------------------------------------------------------------------
# The MZI and the mesh
# --------------------------------------------------------------------------------------------------


def mzi_transfer(
    theta: Float[Array, "*batch"], phi: Float[Array, "*batch"]
) -> Complex[Array, "*batch 2 2"]:
    r"""The 2x2 transfer matrix of an MZI, Clements et al. (2016), Eq. 1.

    .. math::
        T(\theta, \phi) = \begin{pmatrix} e^{i\phi}\cos\theta & -\sin\theta \\
                                          e^{i\phi}\sin\theta & \cos\theta \end{pmatrix}

    Args:
        theta: splitting angle(s), a real floating array.
        phi: phase(s) on the first mode, same shape and dtype as ``theta``.

    Returns:
        A complex array of shape ``theta.shape + (2, 2)`` (complex64 for float32 phases,
        complex128 for float64).

    Raises:
        TypeError: ``theta`` or ``phi`` is not a real floating array, or their dtypes differ.
        ValueError: their shapes differ.

    Example:
        >>> from hwsim import photonic
        >>> t = photonic.mzi_transfer(jnp.array(jnp.pi / 4), jnp.array(0.3))
        >>> t.shape, t.dtype
        ((2, 2), dtype('complex64'))
        >>> jnp.round(jnp.abs(t) ** 2, 4)  # a balanced (50:50) MZI
        Array([[0.5, 0.5],
               [0.5, 0.5]], dtype=float32)
    """
    theta = B.check_float_array(theta, name="theta")
    phi = B.check_float_array(phi, name="phi")
    if theta.dtype != phi.dtype:
        raise TypeError(f"`theta` and `phi` must have the same dtype, got {theta.dtype} and {phi.dtype}")
    if theta.shape != phi.shape:
        raise ValueError(f"`theta` and `phi` must have the same shape, got {theta.shape} and {phi.shape}")
    return _transfer(theta, phi)


def _unit_phasor(p: Array, cdt: Any) -> Array:
    """``exp(i p)`` in ``cdt``; float16/bfloat16 phases are widened first (``lax.complex`` takes only
    float32/float64 parts, and ``B.complex_dtype`` maps them to complex64)."""
    p = p.astype(jnp.finfo(cdt).dtype)
    return lax.complex(jnp.cos(p), jnp.sin(p))


def _transfer(theta: Array, phi: Array) -> Array:
    cdt = B.complex_dtype(theta.dtype)
    e = _unit_phasor(phi, cdt)
    c = jnp.cos(theta).astype(cdt)
    s = jnp.sin(theta).astype(cdt)
    top = jnp.stack([e * c, -s], axis=-1)
    bottom = jnp.stack([e * s, c], axis=-1)
    return jnp.stack([top, bottom], axis=-2)


def _check_layout(n: Any, modes: Any, columns: Any) -> None:
    """The static layout of a mesh: adjacent mode pairs in range, columns consistent with the order."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` (number of modes) must be a positive int, got {n!r}")
    if not isinstance(modes, tuple) or not isinstance(columns, tuple):
        raise TypeError(
            "`modes` and `columns` must be tuples (static, hashable), got "
            f"{type(modes).__name__} and {type(columns).__name__}"
        )
    if len(modes) != len(columns):
        raise ValueError(f"`modes` and `columns` must have one entry per MZI, got {len(modes)} and "
                         f"{len(columns)}")
    last = [-1] * n  # the column of the latest MZI on each mode
    for i, (pair, col) in enumerate(zip(modes, columns)):
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(isinstance(m, int) for m in pair)
            or pair[1] != pair[0] + 1
            or not 0 <= pair[0] < n - 1
        ):
            raise ValueError(f"`modes[{i}]` must be a pair of adjacent modes (k, k + 1) with "
                             f"0 <= k < n - 1 = {n - 1}, got {pair!r}")
        if isinstance(col, bool) or not isinstance(col, int):
            raise ValueError(f"`columns[{i}]` must be an int, got {col!r}")
        k = pair[0]
        if col <= max(last[k], last[k + 1]):
            raise ValueError(
                f"`columns[{i}]` = {col} must be later than the column {max(last[k], last[k + 1])} of an "
                f"earlier MZI on modes {pair}: MZIs are listed in the order the light meets them"
            )
        last[k] = last[k + 1] = col


class MZIMesh(eqx.Module):
    """A mesh of MZIs and output phase shifters, ``U = D T_M ... T_1`` (see the module docstring).

    A pytree: the phases and the transmissions are array leaves (gradients, noise and ``vmap`` go
    through them without recompiling); the layout is static, hashable configuration. Built by
    :func:`decompose`; :func:`reconstruct` gives its matrix and :func:`hwsim.photonic.perturb` a
    non-ideal copy.

    Attributes:
        theta: splitting angle of each MZI, shape ``(M,)``, in the order the light meets them.
        phi: phase of each MZI (on its first mode), shape ``(M,)``.
        output_phases: the output phase screen ``D``, shape ``(n,)``.
        transmission: amplitude transmission of each MZI, shape ``(M,)``; 1 for a lossless MZI
            (insertion loss ``L`` dB gives ``10^(-L/20)``), applied to both of its outputs.
        n: number of modes (static).
        modes: the mode pair ``(k, k + 1)`` of each MZI, 0-indexed (static).
        columns: the column (physical layer) of each MZI (static).
        kind: ``"clements"``, ``"reck"`` or another name for a hand-made layout (static).

    Raises:
        ValueError: at construction, an inconsistent layout (pairs not adjacent or out of range,
            an MZI placed no later than an earlier one on a shared mode) or leaves whose last
            dimension is not ``M`` (``n`` for ``output_phases``).
        TypeError: at construction, leaves that are not real floating arrays of one dtype.

    Example:
        >>> from hwsim import photonic
        >>> mesh = photonic.decompose(jnp.eye(4, dtype=jnp.complex64))
        >>> mesh.num_mzi, mesh.depth, mesh.kind
        (6, 4, 'clements')
    """

    theta: Float[Array, " mzi"] = eqx.field(converter=jnp.asarray)
    phi: Float[Array, " mzi"] = eqx.field(converter=jnp.asarray)
    output_phases: Float[Array, " n"] = eqx.field(converter=jnp.asarray)
    transmission: Float[Array, " mzi"] = eqx.field(converter=jnp.asarray)
    n: int = eqx.field(static=True)
    modes: tuple[tuple[int, int], ...] = eqx.field(static=True)
    columns: tuple[int, ...] = eqx.field(static=True)
    kind: str = eqx.field(static=True, default="custom")

    def __check_init__(self):
        _check_layout(self.n, self.modes, self.columns)
        leaves = {"theta": self.theta, "phi": self.phi, "output_phases": self.output_phases,
                  "transmission": self.transmission}
        for name, leaf in leaves.items():
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(f"`{name}` must be a real floating array, got dtype {leaf.dtype}")
            if leaf.dtype != self.theta.dtype:
                raise TypeError(f"`{name}` must have the dtype of `theta` ({self.theta.dtype}), got "
                                f"{leaf.dtype}")
            size = self.n if name == "output_phases" else len(self.modes)
            if leaf.ndim < 1 or leaf.shape[-1] != size:
                raise ValueError(f"`{name}` must have last dimension {size}, got shape {leaf.shape}")

    @property
    def num_mzi(self) -> int:
        """Number of MZIs, ``N(N-1)/2`` for a full Clements or Reck mesh."""
        return len(self.modes)

    @property
    def depth(self) -> int:
        """Number of columns (optical depth in MZIs): ``N`` for Clements, ``2N - 3`` for Reck."""
        return max(self.columns) + 1 if self.columns else 0


# --------------------------------------------------------------------------------------------------
# Reconstruction: column by column, jit/vmap/grad-compatible
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _column_tables(
    n: int, modes: tuple[tuple[int, int], ...], columns: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per column and mode: which coefficient multiplies the mode itself and which partner it mixes.

    A column maps row ``j`` of the running matrix to ``alpha_j U[j] + beta_j U[partner_j]``. The
    coefficient index runs over ``[top rows of the M MZIs, bottom rows, idle]``: the top mode ``k``
    of MZI ``i`` takes ``(T_00, T_01)``, its bottom mode ``(T_11, T_10)``, an idle mode ``(1, 0)``.
    """
    m = len(modes)
    depth = max(columns) + 1 if columns else 0
    coef = np.full((depth, n), 2 * m, np.int32)
    partner = np.tile(np.arange(n, dtype=np.int32), (depth, 1))
    for i, ((a, b), col) in enumerate(zip(modes, columns)):
        coef[col, a], coef[col, b] = i, m + i
        partner[col, a], partner[col, b] = b, a
    return coef, partner


def reconstruct(mesh: MZIMesh) -> Complex[Array, "n n"]:
    r"""The matrix a mesh implements, ``U = D T_M \cdots T_1`` (lossy if its transmissions are < 1).

    Applies the mesh column by column (a ``lax.scan`` over the columns; each step mixes the rows of
    the running matrix pairwise), then the output phase screen. Pure and traceable: works under
    ``jax.jit`` and ``jax.vmap`` (e.g. over noisy copies of a mesh) and is differentiable with
    respect to every leaf of the mesh.

    Args:
        mesh: an :class:`MZIMesh`.

    Returns:
        The ``n x n`` complex matrix (complex64 for a float32 mesh, complex128 for float64). For an
        ideal mesh it is unitary; for a mesh from ``decompose(..., real=True)`` its imaginary part
        is zero to rounding.

    Raises:
        TypeError: ``mesh`` is not an :class:`MZIMesh`.
        ValueError: its leaves have batch dimensions (``jax.vmap`` over the batch instead).

    Example:
        >>> from hwsim import photonic
        >>> swap = jnp.array([[0, 1], [1, 0]], dtype=jnp.complex64)
        >>> u = photonic.reconstruct(photonic.decompose(swap))
        >>> bool(jnp.allclose(u, swap, atol=1e-6))
        True
    """
    if not isinstance(mesh, MZIMesh):
        raise TypeError(f"`mesh` must be an MZIMesh (from `decompose`), got {type(mesh).__name__}")
    _check_unbatched(mesh, "mesh")
    return _reconstruct(mesh)


def _check_unbatched(mesh: MZIMesh, name: str) -> None:
    """One mesh, not a batch: ``MZIMesh`` admits leading batch dimensions (for ``vmap``'s inputs),
    which the column tables cannot index; say so here instead of failing inside a JAX primitive."""
    for leaf in ("theta", "phi", "output_phases", "transmission"):
        shape = getattr(mesh, leaf).shape
        if len(shape) != 1:
            raise ValueError(f"`{name}.{leaf}` has shape {shape}, a batch of meshes; map over the batch "
                             "with jax.vmap instead of passing it whole")


@eqx.filter_jit
def _reconstruct(mesh: MZIMesh) -> Array:
    cdt = B.complex_dtype(mesh.theta.dtype)
    coef, partner = _column_tables(mesh.n, mesh.modes, mesh.columns)
    t = _transfer(mesh.theta, mesh.phi) * mesh.transmission.astype(cdt)[:, None, None]
    alpha = jnp.concatenate([t[:, 0, 0], t[:, 1, 1], jnp.ones((1,), cdt)])
    beta = jnp.concatenate([t[:, 0, 1], t[:, 1, 0], jnp.zeros((1,), cdt)])
    u = jnp.eye(mesh.n, dtype=cdt)
    if coef.shape[0]:

        def column(u, xs):
            a, b, p = xs
            return a[:, None] * u + b[:, None] * u[p], None

        u, _ = lax.scan(column, u, (alpha[coef], beta[coef], jnp.asarray(partner)))
    d = _unit_phasor(mesh.output_phases, cdt)
    return d[:, None] * u


# --------------------------------------------------------------------------------------------------
# Decomposition (host NumPy, float64)
# --------------------------------------------------------------------------------------------------


def _rotate_columns(a: np.ndarray, k: int, theta: float, phi: float) -> None:
    """``a <- a @ T(theta, phi)^{-1}`` on columns ``(k, k + 1)``, in place."""
    c, s = np.cos(theta), np.sin(theta)
    e = np.exp(-1j * phi) if np.iscomplexobj(a) else 1.0
    x, y = a[:, k].copy(), a[:, k + 1].copy()
    a[:, k] = e * c * x - s * y
    a[:, k + 1] = e * s * x + c * y


def _rotate_rows(a: np.ndarray, k: int, theta: float, phi: float) -> None:
    """``a <- T(theta, phi) @ a`` on rows ``(k, k + 1)``, in place."""
    c, s = np.cos(theta), np.sin(theta)
    e = np.exp(1j * phi) if np.iscomplexobj(a) else 1.0
    x, y = a[k].copy(), a[k + 1].copy()
    a[k] = e * c * x - s * y
    a[k + 1] = e * s * x + c * y


# The angles that null one element. `a` is the element on the MZI's first mode, `b` on its second.
# Complex meshes take theta in [0, pi/2] and phi in (-pi, pi]; real meshes fix phi = 0 and sign theta.


def _null_first_from_right(a, b, real: bool) -> tuple[float, float]:
    # (U T^-1)[r, k] = e^{-i phi} cos(theta) a - sin(theta) b = 0
    if real:
        return float(np.arctan2(a, b)), 0.0
    return float(np.arctan2(abs(a), abs(b))), float(np.angle(a * np.conj(b)))


def _null_second_from_right(a, b, real: bool) -> tuple[float, float]:
    # (U T^-1)[r, k + 1] = e^{-i phi} sin(theta) a + cos(theta) b = 0
    if real:
        return float(np.arctan2(-b, a)), 0.0
    return float(np.arctan2(abs(b), abs(a))), float(np.angle(-a * np.conj(b)))


def _null_second_from_left(a, b, real: bool) -> tuple[float, float]:
    # (T U)[k + 1, c] = e^{i phi} sin(theta) a + cos(theta) b = 0
    if real:
        return float(np.arctan2(-b, a)), 0.0
    return float(np.arctan2(abs(b), abs(a))), float(np.angle(-b * np.conj(a)))


def _unit_diagonal(a: np.ndarray, real: bool) -> np.ndarray:
    """The diagonal of the fully nulled (diagonal, unitary) matrix, projected onto |d| = 1."""
    d = np.diag(a).copy()
    if real:
        return np.where(d < 0, -1.0, 1.0)
    return d / np.abs(d)


def _clements(a: np.ndarray, real: bool) -> tuple[list[tuple[int, float, float]], np.ndarray]:
    n = a.shape[0]
    steps: list[tuple[int, float, float]] = []  # (k, theta, phi), in the order the light meets them
    left: list[tuple[int, float, float]] = []  # the MZIs applied from the left, in nulling order
    for i in range(n - 1):
        for j in range(i + 1):
            if i % 2 == 0:  # null a[n-1-j, i-j] with an MZI on columns (i-j, i-j+1)
                r, k = n - 1 - j, i - j
                theta, phi = _null_first_from_right(a[r, k], a[r, k + 1], real)
                _rotate_columns(a, k, theta, phi)
                steps.append((k, theta, phi))
            else:  # null a[n-1-i+j, j] with an MZI on rows (n-2-i+j, n-1-i+j)
                k = n - 2 - i + j
                theta, phi = _null_second_from_left(a[k, j], a[k + 1, j], real)
                _rotate_rows(a, k, theta, phi)
                left.append((k, theta, phi))
    # Now L_p ... L_1 U R^-1 = D, so U = L_1^-1 ... L_p^-1 D R: move each L^-1 through D, last first.
    # On the 2x2 block, T(theta, phi)^-1 diag(d1, d2) = diag(-e^{-i phi} d2, d2) T(theta, phi') with
    # e^{i phi'} = -d1/d2 (exact for every theta). Real: R(-theta) diag(d1, d2) = diag(d1, d2)
    # R(-theta d1 d2) for d1, d2 = +-1.
    d = _unit_diagonal(a, real)
    for k, theta, phi in reversed(left):
        d1, d2 = d[k], d[k + 1]
        if real:
            steps.append((k, -theta * d1 * d2, 0.0))
        else:
            steps.append((k, theta, float(np.angle(-d1 * np.conj(d2)))))
            d[k] = -np.exp(-1j * phi) * d2
    return steps, d


def _reck(a: np.ndarray, real: bool) -> tuple[list[tuple[int, float, float]], np.ndarray]:
    n = a.shape[0]
    steps: list[tuple[int, float, float]] = []
    for i in range(n - 1):  # null row i from its right end, down to column i + 1
        for j in range(n - 1 - i):
            k = n - 2 - j
            theta, phi = _null_second_from_right(a[i, k], a[i, k + 1], real)
            _rotate_columns(a, k, theta, phi)
            steps.append((k, theta, phi))
    return steps, _unit_diagonal(a, real)


_NULLING = {"clements": _clements, "reck": _reck}


def _asap_columns(n: int, tops: list[int]) -> tuple[int, ...]:
    last = [-1] * n
    columns = []
    for k in tops:
        col = max(last[k], last[k + 1]) + 1
        last[k] = last[k + 1] = col
        columns.append(col)
    return tuple(columns)


def _check_mesh_name(mesh: Any) -> str:
    if not isinstance(mesh, str) or mesh.strip().lower() not in MESHES:
        raise ValueError(f"`mesh` must be one of {list(MESHES)}, got {mesh!r}")
    return mesh.strip().lower()


def _host_matrix(x: Any, name: str) -> np.ndarray:
    """A finite numeric 2-D host array (float64 or complex128); errors name the argument."""
    try:
        arr = np.asarray(x)
    except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as e:
        raise TypeError(
            f"`{name}` must be a concrete array (the decomposition runs in NumPy on the host, so call "
            f"it outside jax.jit), got {type(x).__name__}"
        ) from e
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"`{name}` must be a numeric (real or complex) matrix, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 2-D matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or inf")
    return arr


def _default_atol(arr: np.ndarray) -> float:
    single = arr.dtype in (np.float32, np.complex64, np.float16)
    eps = np.finfo(np.float32 if single else np.float64).eps
    return 100.0 * arr.shape[0] * float(eps)


def _check_unitary(x: Any, *, real: bool, atol: Any, name: str = "U") -> np.ndarray:
    arr = _host_matrix(x, name)
    n0, n1 = arr.shape
    if n0 != n1:
        raise ValueError(f"`{name}` must be square (N, N), got shape {arr.shape}; for a rectangular "
                         "matrix use `svd_mesh`")
    if atol is None:
        atol = _default_atol(arr)
    elif isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol > 0:
        raise ValueError(f"`atol` must be a positive float or None, got {atol!r}")
    if real:
        if np.iscomplexobj(arr):
            imag = float(np.max(np.abs(arr.imag)))
            if imag > atol:
                raise ValueError(f"`{name}` must be real for real=True, got max |imag| = {imag:.3g}; "
                                 "use real=False for a complex unitary")
            arr = arr.real
        arr = arr.astype(np.float64)
    else:
        arr = arr.astype(np.complex128)
    dev = float(np.linalg.norm(arr.conj().T @ arr - np.eye(n0)))
    if not dev <= atol:
        raise ValueError(
            f"`{name}` must be unitary: ||{name}^H {name} - I||_F = {dev:.3g} > atol = {atol:.3g}; for "
            "a general matrix use `svd_mesh`, or loosen `atol` for a nearly unitary one"
        )
    return arr


def decompose(
    U: Complex[Any, "n n"],
    mesh: str = "clements",
    *,
    real: bool = False,
    atol: float | None = None,
    dtype: Any = None,
) -> MZIMesh:
    r"""Program a mesh of MZIs to implement a unitary: ``U = D T_M \cdots T_1`` exactly.

    Nulls the elements of ``U`` one by one with MZIs (Clements: alternately from the right and the
    left, then the left MZIs are moved through ``D``; Reck: from the right, row by row; see the module
    docstring), in float64 NumPy on the host. The decomposition is therefore not traceable (call it
    outside ``jax.jit``); the :class:`MZIMesh` it returns is a pytree that :func:`reconstruct` turns
    back into ``U`` under ``jit``/``vmap``/``grad``.

    With ``real=True``, a real orthogonal ``U`` is decomposed into real rotations
    ``[[cos t, -sin t], [sin t, cos t]]``: one signed angle ``theta`` in ``[-pi, pi]`` per MZI and
    ``phi = 0``; the signs of ``D`` (``det U = -1`` needs at least one) are the output phases, each 0
    or ``pi``.

    Args:
        U: an ``N x N`` unitary (complex or real; NumPy, JAX or nested lists), ``N >= 1``.
        mesh: ``"clements"`` (rectangular, depth ``N``) or ``"reck"`` (triangular, depth ``2N - 3``).
        real: decompose a real orthogonal ``U`` into one angle per MZI (see above).
        atol: tolerance on ``||U^H U - I||_F``; default ``100 N eps`` with ``eps`` of ``U``'s precision
            (float32 for float32/complex64 input, else float64).
        dtype: real dtype of the mesh's leaves; default the backend's precision
            (:func:`sciml.backend.float_dtype`).

    Returns:
        An :class:`MZIMesh` with ``N(N-1)/2`` MZIs; complex meshes have ``theta`` in ``[0, pi/2]`` and
        ``phi``, ``output_phases`` in ``(-pi, pi]``.

    Raises:
        TypeError: ``U`` is not a concrete numeric array (e.g. a tracer).
        ValueError: ``U`` is not 2-D and square, contains NaN/inf, or is not unitary within ``atol``
            (the message gives ``||U^H U - I||_F``); ``real=True`` with a complex ``U``; an unknown
            ``mesh`` (the message lists :data:`MESHES`).

    Example:
        >>> from hwsim import photonic
        >>> mesh = photonic.decompose(jnp.eye(3, dtype=jnp.complex64), mesh="reck")
        >>> mesh.num_mzi, mesh.depth, mesh.modes
        (3, 3, ((1, 2), (0, 1), (1, 2)))

    References:
        W. R. Clements et al., Optica 3(12):1460 (2016); M. Reck et al., Phys. Rev. Lett.
        73(1):58 (1994).
    """
    name = _check_mesh_name(mesh)
    if not isinstance(real, (bool, np.bool_)):
        raise TypeError(f"`real` must be a bool, got {type(real).__name__} {real!r}")
    a = _check_unitary(U, real=bool(real), atol=atol)
    dt = B.float_dtype(dtype)
    n = a.shape[0]
    steps, d = _NULLING[name](a.copy(), bool(real))
    tops = [k for k, _, _ in steps]
    theta = np.array([t for _, t, _ in steps], np.float64)
    phi = np.array([p for _, _, p in steps], np.float64)
    out = np.where(d < 0, np.pi, 0.0) if real else np.angle(d)
    return MZIMesh(
        theta=jnp.asarray(theta, dt),
        phi=jnp.asarray(phi, dt),
        output_phases=jnp.asarray(out, dt),
        transmission=jnp.ones(len(steps), dt),
        n=n,
        modes=tuple((k, k + 1) for k in tops),
        columns=_asap_columns(n, tops),
        kind=name,
    )


# --------------------------------------------------------------------------------------------------
# Arbitrary matrices: SVD onto two meshes and a column of attenuators
# --------------------------------------------------------------------------------------------------


class SVDMesh(eqx.Module):
    r"""An arbitrary ``m x n`` matrix as two meshes and attenuators: ``W = s U[:, :k] diag(sigma) V^H[:k]``.

    Light enters the ``n``-mode mesh ``vh`` (programmed to ``V^H``), its first ``k = min(m, n)``
    outputs pass attenuators ``sigma`` (amplitude transmissions in ``[0, 1]``; the other outputs are
    dropped), and enter the first ``k`` inputs of the ``m``-mode mesh ``u`` (programmed to ``U``; its
    other inputs are dark). ``scale`` is the global gain (the largest singular value) applied
    electronically after detection, so that every attenuation is physical (``<= 1``).

    Attributes:
        u: the output mesh, ``m`` modes.
        vh: the input mesh, ``n`` modes.
        sigma: attenuations ``sigma_i / sigma_max``, shape ``(k,)``, in decreasing order.
        scale: ``sigma_max``, a 0-d array (0 for the zero matrix, whose ``sigma`` are all 0).

    Example:
        >>> from hwsim import photonic
        >>> svd = photonic.svd_mesh(jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        >>> svd.shape, svd.sigma.tolist(), float(svd.scale)
        ((2, 3), [1.0, 0.5], 2.0)
    """

    u: MZIMesh
    vh: MZIMesh
    sigma: Float[Array, " k"] = eqx.field(converter=jnp.asarray)
    scale: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    @property
    def shape(self) -> tuple[int, int]:
        """The shape ``(m, n)`` of the matrix."""
        return self.u.n, self.vh.n


def svd_mesh(
    W: Complex[Any, "m n"],
    mesh: str = "clements",
    *,
    real: bool = False,
    dtype: Any = None,
) -> SVDMesh:
    r"""Map an arbitrary (also rectangular) matrix onto MZI meshes by its SVD, ``W = U \Sigma V^H``.

    The full SVD is taken in float64 on the host; ``U`` and ``V^H`` are decomposed by
    :func:`decompose` and the singular values become attenuations ``sigma / sigma_max <= 1`` with the
    global gain ``sigma_max`` (see :class:`SVDMesh`). Like :func:`decompose` it runs outside ``jit``.

    Args:
        W: an ``m x n`` real or complex matrix, finite.
        mesh: ``"clements"`` or ``"reck"``, for both meshes.
        real: for a real ``W``: decompose the real orthogonal ``U`` and ``V^H`` into one angle per MZI
            (``decompose(..., real=True)``).
        dtype: real dtype of the leaves (default: the backend's precision).

    Returns:
        An :class:`SVDMesh`; :func:`reconstruct_matrix` gives ``W`` back.

    Raises:
        TypeError: ``W`` is not a concrete numeric array.
        ValueError: ``W`` is not a non-empty 2-D matrix or has NaN/inf; ``real=True`` with a complex
            ``W``; an unknown ``mesh``.

    Example:
        >>> from hwsim import photonic
        >>> w = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        >>> w_back = photonic.reconstruct_matrix(photonic.svd_mesh(w, real=True)).real
        >>> bool(jnp.allclose(w_back, w, atol=1e-5))
        True

    References:
        D. A. B. Miller, "Self-configuring universal linear optical component", Photon. Res. 1(1):1
        (2013); Y. Shen et al., "Deep learning with coherent nanophotonic circuits", Nat. Photon.
        11:441 (2017).
    """
    _check_mesh_name(mesh)
    if not isinstance(real, (bool, np.bool_)):
        raise TypeError(f"`real` must be a bool, got {type(real).__name__} {real!r}")
    w = _host_matrix(W, "W")
    if real and np.iscomplexobj(w):
        raise ValueError("`W` must be real for real=True; use real=False for a complex matrix")
    w = w.astype(np.float64 if real else np.complex128)
    u, s, vh = np.linalg.svd(w, full_matrices=True)
    dt = B.float_dtype(dtype)
    scale = float(s[0])
    sigma = s / scale if scale > 0 else np.zeros_like(s)
    # The SVD's factors are unitary to a few ulps of float64; check them at that precision.
    atol = 1000.0 * max(w.shape) * float(np.finfo(np.float64).eps)
    return SVDMesh(
        u=decompose(u, mesh, real=bool(real), atol=atol, dtype=dt),
        vh=decompose(vh, mesh, real=bool(real), atol=atol, dtype=dt),
        sigma=jnp.asarray(sigma, dt),
        scale=jnp.asarray(scale, dt),
    )


def reconstruct_matrix(svd: SVDMesh) -> Complex[Array, "m n"]:
    r"""The matrix an :class:`SVDMesh` implements, ``scale * U[:, :k] diag(sigma) V^H[:k, :]``.

    Traceable and differentiable like :func:`reconstruct` (both meshes are reconstructed, then one
    checked product by :func:`sciml.backend.matmul`).

    Args:
        svd: an :class:`SVDMesh` (from :func:`svd_mesh`, possibly perturbed).

    Returns:
        The ``m x n`` complex matrix (real ``W``: imaginary part zero to rounding).

    Raises:
        TypeError: ``svd`` is not an :class:`SVDMesh`.

    Example:
        >>> from hwsim import photonic
        >>> w = jnp.array([[0.5, -1.0]])
        >>> photonic.reconstruct_matrix(photonic.svd_mesh(w)).shape
        (1, 2)
    """
    if not isinstance(svd, SVDMesh):
        raise TypeError(f"`svd` must be an SVDMesh (from `svd_mesh`), got {type(svd).__name__}")
    u = reconstruct(svd.u)
    vh = reconstruct(svd.vh)
    k = svd.sigma.shape[-1]
    gains = (svd.scale * svd.sigma).astype(u.dtype)
    return B.matmul(u[:, :k] * gains[None, :], vh[:k, :])
