"""``sciml hwsim systolic | sweep``: the systolic-array model from the command line.

* ``systolic -c CONFIG.cfg -t TOPOLOGY.csv`` writes SCALE-Sim's three reports (``COMPUTE_REPORT.csv``,
  ``BANDWIDTH_REPORT.csv``, ``DETAILED_ACCESS_REPORT.csv``, same column names, one row per layer) and
  prints a summary table.
* ``sweep -t TOPOLOGY.csv --arrays 8x8,32x32,4x256 --dataflows os,ws,is`` runs the grid of array shapes
  x dataflows and writes one CSV row per (array, dataflow) with the network's totals.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

from sciml.cli import register_command

COMPUTE_HEADER = ("LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, "
                  "Mapping Efficiency %, Compute Util %,")
BANDWIDTH_HEADER = ("LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, Avg IFMAP DRAM BW, "
                    "Avg FILTER DRAM BW, Avg OFMAP DRAM BW,")
DETAIL_HEADER = ("LayerID, SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads, "
                 "SRAM Filter Start Cycle, SRAM Filter Stop Cycle, SRAM Filter Reads, "
                 "SRAM OFMAP Start Cycle, SRAM OFMAP Stop Cycle, SRAM OFMAP Writes, "
                 "DRAM IFMAP Start Cycle, DRAM IFMAP Stop Cycle, DRAM IFMAP Reads, "
                 "DRAM Filter Start Cycle, DRAM Filter Stop Cycle, DRAM Filter Reads, "
                 "DRAM OFMAP Start Cycle, DRAM OFMAP Stop Cycle, DRAM OFMAP Writes,")
SWEEP_HEADER = ("array_rows,array_cols,dataflow,sparsity,layers,total_cycles,stall_cycles,"
                "total_cycles_incl_prefetch,macs,overall_util_pct,ifmap_dram_reads,filter_dram_reads,"
                "ofmap_dram_writes,seconds")


def _read(args):
    from hwsim import systolic

    topo_path = pathlib.Path(args.topology)
    # convolution rows keep their geometry, which the memory model reads (distinct ifmap words, reuse)
    return systolic.read_topology(topo_path, gemm=True if args.gemm else None)


def _run(topo, array, dataflow, memory):
    from hwsim import systolic

    return systolic.simulate(topo, array, dataflow=dataflow, compat=True, memory=memory)


def report_rows(result) -> tuple[list[list], list[list], list[list]]:
    """The rows (LayerID first) of SCALE-Sim's compute, bandwidth and detailed access reports."""
    mem = result.memory
    compute, bandwidth, detail = [], [], []
    for i in range(len(np.asarray(result.cycles))):
        # SCALE-Sim's Overall Util divides by the cycles with stalls
        util = 100 * float(result.overall_utilization[i]) * int(result.cycles[i]) / int(mem.cycles[i])
        compute.append([i, int(mem.cycles_incl_prefetch[i]), int(mem.cycles[i]), int(mem.stall_cycles[i]),
                        util, 100 * float(result.mapping_efficiency[i]),
                        100 * float(result.compute_utilization[i])])
        bandwidth.append([i, *(float(x) for x in mem.sram_bandwidth[i]),
                          *(float(x) for x in mem.dram_bandwidth[i])])
        sram = (int(result.ifmap_reads[i]), int(result.filter_reads[i]), int(result.ofmap_writes[i]))
        dram = (int(mem.ifmap_dram_reads[i]), int(mem.filter_dram_reads[i]), int(mem.ofmap_dram_writes[i]))
        row = [i]
        for o in range(3):
            row += [int(mem.sram_start[i][o]), int(mem.sram_stop[i][o]), sram[o]]
        for o in range(3):
            row += [int(mem.dram_start[i][o]), int(mem.dram_stop[i][o]), dram[o]]
        detail.append(row)
    return compute, bandwidth, detail


def _write(path: pathlib.Path, header: str, rows) -> None:
    # SCALE-Sim's layout: ", "-separated values and a trailing comma
    path.write_text(header + "\n" + "".join(", ".join(str(x) for x in r) + ",\n" for r in rows))


def _cmd_systolic(args) -> int:
    from hwsim import systolic

    try:
        cfg = systolic.read_config(args.config)
        topo = _read(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"sciml hwsim systolic: {e}") from None
    t0 = time.perf_counter()
    result = _run(topo, cfg.array, cfg.dataflow, cfg.memory)
    out = pathlib.Path(args.out) / cfg.run_name
    out.mkdir(parents=True, exist_ok=True)
    compute, bandwidth, detail = report_rows(result)
    _write(out / "COMPUTE_REPORT.csv", COMPUTE_HEADER, compute)
    _write(out / "BANDWIDTH_REPORT.csv", BANDWIDTH_HEADER, bandwidth)
    _write(out / "DETAILED_ACCESS_REPORT.csv", DETAIL_HEADER, detail)
    seconds = time.perf_counter() - t0
    head = ("layer", "cycles", "stalls", "util %", "ifmap DRAM", "filter DRAM", "ofmap DRAM")
    cells = [head] + [(name, str(c[2]), str(c[3]), f"{c[4]:.2f}", str(d[12]), str(d[15]), str(d[18]))
                      for name, c, d in zip(topo.names, compute, detail)]
    widths = [max(len(r[j]) for r in cells) for j in range(len(head))]
    lines = ["  ".join(r[j].rjust(widths[j]) if j else r[j].ljust(widths[j]) for j in range(len(head)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    print(f"{cfg.run_name}: {cfg.array_rows}x{cfg.array_cols} {cfg.dataflow_name}, "
          f"{cfg.memory.mode} bandwidth, {len(topo)} layers")
    print("\n".join(lines))
    print(f"\ntotal cycles {sum(c[2] for c in compute)}, reports in {out} ({seconds:.2f} s)")
    return 0


def _arrays(text: str) -> list[tuple[int, int]]:
    try:
        out = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        out = []
    if not out or any(len(a) != 2 or min(a) < 1 for a in out):
        raise argparse.ArgumentTypeError(f"expected array shapes like 8x8,32x32,4x256, got {text!r}")
    return out  # type: ignore[return-value]


def _cmd_sweep(args) -> int:
    import jax.numpy as jnp

    from hwsim import systolic

    bad = [s for s in args.sparsity if s.strip() not in ("dense", "1:1")]
    if bad:
        raise SystemExit(f"sciml hwsim sweep: --sparsity {bad} is not modelled yet; only 'dense' is "
                         "(the sparse model will add N:M ratios)")
    try:
        topo = _read(args)
        memory = systolic.read_config(args.config).memory if args.config else systolic.Memory(
            args.sram_kb, args.sram_kb, args.sram_kb)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"sciml hwsim sweep: {e}") from None
    arrays = systolic.SystolicArray(jnp.array([a[0] for a in args.arrays]),
                                    jnp.array([a[1] for a in args.arrays]))
    lines = [SWEEP_HEADER]
    for df in args.dataflows:
        t0 = time.perf_counter()
        r = _run(topo, arrays, df, memory)  # layers x arrays in one call
        cycles = np.asarray(r.memory.cycles).sum(0)
        stalls = np.asarray(r.memory.stall_cycles).sum(0)
        incl = np.asarray(r.memory.cycles_incl_prefetch).sum(0)
        macs = int(np.asarray(topo.macs, np.int64).sum())
        dram = [np.asarray(x, np.int64).sum(0)
                for x in (r.memory.ifmap_dram_reads, r.memory.filter_dram_reads, r.memory.ofmap_dram_writes)]
        seconds = time.perf_counter() - t0
        for j, (rows, cols) in enumerate(args.arrays):
            util = 100 * macs / (int(cycles[j]) * rows * cols)
            lines.append(f"{rows},{cols},{df},dense,{len(topo)},{int(cycles[j])},{int(stalls[j])},"
                         f"{int(incl[j])},{macs},{util:.4f},{int(dram[0][j])},{int(dram[1][j])},"
                         f"{int(dram[2][j])},{seconds:.3f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {len(lines) - 1} rows to {out}")
    return 0


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = sub.add_parser("systolic", help="SCALE-Sim style run: write its three CSV reports")
    p.add_argument("-c", "--config", required=True, help="SCALE-Sim .cfg file")
    p.add_argument("-t", "--topology", required=True, help="SCALE-Sim topology CSV")
    p.add_argument("--gemm", action="store_true", help="the topology is in the GEMM (M, N, K) format")
    p.add_argument("-o", "--out", default=".", help="output directory (reports go to OUT/<run_name>)")
    p.set_defaults(func=_cmd_systolic)

    p = sub.add_parser("sweep", help="array shapes x dataflows (x sparsity) grid, one CSV")
    p.add_argument("-t", "--topology", required=True, help="SCALE-Sim topology CSV")
    p.add_argument("--gemm", action="store_true", help="the topology is in the GEMM (M, N, K) format")
    p.add_argument("-c", "--config", default=None, help="take SRAM sizes/bandwidths from this .cfg")
    p.add_argument("--sram-kb", type=int, default=64, help="SRAM size of each operand without --config")
    p.add_argument("--arrays", type=_arrays, default=_arrays("8x8,16x16,32x32,64x64,128x128"),
                   help="array shapes, e.g. 8x8,32x32,4x256")
    p.add_argument("--dataflows", type=lambda s: s.split(","), default=["os", "ws", "is"],
                   help="comma-separated dataflows among os, ws, is")
    p.add_argument("--sparsity", type=lambda s: s.split(","), default=["dense"],
                   help="sparsity levels (only 'dense' for now)")
    p.add_argument("-o", "--out", default="sweep.csv", help="output CSV")
    p.set_defaults(func=_cmd_sweep)


register_command("hwsim", "systolic-array simulator: SCALE-Sim reports, array/dataflow sweeps", _configure)
