"""Run SCALE-Sim v3 (PyPI ``scalesim``) on a grid of small layers and store what it reports.

Writes ``tests/data/scalesim_v3_reference.json``, which ``tests/hwsim/test_systolic.py`` compares
``hwsim.systolic.simulate(..., compat=True)`` against (and, where ``scalesim`` is installed, a few of
the cases are also re-run live). Regenerate with::

    pip install scalesim==3.0.0
    python tests/hwsim/make_scalesim_reference.py

For every case the JSON keeps the topology rows and config it ran, SCALE-Sim's own GEMM lowering
(``topologies.get_transformed_mnk_dimensions``), its ``COMPUTE_REPORT.csv`` row and the SRAM counts
of its ``DETAILED_ACCESS_REPORT.csv``, per layer.

SCALE-Sim 3.0.0 does not run on NumPy >= 2.3 as released: ``double_buffered_scratchpad_mem`` ends
with ``int(max(ofmap_serviced_cycles))``, a ``max`` over 1-element arrays, and NumPy 2.3 made
``int()`` of a 1-D array an error. :func:`numpy_compat` gives that module a ``max`` that returns the
element instead; nothing else is touched, and with an older NumPy it changes nothing.
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
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
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

    def _max(*args, **kwargs):
        r = builtins.max(*args, **kwargs)
        return r.item() if isinstance(r, np.ndarray) and r.size == 1 else r

    had = "max" in vars(dbsm)
    old = vars(dbsm).get("max")
    dbsm.max = _max
    try:
        yield
    finally:
        if had:
            dbsm.max = old
        else:
            del dbsm.max


def _csv_row(path: pathlib.Path) -> list[list[str]]:
    with open(path) as f:
        lines = f.read().splitlines()[1:]
    return [[x.strip() for x in line.split(",")[:-1]] for line in lines if line.strip()]


def run_scalesim(rows: list[str], array: tuple[int, int], dataflow: str, *, gemm: bool,
                 workdir: str | os.PathLike, sram_kb: int = 64) -> list[dict]:
    """Run SCALE-Sim on topology ``rows`` and return, per layer, its lowering and reported numbers."""
    from scalesim.scale_sim import scalesim

    d = pathlib.Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.cfg").write_text(CONFIG.format(rows=array[0], cols=array[1], dataflow=dataflow,
                                             sram_kb=sram_kb))
    (d / "topo.csv").write_text("\n".join([GEMM_HEADER if gemm else CONV_HEADER, *rows]) + "\n")
    (d / "layout.csv").write_text("Layer name,\n")  # SCALE-Sim insists on a layout file
    with numpy_compat(), contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(save_disk_space=True, verbose=False, config=str(d / "run.cfg"),
                       topology=str(d / "topo.csv"), layout=str(d / "layout.csv"), input_type_gemm=gemm)
        mnk = sim.topo.get_transformed_mnk_dimensions()
        sim.run_scale(top_path=str(d))
    compute = _csv_row(d / "ref" / "COMPUTE_REPORT.csv")
    detail = _csv_row(d / "ref" / "DETAILED_ACCESS_REPORT.csv")
    layers = []
    for (m, n, k), c, a in zip(mnk, compute, detail):
        layers.append(dict(
            m=int(m) // int(n), n=int(n), k=int(k),  # SCALE-Sim's "M" counts ofmap px x filters
            total_cycles_incl_prefetch=int(c[1]), total_cycles=int(c[2]), stall_cycles=int(c[3]),
            overall_util=float(c[4]), mapping_eff=float(c[5]), compute_util=float(c[6]),
            ifmap_sram_reads=int(a[3]), filter_sram_reads=int(a[6]), ofmap_sram_writes=int(a[9]),
        ))
    return layers


def main() -> None:
    from importlib.metadata import version

    import scalesim  # noqa: F401  (fail early with a clear ImportError)

    cases = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for wname, (rows, gemm, arrays) in WORKLOADS.items():
            for array in arrays:
                for df in DATAFLOWS:
                    t = time.perf_counter()
                    layers = run_scalesim(rows, array, df, gemm=gemm,
                                          workdir=pathlib.Path(tmp) / f"{wname}_{array[0]}x{array[1]}_{df}")
                    cases.append(dict(workload=wname, gemm=gemm, rows=rows, array=list(array), dataflow=df,
                                      seconds=round(time.perf_counter() - t, 3), layers=layers))
    out = dict(
        generator="tests/hwsim/make_scalesim_reference.py",
        scalesim_version=version("scalesim"), numpy_version=np.__version__,
        python=sys.version.split()[0], bandwidth_mode="CALC", sram_kb=64, cases=cases,
    )
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {REFERENCE} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
