"""Run SCALE-Sim v3 (PyPI ``scalesim``) on a grid of small layers and store what it reports.

Writes ``tests/data/scalesim_v3_reference.json``, which ``tests/hwsim/test_systolic.py`` compares
``hwsim.systolic.simulate(..., compat=True)`` against (and, where ``scalesim`` is installed, a few of
the cases are also re-run live). Regenerate with::

    pip install scalesim==3.0.0
    python tests/hwsim/make_scalesim_reference.py

or, after adding cases to the grids below, run only those (the stored ones are kept)::

    python tests/hwsim/make_scalesim_reference.py --missing

For every case the JSON keeps the topology rows and config it ran, SCALE-Sim's own GEMM lowering
(``topologies.get_transformed_mnk_dimensions``), its ``COMPUTE_REPORT.csv`` row and the SRAM counts
of its ``DETAILED_ACCESS_REPORT.csv``, per layer.

SCALE-Sim 3.0.0 does not run on NumPy >= 2.3 as released: ``double_buffered_scratchpad_mem`` ends
with ``int(max(ofmap_serviced_cycles))``, a ``max`` over 1-element arrays, and NumPy 2.3 made
``int()`` of a 1-D array an error (``read_buffer.prefetch_active_buffer``, used in the ``USER``
bandwidth mode, has the same ``int(max(...))``). :func:`numpy_compat` gives those two modules a ``max``
that returns the element instead; nothing else is touched, and with an older NumPy it changes nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "data" / "scalesim_v3_reference.json"

CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
               "Num Filter, Strides,")
GEMM_HEADER = "Layer, M, N, K,"

CONFIG = """[general]
run_name = ref

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   {sram_kb}
FilterSramSzkB:  {sram_kb}
OfmapSramSzkB:   {sram_kb}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : {bandwidth}
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: {bandwidth}
IfmapSRAMBankNum: {banks}
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: {bandwidth}
FilterSRAMBankNum: {banks}
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: {mode}
UseRamulatorTrace: False
"""

# name: (topology rows, gemm?, arrays); every case runs with each of DATAFLOWS.
SMALL_ARRAYS = [(4, 4), (4, 5), (8, 3), (1, 6), (16, 16)]
WORKLOADS = {
    "conv_small": (["conv_a, 10, 10, 3, 3, 4, 6, 1,"], False, SMALL_ARRAYS),
    "conv_strided": (["conv_s2, 13, 11, 3, 2, 3, 5, 2,", "conv_1x1, 7, 7, 1, 1, 16, 9, 1,"], False,
                     SMALL_ARRAYS),
    "conv_sparsity_col": (["conv_sp, 9, 9, 3, 3, 2, 6, 1, 2:4,"], False, SMALL_ARRAYS),
    "gemm": (["fc1, 17, 9, 12,", "fc2, 5, 20, 7,", "fc3, 1, 3, 40,"], True, SMALL_ARRAYS),
    # "DP" in the name: SCALE-Sim makes one single-channel layer per channel
    "depthwise": (["Conv_DP, 8, 8, 3, 3, 3, 2, 1,"], False, [(4, 4), (3, 5)]),
    # real layers (ResNet-18's last conv and FC, a BERT-base attention head) on real-sized arrays
    "resnet18_tail": (["Conv5_2b, 7, 7, 3, 3, 512, 512, 1,", "FC, 1, 1, 1, 1, 512, 1000, 1,"], False,
                      [(64, 64), (128, 32)]),
    "bert_head": (["Attn_QK, 128, 128, 64,", "Attn_V, 128, 64, 128,"], True, [(32, 32), (16, 64)]),
}
DATAFLOWS = ["os", "ws", "is"]


@contextlib.contextmanager
def numpy_compat():
    """Let SCALE-Sim 3.0.0 run on NumPy >= 2.3 (see the module docstring); undone on exit."""
    import scalesim.memory.double_buffered_scratchpad_mem as dbsm
    import scalesim.memory.read_buffer as rb

    def _max(*args, **kwargs):
        r = builtins.max(*args, **kwargs)
        return r.item() if isinstance(r, np.ndarray) and r.size == 1 else r

    # read_buffer (USER bandwidth mode) has the same int(max(2-D array)) in prefetch_active_buffer
    saved = [(mod, "max" in vars(mod), vars(mod).get("max")) for mod in (dbsm, rb)]
    for mod, _, _ in saved:
        mod.max = _max
    try:
        yield
    finally:
        for mod, had, old in saved:
            if had:
                mod.max = old
            else:
                del mod.max


def _csv_row(path: pathlib.Path) -> list[list[str]]:
    with open(path) as f:
        lines = f.read().splitlines()[1:]
    return [[x.strip() for x in line.split(",")[:-1]] for line in lines if line.strip()]


def run_scalesim(rows: list[str], array: tuple[int, int], dataflow: str, *, gemm: bool,
                 workdir: str | os.PathLike, sram_kb: int = 64, mode: str = "CALC",
                 bandwidth: int = 10) -> list[dict]:
    """Run SCALE-Sim on topology ``rows`` and return, per layer, its lowering and reported numbers.

    ``mode`` is the config's ``InterfaceBandwidth`` (``"CALC"`` or ``"USER"``); in ``USER`` mode
    ``bandwidth`` words/cycle is written to ``Bandwidth`` (the ofmap port) and to the ifmap and filter
    ``SRAMBankBandwidth`` (which SCALE-Sim uses as their DRAM bandwidths), with one bank each.
    """
    from scalesim.scale_sim import scalesim

    d = pathlib.Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.cfg").write_text(CONFIG.format(rows=array[0], cols=array[1], dataflow=dataflow,
                                             sram_kb=sram_kb, mode=mode, bandwidth=bandwidth,
                                             banks=10 if bandwidth % 10 == 0 else 1))
    (d / "topo.csv").write_text("\n".join([GEMM_HEADER if gemm else CONV_HEADER, *rows]) + "\n")
    (d / "layout.csv").write_text("Layer name,\n")  # SCALE-Sim insists on a layout file
    with numpy_compat(), contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(save_disk_space=True, verbose=False, config=str(d / "run.cfg"),
                       topology=str(d / "topo.csv"), layout=str(d / "layout.csv"), input_type_gemm=gemm)
        mnk = sim.topo.get_transformed_mnk_dimensions()
        sim.run_scale(top_path=str(d))
    compute = _csv_row(d / "ref" / "COMPUTE_REPORT.csv")
    bw = _csv_row(d / "ref" / "BANDWIDTH_REPORT.csv")
    detail = _csv_row(d / "ref" / "DETAILED_ACCESS_REPORT.csv")
    layers = []
    for (m, n, k), c, b, a in zip(mnk, compute, bw, detail):
        layers.append(dict(
            m=int(m) // int(n), n=int(n), k=int(k),  # SCALE-Sim's "M" counts ofmap px x filters
            total_cycles_incl_prefetch=int(c[1]), total_cycles=int(c[2]), stall_cycles=int(c[3]),
            overall_util=float(c[4]), mapping_eff=float(c[5]), compute_util=float(c[6]),
            ifmap_sram_reads=int(a[3]), filter_sram_reads=int(a[6]), ofmap_sram_writes=int(a[9]),
            ifmap_dram_reads=int(float(a[12])), filter_dram_reads=int(float(a[15])),
            ofmap_dram_writes=int(float(a[18])),
            # the whole rows of BANDWIDTH_REPORT.csv and DETAILED_ACCESS_REPORT.csv, LayerID dropped
            bandwidth_report=[float(x) for x in b[1:]], detailed_access_report=[float(x) for x in a[1:]],
        ))
    return layers


# The memory model's grid (CALC bandwidth mode): layers on the arrays of the acceptance test, with
# SRAMs that hold every operand (64 kB) and with SRAMs far too small for them (2 kB, so the double
# buffers stream and re-fetch). name: (topology rows, gemm?, SRAM sizes in kB)
MEMORY_ARRAYS = [(8, 8), (16, 16), (32, 32), (4, 256), (256, 4), (2, 512)]
MEMORY_WORKLOADS = {
    "mem_conv": (["mconv, 16, 16, 3, 3, 8, 16, 1,"], False, [64, 2]),
    "mem_gemm": (["mgemm, 96, 80, 64,"], True, [64, 2]),
    # a strided 3x3 convolution whose ceil-mode last window column reads past the input, and a
    # strided 1x1 one that skips input words (the trace DRAM model's harder streams)
    "mem_conv_s2": (["mconv_s2, 17, 16, 3, 3, 8, 32, 2,", "mconv_1x1, 12, 12, 1, 1, 16, 8, 2,"], False, [2]),
}
# USER bandwidth mode with a small DRAM bandwidth (words/cycle), so that the array stalls.
USER_CASES = [
    # (workload, array, sram_kb, bandwidth)
    ("mem_gemm", (8, 8), 2, 2), ("mem_gemm", (16, 16), 64, 1), ("mem_conv", (8, 8), 64, 2),
    ("mem_conv", (32, 32), 2, 4), ("mem_gemm", (4, 256), 2, 10),
    ("mem_conv_s2", (8, 8), 2, 3), ("mem_conv_s2", (32, 32), 2, 10),
]


def _key(wname, array, df, sram_kb=64, mode="CALC", bandwidth=10):
    return (wname, tuple(array), df, sram_kb, mode, bandwidth)


def main(out_path: str | os.PathLike = REFERENCE, *, missing: bool = False) -> None:
    """Run every case of the grids and write the JSON; with ``missing``, run only the cases that the
    JSON at ``out_path`` does not hold yet and add them to it."""
    from importlib.metadata import version

    import scalesim  # noqa: F401  (fail early with a clear ImportError)

    out_path = pathlib.Path(out_path)
    cases = json.loads(out_path.read_text())["cases"] if missing else []
    have = {_key(c["workload"], c["array"], c["dataflow"], c.get("sram_kb", 64), c.get("mode", "CALC"),
                 c.get("bandwidth", 10)) for c in cases}
    t0 = time.perf_counter()

    def add(tmp, wname, rows, gemm, array, df, **mem):
        if _key(wname, array, df, **mem) in have:
            return
        t = time.perf_counter()
        tag = "_".join(f"{k}{v}" for k, v in mem.items())
        layers = run_scalesim(rows, array, df, gemm=gemm,
                              workdir=pathlib.Path(tmp) / f"{wname}_{array[0]}x{array[1]}_{df}_{tag}", **mem)
        cases.append(dict(workload=wname, gemm=gemm, rows=rows, array=list(array), dataflow=df,
                          sram_kb=mem.get("sram_kb", 64), mode=mem.get("mode", "CALC"),
                          bandwidth=mem.get("bandwidth", 10),
                          seconds=round(time.perf_counter() - t, 3), layers=layers))
        print(f"{wname} {array} {df} {mem}: {time.perf_counter() - t:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for wname, (rows, gemm, arrays) in WORKLOADS.items():
            for array in arrays:
                for df in DATAFLOWS:
                    add(tmp, wname, rows, gemm, array, df)
        for wname, (rows, gemm, srams) in MEMORY_WORKLOADS.items():
            for sram_kb in srams:
                for array in MEMORY_ARRAYS:
                    for df in DATAFLOWS:
                        add(tmp, wname, rows, gemm, array, df, sram_kb=sram_kb)
        for wname, array, sram_kb, bandwidth in USER_CASES:
            rows, gemm, _ = MEMORY_WORKLOADS[wname]
            for df in DATAFLOWS:
                add(tmp, wname, rows, gemm, array, df, sram_kb=sram_kb, mode="USER", bandwidth=bandwidth)
    out = dict(
        generator="tests/hwsim/make_scalesim_reference.py",
        scalesim_version=version("scalesim"), numpy_version=np.__version__,
        python=sys.version.split()[0], cases=cases,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {out_path} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--missing"]
    main(*args[:1], missing="--missing" in sys.argv[1:])
