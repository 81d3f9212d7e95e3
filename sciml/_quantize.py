"""Uniform integer quantisation: :func:`quantize`, :func:`dequantize`, :func:`fake_quantize`.

A real tensor ``x`` is mapped to ``b``-bit integer codes ``q`` by a scale ``s > 0`` and an integer
zero point ``z``::

    q = clip(round(x / s) + z, q_min, q_max)          (round half to even, saturating)
    x_hat = (q - z) * s                               (dequantisation)

Two schemes are supported:

* ``"symmetric"``: signed codes, ``z = 0``, ``s = max|x| / (2^(b-1) - 1)``. With
  ``narrow_range=True`` (default) the codes are ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, symmetric about
  0, as int8 weight quantisation uses; with ``narrow_range=False`` the extra code ``-2^(b-1)`` is
  allowed.
* ``"affine"`` (asymmetric): unsigned codes ``[0, 2^b - 1]``; the range ``[min x, max x]`` is first
  extended to contain 0, then ``s = (max - min) / (2^b - 1)`` and ``z = round(-min / s)``, so that
  ``x = 0`` maps to the code ``z`` and dequantises to exactly 0.

Scales and zero points are per tensor (``axis=None``) or per channel along one axis. They are always
stored with ``keepdims`` shape (``(1, ..., 1)`` per tensor, ``(1, .., C, .., 1)`` per channel), so
that ``(q - z) * s`` broadcasts, also after a ``vmap`` has added a batch dimension in front.

Reference: B. Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018 (the affine scheme, fake-quantisation training).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Integer

from ._checks import check_float_array

__all__ = ["SCHEMES", "Quantized", "dequantize", "fake_quantize", "quantize"]

#: The valid values of ``scheme``.
SCHEMES: tuple[str, ...] = ("symmetric", "affine")
_MIN_BITS, _MAX_BITS = 2, 16


# --------------------------------------------------------------------------------------------------
# Small pure helpers (Python-level, on static configuration only)
# --------------------------------------------------------------------------------------------------


def _code_range(bits: int, scheme: str, narrow_range: bool) -> tuple[int, int]:
    """The inclusive integer code range ``(q_min, q_max)``."""
    if scheme == "symmetric":
        q_max = 2 ** (bits - 1) - 1
        return (-q_max if narrow_range else -q_max - 1), q_max
    return 0, 2**bits - 1


def _storage_dtype(bits: int, scheme: str) -> np.dtype:
    """The narrowest integer dtype holding every code of ``bits`` bits of ``scheme``."""
    if scheme == "symmetric":
        return np.dtype(np.int8 if bits <= 8 else np.int16)
    return np.dtype(np.uint8 if bits <= 8 else np.uint16)


def _keep_shape(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    """Shape of a scale: ``shape`` reduced over every axis but ``axis``, with keepdims."""
    return tuple(n if i == axis else 1 for i, n in enumerate(shape))


def _compute_dtype(dtype: Any) -> np.dtype:
    # Codes of up to 16 bits (65535) are not exact in float16/bfloat16: compute in >= float32.
    # (Chosen by hand: jnp.promote_types obeys strict promotion and rejects bfloat16 -> float32.)
    return np.dtype(np.float64 if np.dtype(dtype) == np.float64 else np.float32)


# --------------------------------------------------------------------------------------------------
# The quantised tensor
# --------------------------------------------------------------------------------------------------


class Quantized(eqx.Module):
    """A quantised tensor: integer codes with their scale and zero point.

    Represents ``x_hat = (values - zero_point) * scale`` (see :func:`dequantize`). Built by
    :func:`quantize`; a pytree whose array leaves are ``values``, ``scale`` and ``zero_point`` and
    whose static (hashable) configuration is ``bits``, ``scheme`` and ``axis``, so jit does not
    recompile when only the data change.

    Attributes:
        values: the integer codes, shape of the original ``x``; int8/int16 (symmetric) or
            uint8/uint16 (affine), the narrowest dtype holding ``bits`` bits.
        scale: positive float scale, dtype of the original ``x``, keepdims shape (``(1,)*ndim`` per
            tensor, size ``C`` along ``axis`` per channel).
        zero_point: integer zero point, same dtype as ``values`` and same shape as ``scale``; all 0
            for the symmetric scheme.
        bits: number of bits, ``2 <= bits <= 16``.
        scheme: ``"symmetric"`` or ``"affine"``.
        axis: the channel axis (non-negative, relative to the un-batched ``x``), or ``None`` per
            tensor.

    Raises:
        TypeError: at construction, a leaf's dtype does not match the configuration.
        ValueError: at construction, ``bits``/``scheme``/``axis`` are invalid or the shapes of
            ``scale``/``zero_point`` are not the keepdims shape (checked in ``__check_init__``; the
            code ranges are not checked, as that would need concrete values).
    """

    values: Integer[Array, "..."] = eqx.field(converter=jnp.asarray)
    scale: Float[Array, "..."] = eqx.field(converter=jnp.asarray)
    zero_point: Integer[Array, "..."] = eqx.field(converter=jnp.asarray)
    bits: int = eqx.field(static=True)
    scheme: str = eqx.field(static=True)
    axis: int | None = eqx.field(static=True)

    def __check_init__(self):
        _check_bits(self.bits)
        _check_scheme(self.scheme)
        expected = _storage_dtype(self.bits, self.scheme)
        if self.values.dtype != expected:
            raise TypeError(
                f"`values` of a {self.bits}-bit {self.scheme} Quantized must have dtype "
                f"{expected}, got {self.values.dtype}"
            )
        if self.zero_point.dtype != expected:
            raise TypeError(
                f"`zero_point` must have the dtype of `values` ({expected}), got "
                f"{self.zero_point.dtype}"
            )
        if not jnp.issubdtype(self.scale.dtype, jnp.floating):
            raise TypeError(f"`scale` must be a real floating array, got dtype {self.scale.dtype}")
        ndim = self.values.ndim
        if self.axis is not None and (
            isinstance(self.axis, bool)
            or not isinstance(self.axis, int)
            or not 0 <= self.axis < ndim
        ):
            raise ValueError(
                f"`axis` of a Quantized must be None or an int in [0, {ndim}) "
                f"(values.ndim={ndim}), got {self.axis!r}"
            )
        keep = _keep_shape(self.values.shape, self.axis)
        if self.scale.shape != keep or self.zero_point.shape != keep:
            raise ValueError(
                f"`scale` and `zero_point` must have the keepdims shape {keep} for values of shape "
                f"{self.values.shape} and axis={self.axis}, got {self.scale.shape} and "
                f"{self.zero_point.shape}"
            )


# --------------------------------------------------------------------------------------------------
# Boundary checks
# --------------------------------------------------------------------------------------------------


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(
            f"`bits` must be an int in [{_MIN_BITS}, {_MAX_BITS}], got "
            f"{type(bits).__name__} {bits!r} (under jax.jit, mark `bits` static)"
        )
    if not _MIN_BITS <= bits <= _MAX_BITS:
        raise ValueError(f"`bits` must be an int in [{_MIN_BITS}, {_MAX_BITS}], got {bits}")
    return int(bits)


def _check_scheme(scheme: Any) -> str:
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(f"`scheme` must be one of {list(SCHEMES)}, got {scheme!r}")
    return scheme


def _check_axis(axis: Any, ndim: int) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(
            f"`axis` must be None (per tensor) or an int (per channel), got {type(axis).__name__} "
            f"{axis!r} (under jax.jit, mark `axis` static)"
        )
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"`axis` must be None or an int in [{-ndim}, {ndim}) for `x` with x.ndim={ndim}, "
            f"got axis={axis}"
        )
    return int(axis) % ndim


def _check_scale(scale: Any, dtype: np.dtype, keep: tuple[int, ...], axis: int | None) -> Array:
    """dtype and shape of a user scale (its values are checked inside jit, by `error_if`)."""
    try:
        s = jnp.asarray(scale)
    except TypeError as e:
        raise TypeError(f"`scale` must be a positive real array, got {type(scale).__name__}") from e
    if not (jnp.issubdtype(s.dtype, jnp.floating) or jnp.issubdtype(s.dtype, jnp.integer)):
        raise TypeError(f"`scale` must be a positive real array, got dtype {s.dtype}")
    return _broadcast_param(s.astype(dtype), "scale", keep, axis)


def _check_zero_point(zp: Any, keep: tuple[int, ...], axis: int | None) -> Array:
    """dtype and shape of a user zero point (its range is checked inside jit)."""
    try:
        z = jnp.asarray(zp)
    except TypeError as e:
        raise TypeError(f"`zero_point` must be an integer array, got {type(zp).__name__}") from e
    if not jnp.issubdtype(z.dtype, jnp.integer):
        raise TypeError(
            f"`zero_point` must be an integer array, got dtype {z.dtype}; round and cast it, e.g. "
            "`jnp.round(z).astype(jnp.int32)`"
        )
    return _broadcast_param(z.astype(jnp.int32), "zero_point", keep, axis)


def _broadcast_param(p: Array, name: str, keep: tuple[int, ...], axis: int | None) -> Array:
    if axis is not None and p.ndim == 1 and len(keep) > 1 and p.shape[0] == keep[axis]:
        p = p.reshape(keep)  # convenience: a per-channel parameter given as a flat (C,) vector
    try:
        return jnp.broadcast_to(p, keep)
    except ValueError as e:
        expected = "a scalar" if axis is None else f"shape {keep} or ({keep[axis]},)"
        raise ValueError(
            f"`{name}` must be {expected} for `x` of shape-with-keepdims {keep} (axis={axis}), "
            f"got shape {p.shape}"
        ) from e


class _Config(NamedTuple):
    """The static (hashable) configuration of one quantiser, validated."""

    bits: int
    scheme: str
    axis: int | None
    lo: int
    hi: int


def _prepare(
    x: Any, bits: Any, scheme: Any, axis: Any, narrow_range: Any, scale: Any, zero_point: Any
) -> tuple[Array, Array | None, Array | None, _Config]:
    """The boundary checks that need no array values (ValueError/TypeError naming the argument)."""
    x = check_float_array(x, name="x")
    bits = _check_bits(bits)
    scheme = _check_scheme(scheme)
    axis = _check_axis(axis, x.ndim)
    if not isinstance(narrow_range, (bool, np.bool_)):
        raise TypeError(
            f"`narrow_range` must be a Python bool, got {type(narrow_range).__name__} "
            "(under jax.jit, mark it static)"
        )
    if scheme == "symmetric" and zero_point is not None:
        raise ValueError(
            "`zero_point` is only for scheme='affine'; the symmetric scheme has zero_point 0 "
            "(drop the argument or use scheme='affine')"
        )
    if scheme == "affine" and (scale is None) != (zero_point is None):
        raise ValueError(
            "for scheme='affine', give `scale` and `zero_point` together or neither "
            f"(got scale={'None' if scale is None else 'an array'}, "
            f"zero_point={'None' if zero_point is None else 'an array'})"
        )
    keep = _keep_shape(x.shape, axis)
    if scale is not None:
        scale = _check_scale(scale, x.dtype, keep, axis)
    if zero_point is not None:
        zero_point = _check_zero_point(zero_point, keep, axis)
    lo, hi = _code_range(bits, scheme, bool(narrow_range))
    return x, scale, zero_point, _Config(bits, scheme, axis, lo, hi)


# Jitted cores: one compilation per (shape, dtype, config) instead of one per primitive when called
# eagerly; inlined as a nested call when the caller is already under jit.


@eqx.filter_jit
def _quantize_core(
    x: Array, scale: Array | None, zp: Array | None, cfg: _Config
) -> tuple[Quantized, Bool[Array, "..."]]:
    """The array part of :func:`quantize`, also returning the mask of codes *not* saturated."""
    lo, hi = cfg.lo, cfg.hi
    keep = _keep_shape(x.shape, cfg.axis)
    reduce_axes = tuple(i for i in range(x.ndim) if i != cfg.axis)
    cdt = _compute_dtype(x.dtype)

    x = eqx.error_if(x, jnp.any(jnp.isnan(x)), "`x` contains NaN; cannot quantize")
    xc = x.astype(cdt)

    if scale is None:
        xc = eqx.error_if(
            xc,
            jnp.any(jnp.isinf(xc)),
            "`x` contains inf; cannot derive a finite scale from it (pass `scale` to saturate)",
        )
        if cfg.scheme == "symmetric":
            x_max = jnp.max(jnp.abs(xc), axis=reduce_axes, keepdims=True)
            raw = x_max / hi
        else:
            x_min = jnp.minimum(jnp.min(xc, axis=reduce_axes, keepdims=True), 0.0)
            x_max = jnp.maximum(jnp.max(xc, axis=reduce_axes, keepdims=True), 0.0)
            # (max - min) / n written as max/n - min/n: no overflow for ranges near the dtype's max.
            raw = x_max / hi - x_min / hi
        # An all-zero tensor/channel has range 0: any scale represents it; 1 keeps codes and
        # dequantisation exact and avoids 0/0.
        raw = jnp.where(raw > 0, raw, 1.0)
        # Store the scale in x's dtype and quantise with that stored value, so that quantize and
        # dequantize agree; the floor keeps a tiny range from underflowing to a zero scale.
        scale = jnp.maximum(raw.astype(x.dtype), jnp.finfo(x.dtype).tiny)
        if cfg.scheme == "symmetric":
            zp = jnp.zeros(keep, jnp.int32)
        else:
            zp = jnp.clip(jnp.round(-x_min / scale.astype(cdt)), lo, hi).astype(jnp.int32)
    else:
        bad_scale = jnp.any(~(jnp.isfinite(scale) & (scale > 0)))
        scale = eqx.error_if(scale, bad_scale, "`scale` must be positive and finite")
        if zp is None:
            zp = jnp.zeros(keep, jnp.int32)
        else:
            bad_zp = jnp.any((zp < lo) | (zp > hi))
            zp = eqx.error_if(zp, bad_zp, f"`zero_point` must lie in the code range [{lo}, {hi}]")

    # round(x/s) + z, clipped in float *before* the integer cast: a huge x/s saturates, never wraps.
    # Note: XLA's vectorised division on CPU is not always correctly rounded, so at an exact .5
    # boundary a code may differ by one from NumPy's; the error bound s/2 is unaffected.
    r = jnp.round(xc / scale.astype(cdt))
    zp_c = zp.astype(cdt)
    r_lo, r_hi = lo - zp_c, hi - zp_c
    unsaturated = (r >= r_lo) & (r <= r_hi)
    codes = jnp.clip(r, r_lo, r_hi).astype(jnp.int32) + zp
    store = _storage_dtype(cfg.bits, cfg.scheme)
    q = Quantized(
        values=codes.astype(store),
        scale=scale,
        zero_point=zp.astype(store),
        bits=cfg.bits,
        scheme=cfg.scheme,
        axis=cfg.axis,
    )
    return q, unsaturated


def quantize(
    x: Float[ArrayLike, "..."],
    bits: int,
    *,
    scheme: str = "symmetric",
    axis: int | None = None,
    narrow_range: bool = True,
    scale: Float[ArrayLike, "..."] | None = None,
    zero_point: Integer[ArrayLike, "..."] | None = None,
) -> Quantized:
    """Quantise a real tensor to ``bits``-bit integer codes (round half to even, saturating).

    ``q = clip(round(x / s) + z, q_min, q_max)`` with ``round`` half-to-even (``jnp.round``):

    * ``scheme="symmetric"``: ``z = 0``, ``s = max|x| / (2^(b-1) - 1)``, codes in
      ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (``narrow_range=True``) or ``[-2^(b-1), 2^(b-1) - 1]``.
    * ``scheme="affine"``: codes in ``[0, 2^b - 1]``; with ``m = min(min x, 0)`` and
      ``M = max(max x, 0)``: ``s = (M - m) / (2^b - 1)``, ``z = clip(round(-m / s), 0, 2^b - 1)``.
      0 is exact.

    Inside the range, ``|x - dequantize(q)| <= s / 2``; outside (only with a user ``scale``) codes
    saturate at ``q_min``/``q_max``. The minimum and maximum are taken over the whole tensor
    (``axis=None``) or over every axis but ``axis`` (per channel). An all-zero tensor or channel
    gets ``s = 1``; a scale that would underflow in ``x``'s dtype is raised to its smallest normal
    number. The stored scale has ``x``'s dtype and the codes are computed with that stored value
    (arithmetic in at least float32). The tie rule applies to ``x / s`` before ``z`` is added (as in
    PyTorch and TFLite): ``round(x / s) + z``, not ``round(x / s + z)``.

    Args:
        x: real floating array (float16/bfloat16/float32/float64).
        bits: number of bits, an int with ``2 <= bits <= 16`` (static under jit).
        scheme: ``"symmetric"`` or ``"affine"`` (static under jit).
        axis: ``None`` for one scale per tensor, or the channel axis (negative allowed) for one
            scale per slice along it (static under jit). Stored non-negative in the result.
        narrow_range: symmetric only (ignored for affine): drop the code ``-2^(b-1)`` so that the
            code range is symmetric. A Python bool (static under jit).
        scale: optional positive scale to use instead of the one derived from ``x``: a scalar per
            tensor; per channel of shape ``(C,)`` or the keepdims shape. Cast to ``x``'s dtype.
        zero_point: optional integer zero point (affine only, given together with ``scale``), same
            shapes as ``scale``, within ``[0, 2^b - 1]``.

    Returns:
        A :class:`Quantized` with codes stored as int8/int16 (symmetric) or uint8/uint16 (affine),
        scale and zero point of keepdims shape.

    Raises:
        TypeError: ``x`` is not a real floating array; ``zero_point`` is not integer;
            ``narrow_range`` is not a bool.
        ValueError: ``bits`` not an int in [2, 16]; unknown ``scheme``; ``axis`` out of range for
            ``x.ndim``; a ``zero_point`` with the symmetric scheme, or only one of ``scale`` and
            ``zero_point`` for affine; ``scale``/``zero_point`` of the wrong shape.
        RuntimeError (``eqx.error_if``; EquinoxRuntimeError eagerly, JaxRuntimeError under
            ``jax.jit``): ``x`` contains NaN ("`x` contains NaN; cannot quantize"); ``x`` contains
            inf and no ``scale`` was given; ``scale`` is not positive and finite; ``zero_point`` is
            out of the code range.

    Example:
        >>> import jax.numpy as jnp
        >>> q = quantize(jnp.array([-1.0, 0.0, 0.5, 1.0]), 8)
        >>> q.values
        Array([-127,    0,   64,  127], dtype=int8)
        >>> dequantize(q)
        Array([-1.      ,  0.      ,  0.503937,  1.      ], dtype=float32)
    """
    q, _ = _quantize_core(*_prepare(x, bits, scheme, axis, narrow_range, scale, zero_point))
    return q


def dequantize(q: Quantized) -> Float[Array, "..."]:
    """Map integer codes back to reals: ``x_hat = (values - zero_point) * scale``.

    The difference is taken in int32 (no uint8 wrap-around) and the product in at least float32,
    then cast to ``scale``'s dtype (the dtype of the tensor that was quantised).

    Args:
        q: a :class:`Quantized` (from :func:`quantize`, possibly batched by vmap).

    Returns:
        A float array of ``q.values``'s shape and ``q.scale``'s dtype.

    Raises:
        TypeError: ``q`` is not a :class:`Quantized`.

    Example:
        >>> import jax.numpy as jnp
        >>> dequantize(quantize(jnp.array([0.0, 2.0]), 4, scheme="affine"))
        Array([0., 2.], dtype=float32)
    """
    if not isinstance(q, Quantized):
        raise TypeError(f"`q` must be a Quantized (from `quantize`), got {type(q).__name__}")
    return _dequantize_core(q)


@eqx.filter_jit
def _dequantize_core(q: Quantized) -> Float[Array, "..."]:
    cdt = _compute_dtype(q.scale.dtype)
    diff = q.values.astype(jnp.int32) - q.zero_point.astype(jnp.int32)
    return (diff.astype(cdt) * q.scale.astype(cdt)).astype(q.scale.dtype)


def fake_quantize(
    x: Float[ArrayLike, "..."],
    bits: int,
    *,
    scheme: str = "symmetric",
    axis: int | None = None,
    narrow_range: bool = True,
    scale: Float[ArrayLike, "..."] | None = None,
    zero_point: Integer[ArrayLike, "..."] | None = None,
) -> Float[Array, "..."]:
    """Quantise and dequantise in the forward pass, with a clipped straight-through gradient.

    Forward: ``dequantize(quantize(x, bits, ...))`` exactly. Backward, the *clipped*
    straight-through estimator (Bengio et al. 2013; Jacob et al. 2018): ``d out / d x = 1`` where
    the code was not saturated and ``0`` where it was clipped to ``q_min``/``q_max``. The scale and
    zero point are constants: no gradient flows through a data-derived scale, nor into a user
    ``scale``. With a scale derived from ``x`` nothing saturates, so the gradient is the identity.

    Implemented without ``custom_vjp``, as
    ``stop_gradient(x_hat) + where(mask, x - stop_gradient(x), 0)``: forward-exact, and the same
    rule holds under ``jax.jvp``.

    Args:
        x, bits, scheme, axis, narrow_range, scale, zero_point: as for :func:`quantize`.

    Returns:
        A float array of ``x``'s shape and dtype.

    Raises:
        As :func:`quantize`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> jax.grad(lambda x: fake_quantize(x, 4, scale=0.1).sum())(jnp.array([0.3, 5.0]))
        Array([1., 0.], dtype=float32)
    """
    return _fake_quantize_core(*_prepare(x, bits, scheme, axis, narrow_range, scale, zero_point))


@eqx.filter_jit
def _fake_quantize_core(
    x: Array, scale: Array | None, zp: Array | None, cfg: _Config
) -> Float[Array, "..."]:
    sg = jax.lax.stop_gradient
    # The output depends on `scale` only through sg(dequantize(q)) and the sg'd mask: no gradient.
    q, unsaturated = _quantize_core(sg(x), scale, zp, cfg)
    # x - sg(x) is 0 in the forward pass and has derivative 1; `where` keeps an inf x (saturated)
    # from turning the forward value into inf - inf = NaN.
    passthrough = jnp.where(sg(unsaturated), x - sg(x), jnp.zeros((), x.dtype))
    return sg(_dequantize_core(q)) + passthrough
