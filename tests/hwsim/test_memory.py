"""The SRAM/DRAM model (``simulate(..., memory=Memory(...))``) against SCALE-Sim v3's reports.

The references are the memory cases of ``tests/data/scalesim_v3_reference.json`` (``mem_*`` workloads:
a convolution and a GEMM on 8x8, 16x16, 32x32, 4x256, 256x4 and 2x512 arrays, every dataflow, with
64 kB SRAMs that hold the operands and 2 kB SRAMs that do not, plus USER bandwidth cases that stall).
"""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

from hwsim import systolic

from .make_scalesim_reference import CONV_HEADER, GEMM_HEADER, REFERENCE

_REF = json.loads(REFERENCE.read_text())
MEM_CASES = [c for c in _REF["cases"] if c["workload"].startswith("mem_")]


def _run(case):
    text = "\n".join([GEMM_HEADER if case["gemm"] else CONV_HEADER, *case["rows"]])
    bw = case["bandwidth"]
    user = dict(ifmap_bandwidth=bw, filter_bandwidth=bw, ofmap_bandwidth=bw) if case["mode"] == "USER" else {}
    mem = systolic.Memory(case["sram_kb"], case["sram_kb"], case["sram_kb"], **user)
    # the convolutions' geometry travels with the topology: no `ifmap_words` needed
    return systolic.simulate(systolic.parse_topology(text), systolic.SystolicArray(*case["array"]),
                             dataflow=case["dataflow"], compat=True, memory=mem).memory


def _got(mem, key):
    return int(np.asarray(getattr(mem, key))[0])


# CALC-mode ifmap DRAM reads of the convolution whose ifmap does not fit (2 kB): the window-reuse model's
# largest measured relative error per dataflow (see the table in hwsim/systolic/_memory.py)
CONV_IFMAP_RTOL = {"os": 0.12, "ws": 0.05, "is": 0.19}


def test_calc_mode_matches_scalesim():
    """CALC mode: filter reads and ofmap writes exact on every case; ifmap reads exact for GEMMs and for
    convolutions whose ifmap fits the SRAM, within the measured bounds for those that do not; no stalls;
    the SRAM windows of the detailed report exact."""
    cases = [c for c in MEM_CASES if c["mode"] == "CALC"]
    assert len(cases) == 72
    for case in cases:
        mem, ref = _run(case), case["layers"][0]
        what = (case["workload"], case["array"], case["dataflow"], case["sram_kb"])
        assert _got(mem, "filter_dram_reads") == ref["filter_dram_reads"], what
        assert _got(mem, "ofmap_dram_writes") == ref["ofmap_dram_writes"], what
        assert _got(mem, "stall_cycles") == ref["stall_cycles"] == 0, what
        assert _got(mem, "cycles") == ref["total_cycles"], what
        if case["gemm"] or case["sram_kb"] == 64:
            assert _got(mem, "ifmap_dram_reads") == ref["ifmap_dram_reads"], what
        else:
            np.testing.assert_allclose(_got(mem, "ifmap_dram_reads"), ref["ifmap_dram_reads"],
                                       rtol=CONV_IFMAP_RTOL[case["dataflow"]], err_msg=str(what))
        detail = ref["detailed_access_report"]
        got = np.stack([np.asarray(mem.sram_start[0]), np.asarray(mem.sram_stop[0])], -1)
        assert got.tolist() == [[detail[0], detail[1]], [detail[3], detail[4]], [detail[6], detail[7]]], what
        if case["gemm"]:
            # the prefetch-inclusive total is approximated (the drain tail); within 2% on GEMMs
            np.testing.assert_allclose(_got(mem, "cycles_incl_prefetch"), ref["total_cycles_incl_prefetch"],
                                       rtol=0.02, err_msg=str(what))


@pytest.mark.slow  # ~16 s
def test_user_mode_stalls_and_traffic():
    """USER mode: the pinned operand's DRAM reads exact (but on 4x256), ofmap writes within 0.2%;
    stalls reported when the bandwidth is short, none when the operands fit."""
    cases = [c for c in MEM_CASES if c["mode"] == "USER"]
    assert len(cases) == 15 and any(c["layers"][0]["stall_cycles"] > 0 for c in cases)
    pinned = {"os": None, "ws": "filter_dram_reads", "is": "ifmap_dram_reads"}
    for case in cases:
        mem, ref = _run(case), case["layers"][0]
        what = (case["workload"], case["array"], case["dataflow"], case["sram_kb"], case["bandwidth"])
        if pinned[case["dataflow"]] and case["array"] != [4, 256]:  # 4x256 is: 25% low (see _memory)
            assert _got(mem, pinned[case["dataflow"]]) == ref[pinned[case["dataflow"]]], what
        np.testing.assert_allclose(_got(mem, "ofmap_dram_writes"), ref["ofmap_dram_writes"], rtol=2e-3)
        if case["sram_kb"] == 64:
            assert _got(mem, "ifmap_dram_reads") == ref["ifmap_dram_reads"], what
            assert _got(mem, "stall_cycles") == ref["stall_cycles"] == 0, what
        if case["sram_kb"] == 2 and case["array"] == [8, 8]:
            assert ref["stall_cycles"] > 0 and _got(mem, "stall_cycles") > 0, what
        assert _got(mem, "cycles") == _got(mem, "stall_cycles") + ref["total_cycles"] - ref["stall_cycles"]


def test_memory_under_jit_and_batched():
    topo = systolic.load_topology("alexnet")
    arrays = systolic.SystolicArray(np.array([8, 32, 4]), np.array([8, 32, 256]))
    mem = systolic.Memory(64, 64, 64)
    grid = systolic.simulate(topo, arrays, dataflow="os", compat=True, memory=mem)
    assert grid.memory.ifmap_dram_reads.shape == (len(topo), 3)
    assert grid.memory.sram_start.shape == (len(topo), 3, 3)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(topo, array, mem):
        return systolic.simulate(topo, array, dataflow="os", compat=True, memory=mem).memory

    for j in range(3):
        one = run(topo, systolic.SystolicArray(int(arrays.rows[j]), int(arrays.cols[j])), mem)
        want = np.asarray(grid.memory.filter_dram_reads[:, j])
        assert np.array_equal(np.asarray(one.filter_dram_reads), want)
    # a different SRAM size is a new leaf value, not a retrace
    small = run(topo, systolic.SystolicArray(8, 8), systolic.Memory(2, 2, 2))
    assert bool(jax.numpy.all(small.filter_dram_reads >= grid.memory.filter_dram_reads[:, 0]))
    # DRAM reads at least every distinct word; the CALC mode never stalls
    assert np.all(np.asarray(grid.memory.filter_dram_reads) >= np.asarray(topo.k * topo.n)[:, None])
    assert not np.any(np.asarray(grid.memory.stall_cycles))


def test_config_memory_and_errors(tmp_path):
    p = tmp_path / "u.cfg"
    p.write_text("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 2\n"
                 "FilterSramSzkB: 4\nOfmapSramSzkB: 8\nBandwidth : 3\n[layout]\nIfmapSRAMBankBandwidth: 2\n"
                 "FilterSRAMBankBandwidth: 5\n[run_presets]\nInterfaceBandwidth: USER\n")
    mem = systolic.read_config(p).memory
    assert mem.mode == "USER"
    assert [int(x) for x in (mem.ifmap_sram_kb, mem.filter_sram_kb, mem.ofmap_sram_kb)] == [2, 4, 8]
    assert [int(x) for x in (mem.ifmap_bandwidth, mem.filter_bandwidth, mem.ofmap_bandwidth)] == [2, 5, 3]
    assert systolic.parse_config("[general]\nrun_name = x\n").memory.mode == "CALC"
    with pytest.raises(ValueError, match="give all of"):
        systolic.Memory(64, 64, 64, ifmap_bandwidth=10)
    with pytest.raises(ValueError, match="`ofmap_sram_kb` must be >= 1"):
        systolic.Memory(64, 64, 0)
    layer, array = systolic.gemm(8, 8, 8), systolic.SystolicArray(4, 4)
    with pytest.raises(TypeError, match="`memory` must be"):
        systolic.simulate(layer, array, memory=64)
    with pytest.raises(ValueError, match="`ifmap_words` is used by the memory model only"):
        systolic.simulate(layer, array, ifmap_words=64)
    assert systolic.simulate(layer, array).memory is None
