r"""A cycle-by-cycle functional model of an int8 systolic array: the GEMM the analytic model times.

:func:`functional_matmul` computes ``out[M, N] = a[M, K] @ b[K, N]`` (int8 operands, int32
accumulators) by moving operands through an ``R x C`` grid of multiply-accumulate PEs, one
``lax.scan`` step per clock cycle, for the three dataflows of :mod:`hwsim.systolic._dataflow`:

* **output stationary** (``S_r = M, S_c = N, T = K``): ``a`` enters each PE row from the left and
  ``b`` each PE column from the top, both skewed by one cycle per row/column; PE ``(i, j)`` sees
  ``a[i, k]`` and ``b[k, j]`` at cycle ``k + i + j`` and keeps its sum. A fold lasts
  ``T + R + C - 2`` cycles (the last MAC is at PE ``(R-1, C-1)``, cycle ``T + R + C - 3``).
* **weight stationary** (``S_r = K, S_c = N, T = M``): ``R`` cycles shift a ``R x C`` tile of ``b``
  down into the PEs; then the rows of ``a`` stream in from the left (row ``k`` of the array gets
  ``a[m, k]`` at cycle ``m + k``) while partial sums move down the columns and leave at the bottom,
  ``out[m, j]`` at cycle ``m + R - 1 + j`` after the load: ``2R + C + T - 2`` cycles a fold.
* **input stationary** (``S_r = K, S_c = M, T = N``): the same grid with the roles swapped: a tile of
  ``a^T`` is pinned and the columns of ``b`` stream through, giving ``out^T``.

Shapes that do not divide the array are zero-padded at the edges; the work is cut into
``ceil(S_r / R) x ceil(S_c / C)`` folds run one after another (an outer ``lax.scan``), and the partial
sums of weight- and input-stationary row folds are added in the output buffer. Every operand register
carries a *valid* bit, as the operands of a real array do, so the model also counts the PE-cycles that
do real work. The cycle counter is advanced by the scan itself, one per step, and equals the analytic
model's ``sum over folds of fold_cycles`` (:func:`hwsim.systolic.simulate` with ``compat=False``).

The state of one grid is explicit (STYLE.md #4): :class:`OSState` / :class:`StationaryState` with
``*_init`` and ``*_step`` functions, and the fold loop is ``lax.scan`` over those steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Int

from ._dataflow import (
    AbstractDataflow,
    InputStationary,
    OutputStationary,
    SystolicArray,
    WeightStationary,
    as_dataflow,
    cdiv,
)
from ._workload import int_dtype

__all__ = ["FunctionalResult", "OSState", "StationaryState", "functional_matmul"]


class FunctionalResult(eqx.Module):
    """What :func:`functional_matmul` returns.

    Attributes:
        output: the int32 product ``a @ b``, shape ``(M, N)``.
        cycles: clock cycles the array ran, all folds together (fill and drain included).
        macs: PE-cycles whose two operands were real (not edge padding); always ``M N K``.
        effectual_macs: of those, the MACs with both operands non-zero (what a zero-skipping PE
            would have to do).
        folds: number of folds, ``ceil(S_r / R) * ceil(S_c / C)``.
    """

    output: Int[Array, "m n"]
    cycles: Int[Array, ""]
    macs: Int[Array, ""]
    effectual_macs: Int[Array, ""]
    folds: int = eqx.field(static=True)


# --------------------------------------------------------------------------------------------------
# The PE grids: explicit state, one step per clock cycle
# --------------------------------------------------------------------------------------------------


class Counters(NamedTuple):
    """Counters carried through the scans: cycles, real MACs, effectual (non-zero) MACs."""

    cycles: Int[Array, ""]
    macs: Int[Array, ""]
    effectual: Int[Array, ""]


def _counters() -> Counters:
    z = jnp.zeros((), int_dtype())
    return Counters(z, z, z)


def _count(c: Counters, valid: Bool[Array, "r c"], x: Array, w: Array) -> Counters:
    it = int_dtype()
    eff = valid & (x != 0) & (w != 0)
    return Counters(c.cycles + 1, c.macs + jnp.sum(valid, dtype=it), c.effectual + jnp.sum(eff, dtype=it))


def _shift_right(reg: Array, column: Array) -> Array:
    """Every register takes its left neighbour's value; the left column takes ``column``."""
    return jnp.concatenate([column[:, None], reg[:, :-1]], axis=1)


def _shift_down(reg: Array, row: Array) -> Array:
    """Every register takes its upper neighbour's value; the top row takes ``row``."""
    return jnp.concatenate([row[None, :], reg[:-1, :]], axis=0)


class OSState(NamedTuple):
    """Output-stationary grid: operand registers moving right (``a``) and down (``b``), accumulators."""

    a: Int[Array, "r c"]
    a_valid: Bool[Array, "r c"]
    b: Int[Array, "r c"]
    b_valid: Bool[Array, "r c"]
    acc: Int[Array, "r c"]
    counters: Counters


def os_init(rows: int, cols: int) -> OSState:
    """An empty output-stationary grid (all registers zero and invalid)."""
    z8 = jnp.zeros((rows, cols), jnp.int8)
    f = jnp.zeros((rows, cols), bool)
    return OSState(z8, f, z8, f, jnp.zeros((rows, cols), jnp.int32), _counters())


def os_step(state: OSState, edge) -> tuple[OSState, None]:
    """One cycle: ``edge = (a_in[R], a_in_valid[R], b_in[C], b_in_valid[C])`` enter at the left/top
    edges, every operand moves one PE on, and every PE multiply-accumulates what it now holds."""
    a_in, a_ok, b_in, b_ok = edge
    a, a_valid = _shift_right(state.a, a_in), _shift_right(state.a_valid, a_ok)
    b, b_valid = _shift_down(state.b, b_in), _shift_down(state.b_valid, b_ok)
    acc = state.acc + a.astype(jnp.int32) * b.astype(jnp.int32)
    return OSState(a, a_valid, b, b_valid, acc, _count(state.counters, a_valid & b_valid, a, b)), None


class StationaryState(NamedTuple):
    """Weight/input-stationary grid: the pinned operand, the streaming operand (moving right) and the
    partial sums (moving down)."""

    w: Int[Array, "r c"]
    w_valid: Bool[Array, "r c"]
    x: Int[Array, "r c"]
    x_valid: Bool[Array, "r c"]
    psum: Int[Array, "r c"]
    counters: Counters


def stationary_init(rows: int, cols: int) -> StationaryState:
    """An empty weight/input-stationary grid."""
    z8 = jnp.zeros((rows, cols), jnp.int8)
    f = jnp.zeros((rows, cols), bool)
    return StationaryState(z8, f, z8, f, jnp.zeros((rows, cols), jnp.int32), _counters())


def stationary_step(state: StationaryState, edge) -> tuple[StationaryState, Int[Array, " c"]]:
    """One cycle: ``edge = (load, w_in[C], w_in_valid[C], x_in[R], x_in_valid[R])``.

    While ``load`` is set the pinned registers shift down one row (``w_in`` enters at the top);
    otherwise they hold. The streaming operand moves one PE right, each PE adds its product to the
    partial sum from the PE above, and the bottom row's sums leave the array (the scan's output).
    """
    load, w_in, w_ok, x_in, x_ok = edge
    w = jnp.where(load, _shift_down(state.w, w_in), state.w)
    w_valid = jnp.where(load, _shift_down(state.w_valid, w_ok), state.w_valid)
    x, x_valid = _shift_right(state.x, x_in), _shift_right(state.x_valid, x_ok)
    cols = state.psum.shape[1]
    psum = (_shift_down(state.psum, jnp.zeros((cols,), jnp.int32))
            + x.astype(jnp.int32) * w.astype(jnp.int32))
    counters = _count(state.counters, x_valid & w_valid, x, w)
    return StationaryState(w, w_valid, x, x_valid, psum, counters), psum[-1]


# --------------------------------------------------------------------------------------------------
# One fold of each grid
# --------------------------------------------------------------------------------------------------


def _skew(x: Array, ok: Array, lead: int, length: int) -> tuple[Array, Array]:
    """Edge streams of a ``(T, P)`` operand: lane ``p`` gets ``x[t - p, p]`` at cycle ``lead + t``
    (SCALE-Sim's skewed demand matrix); ``length`` cycles, zeros and invalid outside."""
    t_len, lanes = x.shape
    t = jnp.arange(length)[:, None] - lead - jnp.arange(lanes)[None, :]
    inside = (t >= 0) & (t < t_len)
    tc = jnp.clip(t, 0, t_len - 1)
    lane = jnp.arange(lanes)[None, :]
    return jnp.where(inside, x[tc, lane], jnp.zeros((), x.dtype)), inside & ok[tc, lane]


def _os_fold(a, a_ok, b, b_ok, counters):
    """``a`` ``(R, T)``, ``b`` ``(T, C)``: ``T + R + C - 2`` cycles; returns the ``R x C`` sums."""
    rows, t = a.shape
    cols = b.shape[1]
    length = t + rows + cols - 2
    a_in, a_in_ok = _skew(a.T, a_ok.T, 0, length)
    b_in, b_in_ok = _skew(b, b_ok, 0, length)
    state = os_init(rows, cols)._replace(counters=counters)
    state, _ = lax.scan(os_step, state, (a_in, a_in_ok, b_in, b_in_ok))
    return state.acc, state.counters


def _stationary_fold(w, w_ok, x, x_ok, counters):
    """Pinned ``w`` ``(R, C)``, streaming ``x`` ``(T, R)``: ``R`` load cycles then ``T + R + C - 2``;
    returns ``x @ w`` ``(T, C)`` read off the bottom edge."""
    rows, cols = w.shape
    t = x.shape[0]
    length = 2 * rows + cols + t - 2
    cyc = jnp.arange(length)
    load = cyc < rows
    # load cycle l pushes row R-1-l in at the top, so after R cycles row r holds w[r]
    src = jnp.clip(rows - 1 - cyc, 0, rows - 1)
    w_in = jnp.where(load[:, None], w[src], jnp.zeros((), w.dtype))
    w_in_ok = load[:, None] & w_ok[src]
    x_in, x_in_ok = _skew(x, x_ok, rows, length)
    state = stationary_init(rows, cols)._replace(counters=counters)
    state, bottom = lax.scan(stationary_step, state, (load, w_in, w_in_ok, x_in, x_in_ok))
    # out[m, j] leaves the bottom of column j at cycle R + m + (R - 1) + j
    m, j = jnp.arange(t)[:, None], jnp.arange(cols)[None, :]
    return bottom[2 * rows - 1 + m + j, j], state.counters


# --------------------------------------------------------------------------------------------------
# Folding a GEMM over the array
# --------------------------------------------------------------------------------------------------


def _pad(x: Array, shape: tuple[int, int]) -> tuple[Array, Array]:
    """Zero-pad ``x`` to ``shape`` and return it with its real-data mask."""
    widths = [(0, s - d) for s, d in zip(shape, x.shape)]
    return jnp.pad(x, widths), jnp.pad(jnp.ones(x.shape, bool), widths)


def _os_gemm(a, b, rows, cols):
    m, k = a.shape
    n = b.shape[1]
    fr, fc = cdiv(m, rows), cdiv(n, cols)
    a_p, a_ok = _pad(a, (fr * rows, k))
    b_p, b_ok = _pad(b, (k, fc * cols))

    def fold(counters, f):
        i, j = f // fc, f % fc
        at = lax.dynamic_slice_in_dim(a_p, i * rows, rows, 0)
        at_ok = lax.dynamic_slice_in_dim(a_ok, i * rows, rows, 0)
        bt = lax.dynamic_slice_in_dim(b_p, j * cols, cols, 1)
        bt_ok = lax.dynamic_slice_in_dim(b_ok, j * cols, cols, 1)
        acc, counters = _os_fold(at, at_ok, bt, bt_ok, counters)
        return counters, acc

    counters, tiles = lax.scan(fold, _counters(), jnp.arange(fr * fc))
    out = tiles.reshape(fr, fc, rows, cols).transpose(0, 2, 1, 3).reshape(fr * rows, fc * cols)
    return out[:m, :n], counters, fr * fc


def _stationary_gemm(x, w, rows, cols):
    """``x @ w`` with ``w`` ``(S_r, S_c)`` pinned tile by tile and ``x`` ``(T, S_r)`` streamed."""
    t, sr = x.shape
    sc = w.shape[1]
    fr, fc = cdiv(sr, rows), cdiv(sc, cols)
    w_p, w_ok = _pad(w, (fr * rows, fc * cols))
    x_p, x_ok = _pad(x, (t, fr * rows))

    def fold(counters, f):
        i, j = f // fc, f % fc
        wt = lax.dynamic_slice(w_p, (i * rows, j * cols), (rows, cols))
        wt_ok = lax.dynamic_slice(w_ok, (i * rows, j * cols), (rows, cols))
        xt = lax.dynamic_slice_in_dim(x_p, i * rows, rows, 1)
        xt_ok = lax.dynamic_slice_in_dim(x_ok, i * rows, rows, 1)
        part, counters = _stationary_fold(wt, wt_ok, xt, xt_ok, counters)
        return counters, part

    counters, parts = lax.scan(fold, _counters(), jnp.arange(fr * fc))
    # partial sums of the row folds meet in the output buffer
    out = parts.reshape(fr, fc, t, cols).sum(axis=0, dtype=jnp.int32)
    out = out.transpose(1, 0, 2).reshape(t, fc * cols)
    return out[:, :sc], counters, fr * fc


def _ws(a, b, rows, cols):
    return _stationary_gemm(a, b, rows, cols)


def _is(a, b, rows, cols):
    out_t, counters, folds = _stationary_gemm(b.T, a.T, rows, cols)
    return out_t.T, counters, folds


#: The grid each dataflow runs on. A dataflow outside this table has no functional model yet.
_GEMMS: dict[type[AbstractDataflow], Callable[..., Any]] = {
    OutputStationary: _os_gemm,
    WeightStationary: _ws,
    InputStationary: _is,
}


@eqx.filter_jit
def _run(a, b, rows: int, cols: int, dataflow: AbstractDataflow) -> FunctionalResult:
    out, counters, folds = _GEMMS[type(dataflow)](a, b, rows, cols)
    return FunctionalResult(output=out, cycles=counters.cycles, macs=counters.macs,
                            effectual_macs=counters.effectual, folds=folds)


def _static_size(value: Any, name: str) -> int:
    arr = np.asarray(value) if not isinstance(value, jax.core.Tracer) else None
    if arr is None or arr.ndim != 0:
        raise ValueError(f"`array.{name}` must be a single concrete size for the functional model (the "
                         f"grid's shape is static), got {value!r}; simulate one array shape per call")
    return int(arr)


def _check_operand(x: Any, name: str) -> Array:
    if not isinstance(x, (jax.Array, np.ndarray)):
        raise TypeError(f"`{name}` must be a 2-D int8 array, got {type(x).__name__}")
    if x.dtype != np.int8:
        raise TypeError(f"`{name}` must have dtype int8 (the array's operand width), got {x.dtype}; "
                        "quantise floats first, e.g. `sciml.backend.quantize(x, bits=8).values`")
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"`{name}` must be a non-empty 2-D matrix, got shape {x.shape}")
    return jnp.asarray(x)


_WS = WeightStationary()


def functional_matmul(a: Array, b: Array, array: SystolicArray, *,
                      dataflow: AbstractDataflow | str = _WS) -> FunctionalResult:
    r"""Multiply int8 matrices on a simulated systolic array, cycle by cycle, bit-exactly.

    Each PE holds int8 operand registers and an int32 accumulator (or passes an int32 partial sum), so

    .. math::
        \text{out}[m, n] = \sum_k a[m, k]\, b[k, n] \quad (\text{int32, wrapping as the hardware does}),

    the same numbers as ``jnp.matmul(a, b, preferred_element_type=jnp.int32)``. With
    ``(S_r, S_c, T)`` the dataflow's mapping of ``(M, N, K)`` the run takes

    .. math::
        \text{cycles} = \lceil S_r / R \rceil \lceil S_c / C \rceil \cdot L, \qquad
        L = T + R + C - 2 \ (\text{OS}), \quad 2R + C + T - 2 \ (\text{WS, IS}),

    counted by the simulation (one ``lax.scan`` step per cycle) and equal to the ``cycles`` of
    :func:`hwsim.systolic.simulate` with ``compat=False``.

    The function is jitted; the array size and the operand shapes are static (a new shape compiles
    once). ``vmap`` over a batch of ``a``/``b`` works.

    Args:
        a: the ifmap, an ``(M, K)`` int8 matrix.
        b: the filter, a ``(K, N)`` int8 matrix.
        array: the :class:`SystolicArray`; ``rows`` and ``cols`` must be single concrete sizes.
        dataflow: :class:`OutputStationary`, :class:`WeightStationary` (default) or
            :class:`InputStationary`, or their names ``"os"``, ``"ws"``, ``"is"``.

    Returns:
        A :class:`FunctionalResult`: the int32 ``output``, ``cycles``, ``macs`` and ``effectual_macs``.

    Raises:
        TypeError: ``a`` or ``b`` not an int8 array, ``array`` not a :class:`SystolicArray`, a dataflow
            of the wrong type or without a functional model.
        ValueError: non-2-D operands, mismatched inner dimensions, a batched or traced array size, an
            unknown dataflow name.

    Example:
        >>> from hwsim import systolic
        >>> from hwsim.systolic._functional import functional_matmul
        >>> a = jnp.array([[1, -2, 3], [127, -128, 0]], jnp.int8)
        >>> b = jnp.array([[2, 0], [1, -1], [-128, 5]], jnp.int8)
        >>> r = functional_matmul(a, b, systolic.SystolicArray(2, 2), dataflow="os")
        >>> r.output.tolist(), int(r.cycles)     # one fold of T + R + C - 2 = 3 + 2 + 2 - 2 cycles
        ([[-384, 17], [126, 128]], 5)

    Reference: H. T. Kung, "Why systolic architectures?", IEEE Computer 15(1), 1982; the fold timing is
    SCALE-Sim's (Samajdar et al., ISPASS 2020).
    """
    a = _check_operand(a, "a")
    b = _check_operand(b, "b")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: `a` has shape {a.shape} (K={a.shape[1]}) but `b` has "
                         f"shape {b.shape} (K={b.shape[0]})")
    if not isinstance(array, SystolicArray):
        raise TypeError(f"`array` must be a hwsim.systolic.SystolicArray(rows, cols), got "
                        f"{type(array).__name__}")
    rows, cols = _static_size(array.rows, "rows"), _static_size(array.cols, "cols")
    df = as_dataflow(dataflow)
    if type(df) not in _GEMMS:
        raise TypeError(f"`dataflow` {type(df).__name__} has no functional model; use one of "
                        f"{sorted(c.__name__ for c in _GEMMS)}")
    return _run(a, b, rows, cols, df)
