"""Boundary checks of the fuzzy package: truth values, dtypes, scalar parameters, axes, masks."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from sciml import backend
from sciml._checks import check_real_scalar

# LTN's stable projections (Badreddine et al. 2022, sec. 5.2):
# pi_0 maps [0, 1] to [EPS, 1], pi_1 maps [0, 1] to [0, 1 - EPS].
EPS = 1e-4


def pi_0(x: jax.Array) -> jax.Array:
    return (1 - EPS) * x + EPS


def one_minus_pi_1(x: jax.Array) -> jax.Array:
    # pi_1(x) = (1 - EPS) x only ever enters as 1 - pi_1(x). Written directly it cancels: in float32,
    # 0.9999 rounds to 0.99989998 and 1 - pi_1(1) comes out 1.00017e-4 instead of 1e-4 (a 1.7e-4
    # relative error in gradients); this form is exact to rounding.
    return (1 - x) + EPS * x


def is_concrete(*values: Any) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in values)


@jax.jit
def _in_unit_interval(x: jax.Array) -> jax.Array:
    # A few ulps of slack, so that composing operators (1 - x + x*y may round to 1 + ulp) never trips
    # the check; values are passed on unchanged, not clipped.
    tol = 4 * jnp.finfo(x.dtype).eps
    return jnp.all((x >= -tol) & (x <= 1 + tol))


def _common_dtype(arrays: list[jax.Array]) -> Any:
    """The dtype every input is cast to: that of the strongly typed inputs (Python numbers are weak
    and follow them); float64 wins over float32; two different half-precision types meet at
    float32."""
    strong = {a.dtype for a in arrays if not a.weak_type} or {a.dtype for a in arrays}
    if len(strong) == 1:
        return next(iter(strong))
    widest = max(d.itemsize for d in strong)
    wide = {d for d in strong if d.itemsize == widest}
    return next(iter(wide)) if len(wide) == 1 and widest >= 4 else np.dtype(jnp.float32)


def truths(*, clip: bool, **named: Any) -> tuple[jax.Array, ...]:
    """The named inputs as real floating arrays of one dtype, checked (concrete values only) or clipped
    to [0, 1]; raises naming the argument otherwise."""
    if not isinstance(clip, bool):
        raise TypeError(f"`clip` must be a bool, got {type(clip).__name__} {clip!r}")
    arrays = [backend.check_float_array(v, name=name) for name, v in named.items()]
    dtype = _common_dtype(arrays)
    arrays = [a.astype(dtype) for a in arrays]
    if clip:
        return tuple(jnp.clip(a, 0, 1) for a in arrays)
    for name, a in zip(named, arrays):
        if not a.size or not is_concrete(a):
            continue
        # Concrete values met while tracing (constants closed over by a jitted function) are checked
        # too: evaluate now rather than stage the check into the caller's computation.
        with jax.ensure_compile_time_eval():
            if bool(_in_unit_interval(a)):
                continue
            lo, hi = float(jnp.nanmin(a)), float(jnp.nanmax(a))
            nan = " and NaN" if bool(jnp.any(jnp.isnan(a))) else ""
            raise ValueError(
                f"`{name}` must hold truth values in [0, 1], got values in [{lo:.6g}, {hi:.6g}]{nan}; "
                f"squash scores with jax.nn.sigmoid, or pass clip=True to clip them to [0, 1]"
            )
    return tuple(arrays)


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {type(value).__name__} {value!r}")
    return value


def scalar(value: Any, name: str, dtype: Any, *, positive: bool = False) -> jax.Array:
    """A real scalar parameter as a 0-d array of ``dtype`` (a traced leaf, so new values do not
    recompile). The sign check raises on concrete values and is an ``eqx.error_if`` on traced ones."""
    arr = check_real_scalar(value, name, dtype)
    if positive and isinstance(value, (int, float, np.number)) and not value > 0:
        raise ValueError(f"got {name}={value!r}; `{name}` must be > 0 (e.g. {name}=2.0)")
    if positive and is_concrete(arr):
        if not bool(np.asarray(arr) > 0):
            raise ValueError(f"got {name}={value!r}; `{name}` must be > 0 (e.g. {name}=2.0)")
    elif positive:
        arr = eqx.error_if(arr, arr <= 0, f"`{name}` must be > 0")
    return arr


def axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, an int or a tuple of ints) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ValueError(
                f"`axis` must be None, an int or a tuple of ints in [-{ndim}, {ndim}) for an input of "
                f"{ndim} dimensions, got axis={axis!r}"
            )
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"`axis` must not repeat an axis, got axis={axis!r}")
    return tuple(sorted(out))


def mask_for(mask: Any, shape: tuple[int, ...]) -> jax.Array | None:
    """``mask`` as a boolean array broadcast to ``shape``, or None."""
    if mask is None:
        return None
    try:
        m = jnp.asarray(mask)
    except TypeError as e:
        raise TypeError(f"`mask` must be a boolean array, got {type(mask).__name__}") from e
    if m.dtype != jnp.bool_:
        raise TypeError(
            f"`mask` must be a boolean array (True = the element takes part), got dtype {m.dtype}; "
            f"build it from a condition, e.g. mask=(y < 2)"
        )
    try:
        return jnp.broadcast_to(m, shape)
    except ValueError as e:
        raise ValueError(
            f"`mask` must broadcast to the shape of `x`, got mask.shape={m.shape} and x.shape={shape}"
        ) from e


def reduced_shape(shape: tuple[int, ...], ax: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in ax else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in ax)


def empty_domain(x: jax.Array, ax: tuple[int, ...], empty: Any, keepdims: bool, what: str):
    """The result over a statically empty domain (a zero-size reduced axis): ``empty`` everywhere."""
    if empty is None:
        raise ValueError(
            f"`x` has an empty domain (shape {x.shape}, reducing over axes {ax}) and {what} over nothing "
            f"is undefined; pass `empty=` (the value to return there, e.g. empty=0.0)"
        )
    return jnp.full(reduced_shape(x.shape, ax, keepdims), scalar(empty, "empty", x.dtype))


def guard_empty(out: jax.Array, count: jax.Array, empty: Any, what: str) -> jax.Array:
    """``out`` with the slices whose mask selects nothing replaced by ``empty``; with ``empty=None``
    such slices are an error (a ValueError on concrete values, an ``eqx.error_if`` inside jit)."""
    none = count == 0
    if empty is not None:
        return jnp.where(none, scalar(empty, "empty", out.dtype), out)
    msg = f"`mask` selects no element in some slice, and {what} over nothing is undefined; pass `empty=`"
    if is_concrete(none):
        if bool(np.any(np.asarray(none))):
            raise ValueError(msg + " (the value to return there, e.g. empty=0.0)")
        return out
    return eqx.error_if(out, none, msg)


def safe_count(count: jax.Array, dtype: Any) -> jax.Array:
    """The element count as ``dtype``, with 0 replaced by 1: the caller replaces those slices, and the
    unselected 0/0 branch must not leak NaN into gradients."""
    return jnp.where(count == 0, 1, count).astype(dtype)


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "|" in name:
        raise ValueError(f"`{what}` must be a non-empty str without '|', got {name!r}")
    return name
