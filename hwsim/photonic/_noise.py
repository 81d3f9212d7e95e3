r"""Non-ideal MZI meshes: phase noise, gain variation, thermal crosstalk, insertion loss, phase DACs.

:class:`Noise` holds the levels (array leaves: a new level does not recompile), :func:`perturb` draws
one non-ideal copy of a mesh from a PRNG key (``vmap`` over keys for Monte Carlo), and
:func:`fidelity` compares the result with the ideal matrix.

**Model.** Each MZI phase shifter (``theta`` and ``phi``) is driven to the programmed phase ``p``
wrapped into one period, ``w = p mod 2 pi`` (a heater only adds phase). With ``bits`` set, the
programmed phases (the output phases too) are first rounded to the ``2^bits`` levels of a phase DAC
over ``[0, 2 pi)``. The phase the light sees is then

.. math::
    p' = p + g\,\epsilon\,w + \kappa \sum_{\text{neighbours}} w_{\text{nb}} + \sigma\,\xi,
    \qquad \epsilon, \xi \sim \mathcal N(0, 1)

(gain variation ``g``, thermal crosstalk ``kappa`` from the phase shifters of the one or two
physically adjacent MZIs in the same column, i.e. whose mode pairs are two modes away, and phase noise
``sigma``), and every MZI transmits the amplitude ``10^(-L/20)`` for an insertion loss of ``L`` dB.
With all levels 0 and no DAC, ``p' = p`` bit for bit. The output phase screen only sees the DAC: the
levels are those of the MZI phase shifters (and its phases drop out of intensity detection).
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray

import sciml.backend as B
from sciml._checks import check_real_scalar

from ._mesh import MZIMesh, SVDMesh, _check_unbatched

__all__ = ["Noise", "fidelity", "perturb"]

_MIN_BITS, _MAX_BITS = 2, 16  # the range of sciml.backend.quantize


def _level(value: Any, name: str, dtype: Any) -> Array:
    """A non-negative real scalar as a 0-d array leaf (checked when concrete)."""
    arr = check_real_scalar(value, name, dtype)
    if not isinstance(arr, jax.core.Tracer) and not bool(jnp.isfinite(arr) & (arr >= 0)):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    return arr


def _check_bits(bits: Any) -> int | None:
    if bits is None:
        return None
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"`bits` must be None (no DAC) or an int in [{_MIN_BITS}, {_MAX_BITS}], got "
                        f"{type(bits).__name__} {bits!r}")
    if not _MIN_BITS <= bits <= _MAX_BITS:
        raise ValueError(f"`bits` must be None (no DAC) or an int in [{_MIN_BITS}, {_MAX_BITS}] (the "
                         f"phase DAC's resolution), got {bits}")
    return int(bits)


class Noise(eqx.Module):
    r"""The non-idealities of an MZI mesh (see the module docstring for the model).

    The levels are 0-d array leaves, so ``jit`` does not recompile for new values and a sweep can
    ``vmap`` over them; ``bits`` is static (a new resolution recompiles). All defaults are those of an
    ideal chip (``Noise()`` changes nothing); the sources below model or measure each effect.

    Attributes:
        phase_std: standard deviation ``sigma`` (radians) of the Gaussian error added to every
            ``theta`` and ``phi``. Default 0. Phase-encoding noise is the error model of Shen et al.,
            "Deep learning with coherent nanophotonic circuits", Nat. Photon. 11:441 (2017), and of
            Fang et al., "Design of optical neural networks with component imprecisions", Opt.
            Express 27(10):14009 (2019); the reference table of the tests covers 0.001-0.1 rad.
        gain_std: standard deviation ``g`` of a multiplicative phase-shifter gain error, ``p`` gains
            ``g * eps * (p mod 2 pi)`` (the heater efficiency spread of fabrication). Default 0.
            Banerjee, Nikdast and Chakrabarty, "Modeling silicon-photonic neural networks under
            uncertainties", DATE 2021.
        crosstalk: fraction ``kappa`` of each physically adjacent phase shifter's phase that leaks
            into a phase shifter (thermal crosstalk between the heaters of one column). Default 0;
            it depends on the heater spacing and on isolation trenches: Milanizadeh et al.,
            "Canceling thermal cross-talk effects in photonic integrated circuits", J. Lightwave
            Technol. 37(4):1325 (2019).
        loss_db: insertion loss ``L`` of every MZI in dB (each MZI passed multiplies the amplitude by
            ``10^(-L/20)``). Default 0. Component losses of programmable silicon meshes: Bogaerts et
            al., "Programmable photonic circuits", Nature 586:207 (2020).
        bits: resolution of the phase DACs, ``None`` (default, ideal analogue control) or an int in
            ``[2, 16]``: phases are rounded to ``2^bits`` levels over ``[0, 2 pi)`` with
            :func:`sciml.backend.fake_quantize` (straight-through gradient). Gu et al., "ROQ: a
            noise-aware quantization scheme towards robust optical neural networks with low-bit
            controls", DATE 2020.

    Args:
        phase_std, gain_std, crosstalk, loss_db: non-negative real scalars.
        bits: see above (keyword-only).
        dtype: real dtype of the levels (default: the backend's precision); :func:`perturb` casts
            them to the mesh's dtype (a float32 level keeps its float32 rounding in a float64
            mesh: build the ``Noise`` under ``sciml.backend.precision("float64")`` too).

    Raises:
        TypeError: a level is not a real number; ``bits`` is not None or an int.
        ValueError: a level is an array that is not 0-d, negative or not finite (checked when
            concrete); ``bits`` outside ``[2, 16]``.

    Example:
        >>> from hwsim import photonic
        >>> noise = photonic.Noise(phase_std=0.01, loss_db=0.2, bits=10)
        >>> noise.bits, noise.phase_std.dtype
        (10, dtype('float32'))
    """

    phase_std: Float[Array, ""]
    gain_std: Float[Array, ""]
    crosstalk: Float[Array, ""]
    loss_db: Float[Array, ""]
    bits: int | None = eqx.field(static=True)

    def __init__(
        self,
        phase_std: Any = 0.0,
        gain_std: Any = 0.0,
        crosstalk: Any = 0.0,
        loss_db: Any = 0.0,
        *,
        bits: int | None = None,
        dtype: Any = None,
    ):
        dt = B.float_dtype(dtype)
        self.phase_std = _level(phase_std, "phase_std", dt)
        self.gain_std = _level(gain_std, "gain_std", dt)
        self.crosstalk = _level(crosstalk, "crosstalk", dt)
        self.loss_db = _level(loss_db, "loss_db", dt)
        self.bits = _check_bits(bits)


@functools.lru_cache(maxsize=256)
def _neighbours(modes: tuple[tuple[int, int], ...], columns: tuple[int, ...]) -> np.ndarray:
    """For each MZI, the indices of the MZIs beside it in its column (``M`` where there is none)."""
    m = len(modes)
    where = {(col, a): i for i, ((a, _), col) in enumerate(zip(modes, columns))}
    nb = np.full((m, 2), m, np.int32)
    for i, ((a, _), col) in enumerate(zip(modes, columns)):
        nb[i, 0] = where.get((col, a - 2), m)
        nb[i, 1] = where.get((col, a + 2), m)
    return nb


def _dac(phase: Array, bits: int) -> Array:
    """Round phases to the ``2^bits`` DAC levels ``j * 2 pi / 2^bits`` (wrapping, straight-through)."""
    step = 2 * np.pi / 2**bits
    # Shift by half a step so that phases just below 2 pi round to level 0, not saturate at the top.
    wrapped = jnp.mod(phase + step / 2, 2 * np.pi) - step / 2
    return B.fake_quantize(
        wrapped,
        bits,
        scheme="affine",
        scale=jnp.asarray(step, phase.dtype),
        zero_point=jnp.zeros((), jnp.int32),
    )


def perturb(mesh: MZIMesh | SVDMesh, noise: Noise, *, key: PRNGKeyArray) -> MZIMesh | SVDMesh:
    r"""One non-ideal copy of a mesh: quantised, miscalibrated, crosstalking, noisy and lossy phases.

    Applies the model of the module docstring to every MZI phase shifter; the returned mesh has the
    same layout (so :func:`reconstruct` does not recompile) with new ``theta``, ``phi``,
    ``output_phases`` (DAC only) and ``transmission``. For an :class:`SVDMesh` both meshes are
    perturbed with independent keys; the attenuators are left ideal. Write it for one key and
    ``jax.vmap`` over keys for Monte Carlo trials.

    Args:
        mesh: an :class:`MZIMesh` or :class:`SVDMesh`.
        noise: a :class:`Noise`; its levels are cast to the mesh's dtype.
        key: a JAX PRNG key (keyword-only).

    Returns:
        A mesh of the same type and layout. With all levels 0 and ``bits=None`` its leaves equal the
        input's exactly.

    Raises:
        TypeError: ``mesh`` or ``noise`` of the wrong type; ``key`` is not a PRNG key.
        ValueError: the mesh's leaves have batch dimensions (``jax.vmap`` over the batch instead).

    Example:
        >>> from hwsim import photonic
        >>> mesh = photonic.decompose(jnp.eye(4, dtype=jnp.complex64))
        >>> noisy = photonic.perturb(mesh, photonic.Noise(phase_std=0.01), key=jax.random.key(0))
        >>> u = photonic.reconstruct(noisy)
        >>> bool(photonic.fidelity(jnp.eye(4, dtype=jnp.complex64), u) > 0.99)
        True
    """
    if not isinstance(noise, Noise):
        raise TypeError(f"`noise` must be a Noise, got {type(noise).__name__}")
    if isinstance(mesh, SVDMesh):
        _check_unbatched(mesh.u, "mesh.u")
        _check_unbatched(mesh.vh, "mesh.vh")
        ku, kv = B.split_key(key, 2)
        return eqx.tree_at(
            lambda s: (s.u, s.vh),
            mesh,
            (_perturb(mesh.u, noise, ku), _perturb(mesh.vh, noise, kv)),
        )
    if not isinstance(mesh, MZIMesh):
        raise TypeError(f"`mesh` must be an MZIMesh or SVDMesh, got {type(mesh).__name__}")
    _check_unbatched(mesh, "mesh")
    return _perturb(mesh, noise, _check_key(key))


def _check_key(key: Any) -> PRNGKeyArray:
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape[-1:] == (2,)
    if not (typed or raw):
        raise TypeError(f"`key` must be a JAX PRNG key (jax.random.key(seed)), got {type(key).__name__}")
    return key


@eqx.filter_jit
def _perturb(mesh: MZIMesh, noise: Noise, key: PRNGKeyArray) -> MZIMesh:
    dt = mesh.theta.dtype
    sigma, gain, kappa, loss = (
        x.astype(dt) for x in (noise.phase_std, noise.gain_std, noise.crosstalk, noise.loss_db)
    )
    phases = jnp.stack([mesh.theta, mesh.phi])  # (2, M): both phase shifters of every MZI
    out = mesh.output_phases
    if noise.bits is not None:
        phases = _dac(phases, noise.bits)
        out = _dac(out, noise.bits)
    drive = jnp.mod(phases, 2 * np.pi)
    nb = _neighbours(mesh.modes, mesh.columns)
    padded = jnp.concatenate([drive, jnp.zeros((2, 1), dt)], axis=1)
    leak = padded[:, nb].sum(axis=-1)
    # Gain errors and phase noise in one flat draw: a multi-dimensional shape makes the threefry
    # kernel several times slower to compile (jax 0.10, partitionable threefry).
    eps, xi = jax.random.normal(key, (2 * phases.size,), dt).reshape(2, *phases.shape)
    phases = phases + gain * eps * drive + kappa * leak + sigma * xi
    transmission = mesh.transmission * 10.0 ** (-loss / 20)
    return eqx.tree_at(
        lambda m: (m.theta, m.phi, m.output_phases, m.transmission),
        mesh,
        (phases[0], phases[1], out, transmission),
    )


def fidelity(
    U: Complex[Array, "*batch n n"], U_n: Complex[Array, "*batch n n"]
) -> Float[Array, "*batch"]:
    r"""Fidelity of an implemented matrix to the target, insensitive to global phase and uniform loss.

    .. math::
        F(U, U_n) = \frac{|\mathrm{Tr}(U^H U_n)|^2}{N \, \mathrm{Tr}(U_n^H U_n)}

    ``F = 1`` iff ``U_n`` is a multiple of a unitary ``U``; for a unitary ``U_n`` it is
    ``|Tr(U^H U_n)|^2 / N^2``. Leading batch dimensions broadcast; traceable and differentiable.

    Args:
        U: the ideal ``N x N`` unitary (real or complex).
        U_n: the implemented matrix, same trailing shape.

    Returns:
        The real fidelity (float64 if either input has 64-bit precision, else float32).

    Raises:
        ValueError: the matrices are not square, their trailing shapes differ or their batch
            dimensions do not broadcast.
        TypeError: an input is not numeric.

    Example:
        >>> from hwsim import photonic
        >>> u = jnp.eye(2, dtype=jnp.complex64)
        >>> float(photonic.fidelity(u, 0.5j * u))
        1.0

    Reference:
        the fidelity of Clements et al., Optica 3(12):1460 (2016) and Fang et al., Opt. Express
        27(10):14009 (2019).
    """
    a, b = jnp.asarray(U), jnp.asarray(U_n)
    for name, x in (("U", a), ("U_n", b)):
        if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
            raise TypeError(f"`{name}` must be a real or complex floating array, got dtype {x.dtype}")
        if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"`{name}` must be square (..., N, N), got shape {x.shape}")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"`U` and `U_n` must have the same size N, got shapes {a.shape} and {b.shape}")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError as e:
        raise ValueError(f"the batch dimensions of `U` and `U_n` must broadcast, got shapes {a.shape} "
                         f"and {b.shape}") from e
    wide = any(np.dtype(x.dtype).itemsize >= (16 if jnp.iscomplexobj(x) else 8) for x in (a, b))
    return _fidelity(a, b, jnp.complex128 if wide else jnp.complex64)


@functools.partial(jax.jit, static_argnums=2)
def _fidelity(a: Array, b: Array, cdt: Any) -> Array:
    a, b = a.astype(cdt), b.astype(cdt)
    n = a.shape[-1]
    overlap = jnp.sum(jnp.conj(a) * b, axis=(-2, -1))
    power = jnp.sum(jnp.real(b) ** 2 + jnp.imag(b) ** 2, axis=(-2, -1))
    return (jnp.real(overlap) ** 2 + jnp.imag(overlap) ** 2) / (n * power)
