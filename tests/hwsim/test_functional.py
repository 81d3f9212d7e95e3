"""hwsim.systolic._functional: the cycle-level int8 systolic array.

References: the int32 product of NumPy (int64 then cast) and ``sciml.backend.matmul`` (int32
accumulation), and the analytic cycle model ``hwsim.systolic.simulate`` (``compat=False``).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim import systolic
from hwsim.systolic._functional import (
    FunctionalResult,
    functional_matmul,
    os_init,
    os_step,
    stationary_init,
    stationary_step,
)
from sciml import backend

DATAFLOWS = [systolic.OutputStationary(), systolic.WeightStationary(), systolic.InputStationary()]


def _reference(a, b):
    return (np.asarray(a, np.int64) @ np.asarray(b, np.int64)).astype(np.int32)


def _analytic_cycles(m, n, k, rows, cols, df):
    sr, sc, t = df.spatiotemporal(m, n, k)
    folds = -(-sr // rows) * -(-sc // cols)
    return folds * df.fold_cycles(rows, cols, t)


def _check(a, b, rows, cols, df):
    r = functional_matmul(a, b, systolic.SystolicArray(rows, cols), dataflow=df)
    (m, k), n = a.shape, b.shape[1]
    out = np.asarray(r.output)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, _reference(a, b))
    np.testing.assert_array_equal(out, np.asarray(backend.matmul(jnp.asarray(a), jnp.asarray(b))))
    sim = systolic.simulate(systolic.gemm(m, n, k), systolic.SystolicArray(rows, cols), dataflow=df)
    assert int(r.cycles) == int(sim.cycles) == _analytic_cycles(m, n, k, rows, cols, df)
    assert int(r.macs) == m * n * k
    nz = (np.asarray(a) != 0).astype(np.int64) @ (np.asarray(b) != 0).astype(np.int64)
    assert int(r.effectual_macs) == int(nz.sum())
    return r


def _operand(rng, shape):
    """Random int8 values with about a quarter of the entries at the extremes -128 and 127."""
    x = rng.integers(-128, 128, shape).astype(np.int8)
    extreme = rng.random(shape) < 0.25
    return np.where(extreme, rng.choice(np.array([-128, 127], np.int8), shape), x).astype(np.int8)


@st.composite
def _gemm_shapes(draw):
    m, n, k = (draw(st.integers(1, 18)) for _ in range(3))
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return (m, n, k), (rows, cols), draw(st.sampled_from(DATAFLOWS)), draw(st.integers(0, 2**31 - 1))


def _check_cases(cases, distinct):
    ragged = 0
    for (m, n, k), (rows, cols), df, seed in cases:
        rng = np.random.default_rng(seed)
        a, b = _operand(rng, (m, k)), _operand(rng, (k, n))
        _check(a, b, rows, cols, df)
        sr, sc, _ = df.spatiotemporal(m, n, k)
        ragged += bool(sr % rows or sc % cols)
    assert len({c[0] for c in cases}) == distinct
    assert ragged >= distinct // 5


# One Hypothesis example is a list of distinct GEMM shapes, so that the number of different shapes
# checked is known (Hypothesis repeats small examples; each new shape costs a compilation, ~0.3 s).
_SETTINGS = settings(max_examples=1, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@_SETTINGS
@given(st.lists(_gemm_shapes(), min_size=12, max_size=12, unique_by=lambda c: c[0]))
def test_bit_exact_and_cycles_random_shapes(cases):
    """12 random GEMM shapes (most not multiples of the array), all dataflows, int8 extremes."""
    _check_cases(cases, 12)


@pytest.mark.slow
@_SETTINGS
@given(st.lists(_gemm_shapes(), min_size=50, max_size=50, unique_by=lambda c: c[0]))
def test_bit_exact_and_cycles_50_random_shapes(cases):
    """The same on 50 distinct random shapes (about 15-30 s of compilation)."""
    _check_cases(cases, 50)


@pytest.mark.parametrize("df", DATAFLOWS, ids=lambda d: d.short_name)
@pytest.mark.parametrize("value", [-128, 127])
def test_extreme_values_long_reduction(df, value):
    # 48 * 128^2 = 786432: far beyond int16, exact in int32
    a = np.full((5, 48), value, np.int8)
    b = np.full((48, 7), -128, np.int8)
    b[::3] = 127
    _check(a, b, 4, 3, df)


@pytest.mark.parametrize("df", DATAFLOWS, ids=lambda d: d.short_name)
@pytest.mark.parametrize("shape,array", [((8, 8, 8), (8, 8)), ((16, 12, 20), (4, 4)),
                                         ((1, 1, 1), (3, 2)), ((9, 5, 13), (1, 1))])
def test_cycles_equal_analytic_model(df, shape, array):
    """Divisible, non-divisible, smaller than the array, and a single PE."""
    m, n, k = shape
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    r = _check(a, b, *array, df)
    sr, sc, _ = df.spatiotemporal(m, n, k)
    assert r.folds == -(-sr // array[0]) * -(-sc // array[1])
    # the analytic utilisation is the functional one: real MACs over PE-cycles
    sim = systolic.simulate(systolic.gemm(m, n, k), systolic.SystolicArray(*array), dataflow=df)
    util = int(r.macs) / (int(r.cycles) * array[0] * array[1])
    assert util == pytest.approx(float(sim.overall_utilization), rel=1e-6)


def test_os_grid_state_wavefront():
    """PE (i, j) of an output-stationary grid multiplies a[i, k] and b[k, j] at cycle k + i + j: with
    the skew, a[1, 0] enters row 1 at cycle 1 and b[0, 2] column 2 at cycle 2; they meet at PE (1, 2)
    at cycle 3 and nowhere else."""
    ok2, ok3 = jnp.ones(2, bool), jnp.ones(3, bool)
    a_in = [jnp.zeros(2, jnp.int8).at[1].set(5 if t == 1 else 0) for t in range(4)]
    b_in = [jnp.zeros(3, jnp.int8).at[2].set(7 if t == 2 else 0) for t in range(4)]
    state = os_init(2, 3)
    for t in range(4):
        assert int(jnp.abs(state.acc).sum()) == 0
        state, _ = os_step(state, (a_in[t], ok2, b_in[t], ok3))
    assert state.acc.tolist() == [[0, 0, 0], [0, 0, 35]]
    assert int(state.counters.cycles) == 4 and int(state.counters.effectual) == 1

    # weight stationary: a loading cycle shifts the pinned weights down one row
    st_state = stationary_init(2, 2)
    assert st_state.psum.dtype == jnp.int32 and st_state.w.dtype == jnp.int8
    edge = (jnp.array(True), jnp.array([3, 4], jnp.int8), jnp.ones(2, bool), jnp.zeros(2, jnp.int8),
            jnp.zeros(2, bool))
    st_state, out = stationary_step(st_state, edge)
    st_state, out = stationary_step(st_state, edge)
    assert st_state.w.tolist() == [[3, 4], [3, 4]] and out.tolist() == [0, 0]


def test_quantised_floats_through_the_array(getkey):
    x = jax.random.normal(getkey(), (6, 10))
    w = jax.random.normal(getkey(), (10, 4))
    qa, qw = backend.quantize(x, 8), backend.quantize(w, 8)
    r = functional_matmul(qa.values, qw.values, systolic.SystolicArray(4, 4), dataflow="is")
    np.testing.assert_array_equal(np.asarray(r.output), np.asarray(backend.matmul(qa.values, qw.values)))
    approx = r.output.astype(jnp.float32) * (qa.scale * qw.scale)
    assert float(jnp.max(jnp.abs(approx - x @ w))) < 0.15


def test_jit_vmap_no_retrace():
    rng = np.random.default_rng(1)
    b = jnp.asarray(rng.integers(-128, 128, (7, 5)).astype(np.int8))
    batch = jnp.asarray(rng.integers(-128, 128, (3, 6, 7)).astype(np.int8))
    arr = systolic.SystolicArray(3, 2)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(a):
        return functional_matmul(a, b, arr, dataflow="ws")

    for i in range(3):
        assert isinstance(run(batch[i]), FunctionalResult)
    out = jax.vmap(lambda a: functional_matmul(a, b, arr, dataflow="os").output)(batch)
    np.testing.assert_array_equal(np.asarray(out), np.stack([_reference(x, b) for x in batch]))


def test_bad_inputs():
    a = jnp.zeros((3, 4), jnp.int8)
    b = jnp.zeros((4, 2), jnp.int8)
    arr = systolic.SystolicArray(2, 2)
    with pytest.raises(TypeError, match="`a` must have dtype int8"):
        functional_matmul(a.astype(jnp.float32), b, arr)
    with pytest.raises(TypeError, match="`b` must be a 2-D int8 array"):
        functional_matmul(a, [[1]], arr)
    with pytest.raises(ValueError, match="`a` must be a non-empty 2-D"):
        functional_matmul(jnp.zeros((4,), jnp.int8), b, arr)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        functional_matmul(a, jnp.zeros((3, 2), jnp.int8), arr)
    with pytest.raises(TypeError, match="`array` must be"):
        functional_matmul(a, b, (2, 2))
    with pytest.raises(ValueError, match="`array.rows` must be a single concrete size"):
        functional_matmul(a, b, systolic.SystolicArray(jnp.array([2, 4]), jnp.array([2, 4])))
    with pytest.raises(ValueError, match="`dataflow` must be one of"):
        functional_matmul(a, b, arr, dataflow="rs")
