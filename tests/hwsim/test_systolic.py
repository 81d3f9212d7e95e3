"""hwsim.systolic: the SCALE-Sim v3 compatible cycle model, its workloads and file readers.

The reference numbers come from SCALE-Sim itself: ``tests/data/scalesim_v3_reference.json`` (78 runs
of ``scalesim==3.0.0``, written by ``tests/hwsim/make_scalesim_reference.py``), and, where ``scalesim``
is installed, a few of those runs are repeated live in a temporary directory.
"""

import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hwsim import systolic

from .make_scalesim_reference import CONV_HEADER, GEMM_HEADER, REFERENCE, run_scalesim

# float32 utilisations against SCALE-Sim's float64 sums of per-fold ratios
UTIL_RTOL = 2e-6
DATAFLOWS = [systolic.OutputStationary(), systolic.WeightStationary(), systolic.InputStationary()]


def _reference():
    return json.loads(REFERENCE.read_text())


def _topology(case):
    return systolic.parse_topology("\n".join([GEMM_HEADER if case["gemm"] else CONV_HEADER, *case["rows"]]))


def _assert_matches_scalesim(topo, result, layers, what):
    assert len(topo) == len(layers), what
    ints = {"m": topo.m, "n": topo.n, "k": topo.k, "total_cycles": result.cycles,
            "ifmap_sram_reads": result.ifmap_reads, "filter_sram_reads": result.filter_reads,
            "ofmap_sram_writes": result.ofmap_writes}
    for key, got in ints.items():
        assert np.asarray(got).tolist() == [layer[key] for layer in layers], (what, key)
    floats = {"overall_util": result.overall_utilization, "mapping_eff": result.mapping_efficiency,
              "compute_util": result.compute_utilization}
    for key, got in floats.items():
        np.testing.assert_allclose(100 * np.asarray(got, np.float64), [layer[key] for layer in layers],
                                   rtol=UTIL_RTOL, err_msg=f"{what}: {key}")
    assert all(layer["stall_cycles"] == 0 for layer in layers), what  # CALC mode never stalls


# --------------------------------------------------------------------------------------------------
# Against SCALE-Sim
# --------------------------------------------------------------------------------------------------


def _calc_cases():
    # the USER bandwidth cases stall, so their cycles are the memory model's (tests/hwsim/test_memory.py)
    return [c for c in _reference()["cases"] if c.get("mode", "CALC") == "CALC"]


def _case_id(case):  # the memory cases also differ in SRAM size
    kb = "" if case.get("sram_kb", 64) == 64 else f"-{case['sram_kb']}kB"
    return f"{case['workload']}-{case['array'][0]}x{case['array'][1]}-{case['dataflow']}{kb}"


@pytest.mark.parametrize("case", _calc_cases(), ids=_case_id)
def test_matches_scalesim_reference(case):
    topo = _topology(case)
    result = systolic.simulate(topo, systolic.SystolicArray(*case["array"]), dataflow=case["dataflow"],
                               compat=True)
    _assert_matches_scalesim(topo, result, case["layers"], _case_id(case))


def test_reference_covers_the_grid():
    ref = _reference()
    assert ref["scalesim_version"] == "3.0.0"
    assert {c["dataflow"] for c in ref["cases"]} == {"os", "ws", "is"}
    assert sum(len(c["layers"]) for c in ref["cases"]) >= 140


LIVE = ["conv_small", "conv_strided", "conv_sparsity_col", "gemm", "depthwise"]


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # SCALE-Sim leaves its CSV files open
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_matches_live_scalesim(dataflow, tmp_path):
    """Re-run SCALE-Sim on the small workloads (about 2 s per dataflow) and compare."""
    pytest.importorskip("scalesim")
    cases = [c for c in _reference()["cases"] if c["workload"] in LIVE and c["dataflow"] == dataflow]
    assert len(cases) >= 10
    for case in cases:
        layers = run_scalesim(case["rows"], tuple(case["array"]), dataflow, gemm=case["gemm"],
                              workdir=tmp_path / _case_id(case))
        assert layers == case["layers"], _case_id(case)  # the stored reference is reproducible
        topo = _topology(case)
        result = systolic.simulate(topo, systolic.SystolicArray(*case["array"]), dataflow=dataflow,
                                   compat=True)
        _assert_matches_scalesim(topo, result, layers, _case_id(case))


# --------------------------------------------------------------------------------------------------
# Workloads: conv -> GEMM lowering
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w,r,s,c,n,stride", [(10, 10, 3, 3, 4, 6, 1), (13, 11, 3, 2, 3, 5, 2),
                                                (224, 224, 11, 11, 3, 96, 4), (7, 7, 7, 7, 512, 4096, 1),
                                                (9, 20, 1, 5, 2, 3, 3)])
def test_conv_lowering(h, w, r, s, c, n, stride):
    ceil = systolic.conv(h, w, r, s, c, n, stride)
    floor = systolic.conv(h, w, r, s, c, n, stride, ceil_mode=False)
    ho, wo = -(-(h - r) // stride) + 1, -(-(w - s) // stride) + 1  # SCALE-Sim: ceil((H-R+s)/s)
    assert (int(ceil.m), int(ceil.n), int(ceil.k)) == (ho * wo, n, r * s * c)
    assert int(floor.m) == ((h - r) // stride + 1) * ((w - s) // stride + 1)
    assert int(floor.n) == n and int(floor.k) == r * s * c
    assert int(ceil.macs) == ho * wo * n * r * s * c


def test_conv_stride_pair_and_gemm():
    layer = systolic.conv(9, 9, 3, 3, 2, 4, (2, 1))
    assert int(layer.m) == 4 * 7
    g = systolic.gemm(17, 9, 12, name="fc", sparsity="2:4")
    assert (int(g.m), int(g.n), int(g.k), g.name, g.sparsity) == (17, 9, 12, "fc", (2, 4))


def test_shipped_topologies():
    for name in systolic.TOPOLOGIES:
        topo = systolic.load_topology(name)
        assert len(topo) >= 5 and topo.name == name
        assert bool(jnp.all(topo.macs > 0))
    alex = systolic.load_topology("alexnet")
    assert alex.names[0] == "Conv1"
    assert np.asarray(alex.m).tolist() == [55 * 55, 23 * 23, 11 * 11, 11 * 11, 11 * 11]
    vgg = systolic.load_topology("vgg16")
    assert int(vgg.m[0]) == 224 * 224 and int(vgg.k[1]) == 576 and int(vgg.n[-1]) == 1000
    bert = systolic.load_topology("bert_base_encoder")
    assert "FFN1" in bert.names
    assert int(bert.macs.sum()) == 128 * 768 * (4 * 768 + 2 * 3072) + 24 * 128 * 128 * 64
    agz = systolic.load_topology("alphagozero")  # 19 x 19 board: every tower conv has 361 outputs
    assert int(agz.m[0]) == 361 and int(agz.n[0]) == 256 and int(agz.k[0]) == 3 * 3 * 17
    with pytest.raises(ValueError, match="`name` must be one of"):
        systolic.load_topology("lenet")


# --------------------------------------------------------------------------------------------------
# Topology CSV and .cfg readers
# --------------------------------------------------------------------------------------------------


def test_read_conv_topology_formats(tmp_path):
    p = tmp_path / "net.csv"
    p.write_text(
        CONV_HEADER + "\n"
        "\n"
        "Conv1, 10, 10, 3, 3, 4, 6, 1,\n"            # trailing comma
        "\tConv2,8,8,3,3,2,5,2\n"                    # no trailing comma, tab indent
        "Conv3, 9, 9, 3, 3, 2, 6, 1, 2:4,\n"          # sparsity column
        "Conv4, 9, 9, 3, 3, 2, 6, 1,#dw\n"            # a comment after the row (SCALE-Sim's files)
        "Conv_DP, 8, 8, 3, 3, 3, 2, 1,\n"             # depthwise: one layer per channel
    )
    topo = systolic.read_topology(p)
    assert topo.name == "net"
    assert topo.names == ("Conv1", "Conv2", "Conv3", "Conv4", "Conv_DPChannel_0", "Conv_DPChannel_1",
                          "Conv_DPChannel_2")
    assert topo.sparsity[2] == (2, 4) and topo.sparsity[0] == (1, 1)
    assert np.asarray(topo.m).tolist() == [64, 16, 49, 49, 36, 36, 36]  # Conv2: ceil(5 / 2) + 1 = 4
    assert np.asarray(topo.k).tolist() == [36, 18, 18, 18, 9, 9, 9]
    assert np.asarray(topo.n).tolist() == [6, 5, 6, 6, 2, 2, 2]


def test_read_gemm_topology(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("Layer Name, M, N, K, Sparsity,\nGEMM_1, 3, 5, 16, 3:4,\nGEMM_2, 1, 5, 16\n")
    topo = systolic.read_topology(p)
    assert np.asarray(topo.m).tolist() == [3, 1] and np.asarray(topo.k).tolist() == [16, 16]
    assert topo.sparsity == ((3, 4), (1, 1))
    # the GEMM format forced on a file whose header does not say M, N, K
    q = tmp_path / "h.csv"
    q.write_text("name, a, b, c,\nx, 2, 3, 4,\n")
    assert int(systolic.read_topology(q, gemm=True).k[0]) == 4


@pytest.mark.parametrize("row,match", [
    ("Conv1, 10, 10, 3, 3, 4, 6,", "needs 8 fields"),
    ("Conv1, 10, 0, 3, 3, 4, 6, 1,", "'IFMAP Width' must be a positive int"),
    ("Conv1, 10, 10, 3, x, 4, 6, 1,", "'Filter Width' must be a positive int"),
    ("Conv1, 2, 10, 3, 3, 4, 6, 1,", "`filter_height`=3 is larger than `ifmap_height`=2"),
    ("Conv1, 10, 10, 3, 3, 4, 6, 1, 4:2,", "Sparsity"),
    ("Conv1, 10, 10, 3, 3, 4, 6, 1, 2-4,", "Sparsity"),
])
def test_read_topology_errors(tmp_path, row, match):
    p = tmp_path / "bad.csv"
    p.write_text(CONV_HEADER + "\n" + row + "\n")
    with pytest.raises(ValueError, match=match) as info:
        systolic.read_topology(p)
    assert "line 2" in str(info.value)


def test_read_topology_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        systolic.read_topology(tmp_path / "nope.csv")
    p = tmp_path / "empty.csv"
    p.write_text(CONV_HEADER + "\n\n")
    with pytest.raises(ValueError, match="no layers"):
        systolic.read_topology(p)


SCALE_CFG_V3 = """[general]
run_name = scale_example_run_32x32_ws

[architecture_presets]
ArrayHeight:    32
ArrayWidth:     32
IfmapSramSzkB:   64
FilterSramSzkB:  64
OfmapSramSzkB:   64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : os
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def test_read_config(tmp_path):
    # configs/scale.cfg of the scale-sim-v3 repository (no [layout]/[sparsity]: defaults)
    p = tmp_path / "scale.cfg"
    p.write_text(SCALE_CFG_V3)
    cfg = systolic.read_config(p)
    assert (cfg.run_name, cfg.array_rows, cfg.array_cols) == ("scale_example_run_32x32_ws", 32, 32)
    assert (cfg.ifmap_sram_kb, cfg.filter_sram_kb, cfg.ofmap_sram_kb) == (64, 64, 64)
    assert (cfg.filter_offset, cfg.ofmap_offset, cfg.bandwidths) == (10000000, 20000000, (10,))
    assert (cfg.read_request_buffer, cfg.interface_bandwidth, cfg.use_ramulator_trace) == (512, "CALC", False)
    assert cfg.dataflow == systolic.OutputStationary() and cfg.dataflow_name == "os"
    assert int(cfg.array.rows) == 32 and cfg.ifmap_sram_bank_num == 10 and not cfg.sparsity_support
    # the [layout], [sparsity] and [network_presets] sections of google.cfg
    extra = ("[layout]\nIfmapCustomLayout: False\nIfmapSRAMBankNum: 8\n[sparsity]\nSparsitySupport : true\n"
             "SparseRep : ellpack_block\nBlockSize : 8\n[network_presets]\nTopologyCsvLoc: \"net.csv\"\n")
    p.write_text(SCALE_CFG_V3.replace("Dataflow : os", "Dataflow : WS") + extra)
    cfg = systolic.read_config(p)
    assert cfg.dataflow == systolic.WeightStationary()
    assert (cfg.ifmap_sram_bank_num, cfg.sparsity_support, cfg.sparse_rep, cfg.block_size) == \
        (8, True, "ellpack_block", 8)
    assert cfg.topology_path == "net.csv"
    # defaults of scalesim.scale_config
    d = systolic.parse_config("[general]\nrun_name = x\n")
    assert (d.array_rows, d.ifmap_sram_kb, d.ofmap_sram_kb, d.dataflow_name) == (4, 256, 128, "ws")


@pytest.mark.parametrize("old,new,match", [
    ("Dataflow : os", "Dataflow : rs", "Dataflow must be one of"),
    ("ArrayHeight:    32", "ArrayHeight:    0", "ArrayHeight must be a positive int"),
    ("ArrayWidth:     32", "ArrayWidth:     3.5", "ArrayWidth must be an integer"),
    ("InterfaceBandwidth: CALC", "InterfaceBandwidth: FAST", "InterfaceBandwidth must be CALC or USER"),
    ("UseRamulatorTrace: False", "UseRamulatorTrace: maybe", "UseRamulatorTrace must be True or False"),
])
def test_read_config_errors(tmp_path, old, new, match):
    p = tmp_path / "bad.cfg"
    p.write_text(SCALE_CFG_V3.replace(old, new))
    with pytest.raises(ValueError, match=match):
        systolic.read_config(p)


def test_read_config_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        systolic.read_config(tmp_path / "none.cfg")


# --------------------------------------------------------------------------------------------------
# Bad input at the boundary
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call,match", [
    (lambda: systolic.gemm(0, 4, 4), "`m` must be a positive int"),
    (lambda: systolic.gemm(4, -1, 4), "`n` must be a positive int"),
    (lambda: systolic.gemm(4, 4, True), "`k` must be a positive int"),
    (lambda: systolic.gemm(4, 4, 4, sparsity=(3, 2)), "`sparsity` must be an N:M ratio"),
    (lambda: systolic.conv(0, 8, 3, 3, 1, 1), "`ifmap_height` must be a positive int"),
    (lambda: systolic.conv(8, 8, 3, 3, 0, 1), "`channels` must be a positive int"),
    (lambda: systolic.conv(8, 8, 3, 3, 1, 1, 0), "`stride` must be a positive int"),
    (lambda: systolic.conv(8, 2, 3, 3, 1, 1), "`filter_width`=3 is larger than `ifmap_width`=2"),
    (lambda: systolic.conv(2, 8, 3, 3, 1, 1), "`filter_height`=3 is larger than `ifmap_height`=2"),
    (lambda: systolic.SystolicArray(0, 4), "`rows` must be a positive int"),
    (lambda: systolic.SystolicArray(4, jnp.array([4, 0])), "`cols` must be >= 1"),
])
def test_bad_values(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types():
    with pytest.raises(TypeError, match="`k` must be an integer array"):
        systolic.gemm(4, 4, 2.5)
    with pytest.raises(TypeError, match="`rows` must be an integer array"):
        systolic.SystolicArray(jnp.array([4.0]), 4)


def test_bad_simulate_arguments():
    layer, array = systolic.gemm(8, 8, 8), systolic.SystolicArray(4, 4)
    with pytest.raises(ValueError, match=r"`dataflow` must be one of \['is', 'os', 'ws'\]"):
        systolic.simulate(layer, array, dataflow="rs")
    with pytest.raises(TypeError, match="write OutputStationary()"):
        systolic.simulate(layer, array, dataflow=systolic.OutputStationary)
    with pytest.raises(TypeError, match="`dataflow` must be an AbstractDataflow"):
        systolic.simulate(layer, array, dataflow=3)
    with pytest.raises(TypeError, match="`workload` must be"):
        systolic.simulate((8, 8, 8), array)
    with pytest.raises(TypeError, match="`array` must be"):
        systolic.simulate(layer, (4, 4))
    with pytest.raises(ValueError, match="`compat` must be True or False"):
        systolic.simulate(layer, array, compat=1)
    with pytest.raises(TypeError, match="`layers` must be a non-empty sequence"):
        systolic.Topology([])


def test_int32_overflow_is_reported():
    huge = systolic.gemm(2**12, 2**12, 2**12)  # 2**36 MACs
    with pytest.raises(ValueError, match="overflow int32.*set_precision"):
        systolic.simulate(huge, systolic.SystolicArray(8, 8))
    # a single dimension past int32: a named error, not an OverflowError from JAX nor (NumPy int64)
    # a silently wrapped negative size
    for m in (3_000_000_000, np.int64(3_000_000_000), np.array([5, 3_000_000_000]), [5, 3_000_000_000]):
        with pytest.raises(ValueError, match="the `m` of this workload .* overflow int32"):
            systolic.gemm(m, 2, 2)
    with pytest.raises(ValueError, match="line 2: the `m` of this workload"):
        systolic.parse_topology(CONV_HEADER + "\nbig, 100000, 100000, 3, 3, 2, 4, 1,\n")


# --------------------------------------------------------------------------------------------------
# The model itself: one conformance suite over the dataflows
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataflow", DATAFLOWS, ids=lambda d: d.short_name)
def test_dataflow_conformance(dataflow):
    topo = systolic.load_topology("resnet18")
    arrays = systolic.SystolicArray(jnp.array([8, 32, 128, 16]), jnp.array([8, 32, 128, 256]))
    r = systolic.simulate(topo, arrays, dataflow=dataflow)
    c = systolic.simulate(topo, arrays, dataflow=dataflow, compat=True)
    assert r.cycles.shape == (len(topo), 4) and r.names == topo.names
    macs = np.asarray(topo.macs)[:, None]
    assert np.array_equal(np.asarray(r.macs), np.broadcast_to(macs, (len(topo), 4)))
    # compat mode: one cycle fewer; the clean model: overall utilisation = compute utilisation
    assert np.array_equal(np.asarray(c.cycles), np.asarray(r.cycles) - 1)
    np.testing.assert_allclose(r.overall_utilization, r.compute_utilization, rtol=1e-5)
    for u in (r.overall_utilization, r.mapping_efficiency, r.compute_utilization, c.compute_utilization):
        assert bool(jnp.all((u > 0) & (u <= 1)))
    assert bool(jnp.all(c.compute_utilization <= r.compute_utilization + 1e-7))
    # every operand is read, and every output written, at least once
    m, n, k = (np.asarray(x)[:, None] for x in (topo.m, topo.n, topo.k))
    assert np.all(np.asarray(r.ifmap_reads) >= m * k) and np.all(np.asarray(r.filter_reads) >= k * n)
    assert np.all(np.asarray(r.ofmap_writes) >= m * n)
    # more PEs never take more cycles for the same aspect ratio
    assert np.all(np.diff(np.asarray(r.cycles)[:, :3], axis=1) <= 0)


def test_perfect_fit_closed_form():
    """A GEMM that tiles the array exactly: every PE busy, so only fill and drain are lost."""
    R, C = 8, 4
    for dataflow, (m, n, k), t, fill in [(systolic.OutputStationary(), (16, 8, 50), 50, R + C - 2),
                                         (systolic.WeightStationary(), (50, 8, 16), 50, 2 * R + C - 2),
                                         (systolic.InputStationary(), (8, 50, 16), 50, 2 * R + C - 2)]:
        r = systolic.simulate(systolic.gemm(m, n, k), systolic.SystolicArray(R, C), dataflow=dataflow)
        assert int(r.row_folds) * int(r.col_folds) == 4
        assert int(r.cycles) == 4 * (t + fill)
        assert float(r.mapping_efficiency) == 1.0
        np.testing.assert_allclose(float(r.compute_utilization), t / (t + fill), rtol=1e-6)
    os_ = systolic.simulate(systolic.gemm(16, 8, 50), systolic.SystolicArray(R, C),
                            dataflow=systolic.OutputStationary())
    assert int(os_.ofmap_writes) == 16 * 8
    os_compat = systolic.simulate(systolic.gemm(16, 8, 50), systolic.SystolicArray(R, C),
                                  dataflow=systolic.OutputStationary(), compat=True)
    assert int(os_compat.ofmap_writes) == 16 * 8 + 4 * (R + C)


# --------------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------------


def test_jit_vmap_and_no_retrace():
    topo = systolic.load_topology("alexnet")

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(topo, array):
        return systolic.simulate(topo, array, dataflow=systolic.OutputStationary(), compat=True)

    sizes = [(8, 8), (16, 32), (128, 128)]
    eager = [systolic.simulate(topo, systolic.SystolicArray(*s), dataflow="os", compat=True) for s in sizes]
    jitted = [run(topo, systolic.SystolicArray(*s)) for s in sizes]  # new shapes, no retrace
    for a, b in zip(eager, jitted):
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda x, y: bool(jnp.all(x == y)), a, b))

    # vmap over array shapes and over layers agrees with broadcasting (layers x arrays)
    arrays = systolic.SystolicArray(jnp.array([8, 16, 128]), jnp.array([8, 32, 128]))
    grid = systolic.simulate(topo, arrays, dataflow="os", compat=True)
    over_arrays = jax.vmap(lambda a: systolic.simulate(topo, a, dataflow="os", compat=True))(arrays)
    assert np.array_equal(np.asarray(over_arrays.cycles).T, np.asarray(grid.cycles))
    over_layers = jax.vmap(
        lambda m, n, k: systolic.simulate(systolic.gemm(m, n, k), arrays, dataflow="os", compat=True).cycles
    )(topo.m, topo.n, topo.k)
    assert np.array_equal(np.asarray(over_layers), np.asarray(grid.cycles))
    for i in range(len(sizes)):
        assert np.array_equal(np.asarray(grid.cycles[:, i]), np.asarray(eager[i].cycles))
    assert grid.cycles.dtype == jnp.int32 and grid.overall_utilization.dtype == jnp.float32


def test_topology_indexing_and_results_are_pytrees():
    topo = systolic.load_topology("bert_base_encoder")
    layer = topo[len(topo) - 1]
    assert layer.name == "FFN2" and (int(layer.m), int(layer.n), int(layer.k)) == (128, 768, 3072)
    assert len(topo.layers) == len(topo)
    r = systolic.simulate(layer, systolic.SystolicArray(128, 128))
    assert r.names == ("FFN2",) and r.cycles.shape == ()
    leaves = jax.tree_util.tree_leaves(r)
    assert len(leaves) == 10 and all(isinstance(x, jax.Array) for x in leaves)


def test_reference_file_is_where_the_generator_writes():
    assert REFERENCE == pathlib.Path(__file__).resolve().parents[1] / "data" / "scalesim_v3_reference.json"


def test_conv_geometry_travels_with_layers():
    """conv() records its geometry; GEMMs have none; a topology stacks it and indexing gives it back."""
    layer = systolic.conv(13, 11, 3, 2, 3, 5, 2)
    g = layer.geometry
    got = [int(x) for x in (g.ifmap_height, g.ifmap_width, g.filter_height, g.filter_width, g.channels,
                            g.stride_h, g.stride_w, g.ofmap_height, g.ofmap_width)]
    assert got == [13, 11, 3, 2, 3, 2, 2, 6, 6] and int(layer.m) == 36
    assert systolic.gemm(4, 5, 6).geometry is None
    topo = systolic.Topology([systolic.gemm(4, 5, 6), layer])
    assert topo.is_conv == (False, True)
    assert topo[0].geometry is None and int(topo[1].geometry.channels) == 3
    assert systolic.Topology([systolic.gemm(4, 5, 6)]).geometry is None
    # SCALE-Sim's own GEMM input (M x K ifmap, 1 x K filter) stands in for the GEMM row
    assert int(topo.geometry.ifmap_width[0]) == 6 and int(topo.geometry.ofmap_height[0]) == 4
    # the geometry gives the distinct ifmap words the memory model used to need as an argument
    text = "\n".join([CONV_HEADER, "a, 13, 11, 3, 2, 3, 5, 2,", "b, 9, 9, 2, 2, 1, 4, 3,"])
    topo = systolic.parse_topology(text)
    from hwsim.systolic._memory import geometry_ifmap_words
    assert np.asarray(geometry_ifmap_words(topo.geometry)).tolist() == systolic.topology_ifmap_words(text)
