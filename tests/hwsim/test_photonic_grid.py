"""Grid of photonic tensor cores (hwsim.photonic._grid): fold/cycle closed forms, conservation, jit/vmap,
the conv-vs-GEMV ranking, the input-stationary and per-layer best dataflows, bad input, and the CLI."""

import csv
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hwsim import photonic, systolic
from sciml import cli

EO = photonic.PTC(4, reprogram_ns=photonic.ELECTRO_OPTIC_NS)  # 10 GHz x 1 ns = 10 cycles


def _reference(m, n, k, rg, cg, kk=4, reprog=10):
    """Hand-written closed form (independent of hwsim.systolic's helpers)."""
    r, c = rg * kk, cg * kk
    rf, cf = -(-k // r), -(-n // c)
    cycles = rf * cf * (m + reprog)
    mem = cf * m * k + k * n + rf * m * n
    return rf, cf, cycles, m * n * k / (r * c * cycles), mem


@pytest.mark.parametrize("mnk", [(100, 4, 16), (1, 1000, 512), (49, 128, 1200), (7, 3, 5)])
@pytest.mark.parametrize("grid", [(1, 1), (1, 4), (2, 2), (4, 1), (3, 5)])
def test_counts_match_closed_form(mnk, grid):
    m, n, k = mnk
    r = photonic.simulate_grid(systolic.gemm(m, n, k), photonic.Grid(*grid), EO)
    rf, cf, cycles, util, mem = _reference(m, n, k, *grid)
    assert (int(r.row_folds), int(r.col_folds), int(r.folds)) == (rf, cf, rf * cf)
    assert int(r.cycles) == cycles == int(r.compute_cycles) + int(r.reprogram_cycles)
    assert int(r.memory_accesses) == mem
    np.testing.assert_allclose(float(r.utilization), util, rtol=1e-6)
    np.testing.assert_allclose(float(r.throughput), m * n * k * 10e9 / cycles, rtol=1e-6)


def test_conv_layer_hand_computed():
    # 10x10x4 input, 3x3 filters, 6 of them: M = 64, N = 6, K = 36; 2x1 grid of 4x4 -> R = 8, C = 4
    r = photonic.simulate_grid(systolic.conv(10, 10, 3, 3, 4, 6, 1), photonic.Grid(2, 1), EO)
    assert (int(r.row_folds), int(r.col_folds)) == (5, 2)      # ceil(36/8), ceil(6/4)
    assert int(r.cycles) == 10 * (64 + 10)
    assert int(r.ifmap_reads) == 2 * 64 * 36 and int(r.filter_reads) == 36 * 6
    assert int(r.ofmap_writes) == 5 * 64 * 6


def test_totals_of_a_single_layer_are_its_own_values():
    """A Layer has no layer axis: totals() must not sum over the grid batch."""
    grid = photonic.Grid(jnp.asarray([1, 2, 4]), jnp.asarray([4, 2, 1]))
    r = photonic.simulate_grid(systolic.gemm(49, 128, 1200), grid, EO)
    t = r.totals()
    assert not r.layer_axis and t["cycles"].shape == (3,)
    np.testing.assert_allclose(np.asarray(t["cycles"]), np.asarray(r.cycles), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(t["utilization"]), np.asarray(r.utilization), rtol=1e-6)
    one = photonic.simulate_grid(systolic.gemm(49, 128, 1200), photonic.Grid(2, 2), EO).totals()
    np.testing.assert_allclose(float(one["throughput"]), float(r.throughput[1]), rtol=1e-6)
    topo = photonic.simulate_grid(systolic.Topology([systolic.gemm(49, 128, 1200)]), grid, EO)
    assert topo.layer_axis
    np.testing.assert_allclose(np.asarray(topo.totals()["cycles"]), np.asarray(r.cycles), rtol=1e-6)


def test_one_core_grid_is_a_single_ptc():
    topo = systolic.load_topology("resnet18")
    for kk in (2, 4, 8):
        ptc = photonic.PTC(kk, reprogram_ns=1.0)
        r = photonic.simulate_grid(topo, photonic.Grid(1, 1), ptc)
        m, n, k = (np.asarray(x, np.int64) for x in (topo.m, topo.n, topo.k))
        folds = -(-k // kk) * -(-n // kk)
        np.testing.assert_array_equal(np.asarray(r.cycles), folds * (m + 10))
        np.testing.assert_array_equal(np.asarray(r.pes), kk * kk)


def test_utilization_bounded_and_macs_conserved():
    s = photonic.sweep("mobilenet", pes=(64, 256, 1024), ptc=EO)
    topo = systolic.load_topology("mobilenet")
    u = np.asarray(s.layers.utilization)
    assert (u > 0).all() and (u <= 1 + 1e-6).all()
    assert (np.asarray(s.utilization) <= 1 + 1e-6).all()
    # useful MACs do not depend on the grid
    np.testing.assert_array_equal(np.asarray(s.layers.macs),
                                  np.broadcast_to(np.asarray(topo.macs)[:, None], u.shape))
    # mapping efficiency x (M / fold length) = utilisation
    m = np.asarray(topo.m, np.float64)[:, None]
    np.testing.assert_allclose(u, np.asarray(s.layers.mapping_efficiency) * m / (m + 10), rtol=1e-5)


def test_factor_grids_enumerates_all():
    assert photonic.factor_grids(1024, 4) == [(1, 64), (2, 32), (4, 16), (8, 8), (16, 4), (32, 2), (64, 1)]
    assert photonic.factor_grids(16, 4) == [(1, 1)]
    s = photonic.sweep("alphagozero", pes=(64, 256, 1024))
    assert len(s.pes) == 3 + 5 + 7
    np.testing.assert_array_equal(np.asarray(s.grid_rows * s.grid_cols * 16), np.asarray(s.pes))


def test_jit_and_vmap_over_grids_without_retracing():
    topo = systolic.load_topology("googlenet")

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def util(rows, cols):
        return photonic.simulate_grid(topo, photonic.Grid(rows, cols), EO).totals()["utilization"]

    a = [util(jnp.asarray(r, jnp.int32), jnp.asarray(c, jnp.int32)) for r, c in photonic.factor_grids(1024)]
    batched = jax.vmap(util)(jnp.arange(1, 5, dtype=jnp.int32), jnp.arange(4, 0, -1, dtype=jnp.int32))
    rows, cols = jnp.asarray([1, 8, 64]), jnp.asarray([64, 8, 1])
    direct = photonic.simulate_grid(topo, photonic.Grid(rows, cols), EO).totals()["utilization"]
    np.testing.assert_allclose(np.asarray(direct), [float(a[0]), float(a[3]), float(a[6])], rtol=1e-6)
    assert batched.shape == (4,)


def test_square_wins_on_convs_and_gemv_ranking_differs():
    """Measured, not tuned: square grids maximise conv utilisation and minimise memory accesses at
    1024 PEs; on the GEMV (M = 1) layers the best grid is not the square one."""
    for name in ("googlenet", "resnet18"):
        s = photonic.sweep(name, pes=(1024,), ptc=EO)
        rows = np.asarray(s.grid_rows)
        g = np.asarray(s.is_gemv)
        macs, cyc = np.asarray(s.layers.macs, np.float64), np.asarray(s.layers.cycles, np.float64)
        conv_u = macs[~g].sum(0) / (1024 * cyc[~g].sum(0))
        gemv_u = macs[g].sum(0) / (1024 * cyc[g].sum(0))
        square = int(np.where(rows == 8)[0][0])
        assert conv_u.argmax() == square or rows[conv_u.argmax()] == 4  # 8x8 or 4x16 (ties in resnet18)
        assert conv_u[square] / conv_u[0] > 2.0                       # vs 1x64
        mem = np.asarray(s.memory_accesses)
        assert mem.argmin() == square and 1 - mem[square] / mem[0] > 0.4
        assert gemv_u.argmax() != square                               # ranking changes for M = 1
        assert np.ptp(gemv_u) / gemv_u.max() < 0.05                   # and topology barely matters


@pytest.mark.parametrize("bw", [1, 7, 64])
@pytest.mark.parametrize("mnk", [(100, 4, 16), (1, 1000, 512), (49, 128, 1200)])
@pytest.mark.parametrize("grid", [(1, 4), (2, 2), (3, 5)])
def test_sram_bandwidth_closed_form(mnk, grid, bw):
    """Loading waits for ceil(filter reads / B), streaming for ceil((ifmap reads + ofmap writes) / B)."""
    m, n, k = mnk
    r = photonic.simulate_grid(systolic.gemm(m, n, k), photonic.Grid(*grid), EO, sram_bandwidth=bw)
    rf, cf, _, _, mem = _reference(m, n, k, *grid)
    folds = rf * cf
    load = max(folds * 10, -(-(k * n) // bw))
    stream = max(folds * m, -(-(cf * m * k + rf * m * n) // bw))
    assert int(r.cycles) == load + stream
    assert int(r.stall_cycles) == load + stream - folds * (m + 10) >= 0
    assert int(r.memory_accesses) == mem                    # the traffic itself does not change
    np.testing.assert_allclose(float(r.utilization), m * n * k / (16 * grid[0] * grid[1] * (load + stream)),
                               rtol=1e-6)


def test_sram_bandwidth_none_or_ample_changes_nothing_and_square_stalls_least():
    topo = systolic.load_topology("resnet18")
    grid = photonic.Grid(jnp.asarray([1, 2, 4, 8, 16]), jnp.asarray([16, 8, 4, 2, 1]))
    free = photonic.simulate_grid(topo, grid, EO)
    ample = photonic.simulate_grid(topo, grid, EO, sram_bandwidth=10**6)
    assert free.sram_bandwidth is None and not np.asarray(free.stall_cycles).any()
    np.testing.assert_array_equal(np.asarray(free.cycles), np.asarray(ample.cycles))
    # A GEMM that fills every grid of 16 cores: with B words per cycle, a fold moves about R + C
    # words per cycle, least on the square grid, so the square grid stalls least and runs fastest.
    big = systolic.gemm(1024, 512, 512)
    for bw in (8, 16, 32):
        r = photonic.simulate_grid(big, grid, EO, sram_bandwidth=bw)
        cyc = np.asarray(r.cycles)
        assert cyc.argmin() == 2 and np.asarray(r.stall_cycles).argmin() == 2, (bw, cyc)
    limited = photonic.simulate_grid(topo, grid, EO, sram_bandwidth=16)
    np.testing.assert_allclose(np.asarray(limited.totals()["stall_cycles"]),
                               np.asarray(limited.stall_cycles, np.float64).sum(0), rtol=1e-6)
    assert (np.asarray(limited.cycles) >= np.asarray(free.cycles)).all()
    # input stationary under a bandwidth limit is still weight stationary on the transpose
    a = photonic.simulate_grid(systolic.gemm(49, 128, 1200), grid, EO, dataflow="is", sram_bandwidth=16)
    b = photonic.simulate_grid(systolic.gemm(128, 49, 1200), grid, EO, dataflow="ws", sram_bandwidth=16)
    np.testing.assert_array_equal(np.asarray(a.cycles), np.asarray(b.cycles))
    np.testing.assert_array_equal(np.asarray(a.stall_cycles), np.asarray(b.stall_cycles))


@pytest.mark.parametrize("bad", [0, -4, 2.5, True, "64"])
def test_bad_sram_bandwidth(bad):
    with pytest.raises(ValueError, match="`sram_bandwidth`"):
        photonic.simulate_grid(systolic.gemm(4, 4, 4), photonic.Grid(1, 1), EO, sram_bandwidth=bad)
    with pytest.raises(ValueError, match="`sram_bandwidth`"):
        photonic.sweep("resnet18", pes=(64,), ptc=EO, sram_bandwidth=bad)


def test_bandwidth_limited_square_wins_convs_by_the_perimeter_ratio():
    """With SRAM at 64 words per cycle (a 32 x 32 array's R + C), the square grid maximises conv
    utilisation on all four networks at 1024 PEs, and its advantage over 1x64 is bounded by the
    traffic ratio (about (4 + 256) / (32 + 32) = 4.06), which is also its SRAM-access ratio."""
    for name in ("googlenet", "resnet18", "mobilenet", "alphagozero"):
        s = photonic.sweep(name, pes=(1024,), ptc=EO, sram_bandwidth=64)
        rows, g = np.asarray(s.grid_rows), np.asarray(s.is_gemv)
        macs, cyc = np.asarray(s.layers.macs, np.float64), np.asarray(s.layers.cycles, np.float64)
        conv_u = macs[~g].sum(0) / (1024 * cyc[~g].sum(0))
        square = int(np.where(rows == 8)[0][0])
        assert conv_u.argmax() == square, name
        ratio = conv_u[square] / conv_u[0]
        mem = np.asarray(s.memory_accesses)
        assert 3.0 < ratio < 1.05 * mem[0] / mem[square], (name, ratio)


def test_input_stationary_hand_computed():
    # M = 6, N = 20, K = 10 on a 1x2 grid of 4x4 cores: R = 4, C = 8. Input stationary programs the
    # K x M = 10 x 6 ifmap tile and streams the N = 20 filter columns: ceil(10/4) = 3 row folds,
    # ceil(6/8) = 1 column fold, each 20 + 10 cycles.
    r = photonic.simulate_grid(systolic.gemm(6, 20, 10), photonic.Grid(1, 2), EO, dataflow="is")
    assert (int(r.row_folds), int(r.col_folds), int(r.folds)) == (3, 1, 3)
    assert (int(r.compute_cycles), int(r.reprogram_cycles), int(r.cycles)) == (60, 30, 90)
    np.testing.assert_allclose(float(r.utilization), 1200 / (32 * 90), rtol=1e-6)
    np.testing.assert_allclose(float(r.mapping_efficiency), 60 / (3 * 32), rtol=1e-6)
    # ifmap read once (10 x 6), filter once per column fold (1 x 10 x 20), partial sums once per
    # row fold (3 x 6 x 20)
    assert (int(r.ifmap_reads), int(r.filter_reads), int(r.ofmap_writes)) == (60, 200, 360)
    assert int(r.memory_accesses) == 620 and bool(r.input_stationary)
    # weight stationary on the same layer: 3 x ceil(20/8) = 9 folds of 6 + 10 cycles; best takes is
    ws = photonic.simulate_grid(systolic.gemm(6, 20, 10), photonic.Grid(1, 2), EO)
    assert int(ws.cycles) == 144 and not bool(ws.input_stationary) and ws.dataflow == "ws"
    best = photonic.simulate_grid(systolic.gemm(6, 20, 10), photonic.Grid(1, 2), EO, dataflow="best")
    assert int(best.cycles) == 90 and bool(best.input_stationary) and best.dataflow == "best"
    # a tie (M = N on a square grid) goes to weight stationary
    tie = photonic.simulate_grid(systolic.gemm(8, 8, 8), photonic.Grid(2, 2), EO, dataflow="best")
    assert not bool(tie.input_stationary)


@pytest.mark.parametrize("mnk", [(1, 1000, 512), (49, 128, 1200), (7, 3, 5), (300, 2, 64)])
def test_input_stationary_is_weight_stationary_on_the_transpose(mnk):
    """Y^T = W^T X^T: ``is`` on (M, N, K) is ``ws`` on (N, M, K) with the ifmap and filter swapped."""
    m, n, k = mnk
    grid = photonic.Grid(jnp.asarray([1, 2, 4, 3]), jnp.asarray([4, 2, 1, 5]))
    a = photonic.simulate_grid(systolic.gemm(m, n, k), grid, EO, dataflow="is")
    b = photonic.simulate_grid(systolic.gemm(n, m, k), grid, EO, dataflow="ws")
    for key in ("row_folds", "col_folds", "cycles", "compute_cycles", "ofmap_writes", "memory_accesses"):
        np.testing.assert_array_equal(np.asarray(getattr(a, key)), np.asarray(getattr(b, key)), err_msg=key)
    np.testing.assert_allclose(np.asarray(a.utilization), np.asarray(b.utilization), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(a.ifmap_reads), np.asarray(b.filter_reads))
    np.testing.assert_array_equal(np.asarray(a.filter_reads), np.asarray(b.ifmap_reads))


def test_best_takes_the_per_layer_minimum():
    topo = systolic.load_topology("mobilenet")
    grid = photonic.Grid(jnp.asarray([1, 4, 16]), jnp.asarray([16, 4, 1]))
    ws, is_, best = (photonic.simulate_grid(topo, grid, EO, dataflow=d) for d in ("ws", "is", "best"))
    cw, ci = np.asarray(ws.cycles), np.asarray(is_.cycles)
    chose_is = ci < cw
    assert chose_is.any() and (~chose_is).any()            # both dataflows win somewhere
    np.testing.assert_array_equal(np.asarray(best.input_stationary), chose_is)
    np.testing.assert_array_equal(np.asarray(best.cycles), np.minimum(cw, ci))
    for key in ("folds", "memory_accesses", "ifmap_reads", "filter_reads", "energy_j"):
        want = np.where(chose_is, np.asarray(getattr(is_, key)), np.asarray(getattr(ws, key)))
        np.testing.assert_allclose(np.asarray(getattr(best, key)), want, rtol=1e-6, err_msg=key)
    assert not np.asarray(ws.input_stationary).any() and np.asarray(is_.input_stationary).all()
    u = np.asarray(best.totals()["utilization"])
    assert (u >= np.asarray(ws.totals()["utilization"]) - 1e-6).all()
    assert (u >= np.asarray(is_.totals()["utilization"]) - 1e-6).all()


def test_gemv_ranking_reverses_with_input_stationary():
    """Measured, not tuned: on the M = 1 layers of ResNet-18 at 1024 PEs, weight stationary barely
    separates the grids, while input stationary (alone or chosen per layer) ranks the tall 64x1 grid
    first, well above the square 8x8 one."""
    out = {}
    for d in ("ws", "is", "best"):
        s = photonic.sweep("resnet18", pes=(1024,), ptc=EO, dataflow=d)
        g = np.asarray(s.is_gemv)
        macs, cyc = np.asarray(s.layers.macs, np.float64), np.asarray(s.layers.cycles, np.float64)
        out[d] = macs[g].sum(0) / (1024 * cyc[g].sum(0))
        grids = list(zip(np.asarray(s.grid_rows).tolist(), np.asarray(s.grid_cols).tolist()))
    square, tall = grids.index((8, 8)), grids.index((64, 1))
    assert np.ptp(out["ws"]) / out["ws"].max() < 0.05
    for d in ("is", "best"):
        assert out[d].argmax() == tall != square
        assert out[d][tall] / out[d][square] > 2.0
        assert out[d][tall] > out["ws"].max()


def test_dataflow_under_jit_and_vmap():
    topo = systolic.load_topology("alphagozero")

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def util(rows, cols):
        r = photonic.simulate_grid(topo, photonic.Grid(rows, cols), EO, dataflow="best")
        return r.totals()["utilization"], r.input_stationary.sum()

    rows, cols = jnp.asarray([1, 8, 64], jnp.int32), jnp.asarray([64, 8, 1], jnp.int32)
    u, n_is = jax.vmap(util)(rows, cols)
    direct = photonic.simulate_grid(topo, photonic.Grid(rows, cols), EO, dataflow="best")
    np.testing.assert_allclose(np.asarray(u), np.asarray(direct.totals()["utilization"]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(n_is), np.asarray(direct.input_stationary).sum(0))


def test_bad_dataflow_lists_the_choices():
    layer = systolic.gemm(2, 2, 2)
    for bad in ("os", "weight", ""):
        with pytest.raises(ValueError, match=r"`dataflow` must be one of \['ws', 'is', 'best'\]"):
            photonic.simulate_grid(layer, photonic.Grid(1, 1), dataflow=bad)
    with pytest.raises(ValueError, match="`dataflow`"):
        photonic.sweep("googlenet", pes=(64,), dataflow="OS")
    with pytest.raises(TypeError, match="`dataflow`"):
        photonic.simulate_grid(layer, photonic.Grid(1, 1), dataflow=1)
    # the systolic dataflow objects name the same mappings
    r = photonic.simulate_grid(systolic.gemm(6, 20, 10), photonic.Grid(1, 2), EO,
                               dataflow=systolic.InputStationary())
    assert int(r.cycles) == 90 and r.dataflow == "is"


def test_link_budget_closed_form_and_feasibility():
    ptc = photonic.PTC(4, loss_per_element_db=0.5, fixed_loss_db=3.0, detector_dbm=-20.0,
                       max_laser_dbm=10.0)
    r = photonic.simulate_grid(systolic.gemm(8, 8, 8), photonic.Grid(jnp.asarray([1, 4, 8]),
                                                                      jnp.asarray([1, 4, 8])), ptc)
    cores = np.array([1, 16, 64])
    want = -20 + 10 * np.log10(cores * 4) + 9 * 0.5 + 3.0          # depth 2k + 1 = 9 MZIs
    np.testing.assert_allclose(np.asarray(r.laser_dbm), want, rtol=1e-5)
    assert np.asarray(r.feasible).tolist() == [True, True, False]
    assert photonic.PTC(4, core="microring").depth == 4


def test_energy_closed_form():
    ptc = photonic.PTC(2, reprogram_ns=1.0, laser_efficiency=1.0, hold_mw=0.0, dac_pj=1.0, adc_pj=2.0,
                       tune_pj=5.0, detector_dbm=-30.0, loss_per_element_db=0.0, fixed_loss_db=0.0)
    r = photonic.simulate_grid(systolic.gemm(10, 2, 2), photonic.Grid(1, 1), ptc)
    # one fold: 10 compute cycles of 2 DAC + 2 ADC conversions, one rewrite of 2*2*1+2 = 6 elements,
    # laser 2 channels x 1 uW for (10 + 10) cycles of 0.1 ns
    want = 10 * 2 * 3e-12 + 6 * 5e-12 + 2e-6 * 20 * 1e-10
    np.testing.assert_allclose(float(r.energy_j), want, rtol=1e-5)


@pytest.mark.parametrize("call, name", [
    (lambda: photonic.sweep("googlenet", pes=(100,)), "pes"),
    (lambda: photonic.sweep("googlenet", k=0), "k"),
    (lambda: photonic.PTC(0), "k"),
    (lambda: photonic.PTC(4, modulation_ghz=0.0), "modulation_ghz"),
    (lambda: photonic.PTC(4, reprogram_ns=-1.0), "reprogram_ns"),
    (lambda: photonic.PTC(4, core="ring"), "core"),
    (lambda: photonic.sweep("lenet"), "topology"),
    (lambda: photonic.Grid(0, 4), "rows"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


def test_cli_single_and_sweep(tmp_path, capsys):
    assert cli.main(["hwsim", "photonic", "--grid", "2x2", "-t", "resnet18", "--reprogram-ns", "1",
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = photonic.simulate_grid(systolic.load_topology("resnet18"), photonic.Grid(2, 2), EO).totals()
    assert out["pes"] == 64 and len(out["layers"]) == 21
    assert math.isclose(out["utilization"], float(want["utilization"]), rel_tol=1e-6)
    assert out["dataflow"] == "ws" and {x["dataflow"] for x in out["layers"]} == {"ws"}
    assert cli.main(["hwsim", "photonic", "--grid", "2x2", "-t", "alphagozero"]) == 0
    assert "utilization" in capsys.readouterr().out
    out_csv = tmp_path / "sweep.csv"
    assert cli.main(["hwsim", "photonic", "sweep", "--pes", "64,256", "-t", "googlenet", "-t",
                     "alphagozero", "-o", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert len(rows) == 2 * (3 + 5)
    assert {(r["grid_rows"], r["grid_cols"]) for r in rows if r["pes"] == "256"} == {
        ("1", "16"), ("2", "8"), ("4", "4"), ("8", "2"), ("16", "1")}
    assert {r["dataflow"] for r in rows} == {"ws"} and {r["is_layers"] for r in rows} == {"0"}
    with pytest.raises(SystemExit, match="topology"):
        cli.main(["hwsim", "photonic", "-t", "nonexistent"])


def test_cli_dataflow(tmp_path, capsys):
    assert cli.main(["hwsim", "photonic", "--grid", "16x1", "-t", "resnet18", "--reprogram-ns", "1",
                     "--dataflow", "best", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = photonic.simulate_grid(systolic.load_topology("resnet18"), photonic.Grid(16, 1), EO,
                                  dataflow="best")
    assert out["dataflow"] == "best" and out["layers"][-1]["dataflow"] == "is"   # the FC layer
    assert math.isclose(out["utilization"], float(want.totals()["utilization"]), rel_tol=1e-6)
    out_csv = tmp_path / "sweep.csv"
    assert cli.main(["hwsim", "photonic", "sweep", "--pes", "64", "-t", "alphagozero", "--dataflow",
                     "is", "-o", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert [r["dataflow"] for r in rows] == ["is"] * 3 and {r["is_layers"] for r in rows} == {"44"}
    with pytest.raises(SystemExit):
        cli.main(["hwsim", "photonic", "--dataflow", "os"])
    assert "invalid choice: 'os'" in capsys.readouterr().err


def test_shipped_topologies_load():
    g = systolic.load_topology("googlenet")
    a = systolic.load_topology("alphagozero")
    assert len(g) == 58 and len(a) == 44
    # AlphaGo Zero: 39 3x3 convs on the padded 19x19 board, M = 361
    assert (np.asarray(a.m[:39]) == 361).all() and int(a.k[0]) == 9 * 17 and int(a.k[1]) == 9 * 256
    assert np.asarray(a.m[-3:]).tolist() == [361, 1, 1] and np.asarray(a.n[-3:]).tolist() == [1, 256, 1]


def test_cli_options_before_or_after_sweep_agree(tmp_path, capsys):
    """Options given to ``photonic`` before the ``sweep`` subcommand are not reset by its defaults."""
    rows = {}
    for order, argv in {
        "before": ["hwsim", "photonic", "--dataflow", "best", "--reprogram-ns", "1", "--sram-bandwidth",
                   "8", "-t", "resnet18", "sweep", "--pes", "64"],
        "after": ["hwsim", "photonic", "sweep", "--pes", "64", "-t", "resnet18", "--dataflow", "best",
                  "--reprogram-ns", "1", "--sram-bandwidth", "8"],
    }.items():
        out_csv = tmp_path / f"{order}.csv"
        assert cli.main(argv + ["-o", str(out_csv)]) == 0
        rows[order] = list(csv.DictReader(out_csv.read_text().splitlines()))
    capsys.readouterr()
    assert rows["before"] == rows["after"]
    assert {r["topology"] for r in rows["after"]} == {"resnet18"} and len(rows["after"]) == 3
    assert {r["dataflow"] for r in rows["after"]} == {"best"}
    assert {r["sram_bandwidth"] for r in rows["after"]} == {"8"}
    want = photonic.sweep("resnet18", pes=(64,), ptc=EO, dataflow="best", sram_bandwidth=8)
    np.testing.assert_allclose([float(r["cycles"]) for r in rows["after"]], np.asarray(want.cycles),
                               rtol=1e-5)  # the CSV's 6 significant digits
    assert all(float(r["stall_cycles"]) > 0 for r in rows["after"])   # 8 words < R + C = 16..20
    assert cli.main(["hwsim", "photonic", "--grid", "2x2", "-t", "resnet18", "--reprogram-ns", "1",
                     "--sram-bandwidth", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sram_bandwidth"] == 8 and out["stall_cycles"] > 0
    with pytest.raises(SystemExit):
        cli.main(["hwsim", "photonic", "--sram-bandwidth", "0"])
    assert "--sram-bandwidth" in capsys.readouterr().err
