"""``sciml hwsim systolic | sweep``: the systolic-array model from the command line.

* ``systolic -c CONFIG.cfg -t TOPOLOGY.csv`` writes SCALE-Sim's three reports (``COMPUTE_REPORT.csv``,
  ``BANDWIDTH_REPORT.csv``, ``DETAILED_ACCESS_REPORT.csv``, same column names, one row per layer) and
  prints a summary table.
* ``sweep -t TOPOLOGY.csv --arrays 8x8,32x32,4x256 --dataflows os,ws,is`` runs the grid of array shapes
  x dataflows and writes one CSV row per (array, dataflow) with the network's totals.
* ``photonic --grid 8x8 --ptc 4 --topology googlenet`` prints the per-layer utilisation, cycles, memory
  accesses and throughput of a grid of photonic tensor cores (``--json`` for JSON);
  ``photonic sweep --pes 64,256,1024 --topology googlenet -o out.csv`` runs every grid factorisation
  of each PE budget and writes one CSV row per (topology, grid). Both take ``--dataflow ws|is|best``
  (weight stationary, input stationary, or the faster of the two per layer; default ws).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

from sciml.cli import DemoOptions, DemoRow, register_command, register_demo

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


def _table(cells: list[tuple[str, ...]]) -> list[str]:
    """Rows of a plain-text table: the first row is the header (a rule under it), the first column
    left-aligned, the others right-aligned."""
    widths = [max(len(c[j]) for c in cells) for j in range(len(cells[0]))]
    lines = ["  ".join(c[j].rjust(widths[j]) if j else c[j].ljust(widths[j]) for j in range(len(widths)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _cmd_systolic(args) -> int:
    from hwsim import systolic

    try:
        cfg = systolic.read_config(args.config)
        topo = _read(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"sciml hwsim systolic: {e}") from None
    t0 = time.perf_counter()
    try:  # a USER-mode config without `Bandwidth`, counts past int32
        result = _run(topo, cfg.array, cfg.dataflow, cfg.memory)
    except ValueError as e:
        raise _model_error("systolic", e) from None
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
    lines = _table(cells)
    print(f"{cfg.run_name}: {cfg.array_rows}x{cfg.array_cols} {cfg.dataflow_name}, "
          f"{cfg.memory.mode} bandwidth, {len(topo)} layers")
    print("\n".join(lines))
    print(f"\ntotal cycles {sum(c[2] for c in compute)}, reports in {out} ({seconds:.2f} s)")
    return 0


def _model_error(verb: str, e: ValueError) -> SystemExit:
    # from the shell, JAX's 64-bit mode is switched on by its environment variable
    hint = " (from the shell: run with JAX_ENABLE_X64=1)" if "overflow int32" in str(e) else ""
    return SystemExit(f"sciml hwsim {verb}: {e}{hint}")


def _dataflows(text: str) -> list[str]:
    from hwsim.systolic import DATAFLOWS

    out = [d.strip().lower() for d in text.split(",")]
    if not all(d in DATAFLOWS for d in out):
        raise argparse.ArgumentTypeError(f"expected dataflows among {', '.join(sorted(DATAFLOWS))} like "
                                         f"os,ws,is, got {text!r}")
    return out


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
        try:
            r = _run(topo, arrays, df, memory)  # layers x arrays in one call
        except ValueError as e:
            raise _model_error("sweep", e) from None
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


def _grid_shape(text: str) -> tuple[int, int]:
    shapes = _arrays(text)
    if len(shapes) != 1:
        raise argparse.ArgumentTypeError(f"expected one grid shape like 8x8, got {text!r}")
    return shapes[0]


def _budgets(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected PE budgets like 64,256,1024, got {text!r}")
    return out


def _ptc(args):
    from hwsim import photonic

    return photonic.PTC(args.ptc, core=args.core, modulation_ghz=args.modulation_ghz,
                        reprogram_ns=args.reprogram_ns)


def _cmd_photonic(args) -> int:
    import json

    from hwsim import photonic

    rg, cg = args.grid
    try:
        topo = photonic.as_topology(args.topology or "googlenet")
        r = photonic.simulate_grid(topo, photonic.Grid(rg, cg), _ptc(args), dataflow=args.dataflow,
                                   sram_bandwidth=args.sram_bandwidth)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SystemExit(f"sciml hwsim photonic: {e}") from None
    tot = {key: float(v) for key, v in r.totals().items()}
    layers = [dict(layer=name, dataflow="is" if bool(r.input_stationary[i]) else "ws",
                   folds=int(r.folds[i]), cycles=int(r.cycles[i]),
                   utilization=float(r.utilization[i]), memory_accesses=int(r.memory_accesses[i]),
                   throughput_macs_per_s=float(r.throughput[i]))
              for i, name in enumerate(topo.names)]
    summary = dict(topology=topo.name, grid=f"{rg}x{cg}", k=args.ptc, pes=rg * cg * args.ptc ** 2,
                   dataflow=r.dataflow, sram_bandwidth=r.sram_bandwidth,
                   cycles=tot["cycles"], stall_cycles=tot["stall_cycles"], utilization=tot["utilization"],
                   memory_accesses=tot["memory_accesses"], throughput_macs_per_s=tot["throughput"],
                   energy_j=tot["energy_j"], laser_dbm=float(r.laser_dbm.ravel()[0]),
                   feasible=bool(r.feasible.ravel()[0]), layers=layers)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    head = ("layer", "dataflow", "folds", "cycles", "util %", "mem accesses", "MAC/s")
    cells = [head] + [(x["layer"], x["dataflow"], str(x["folds"]), str(x["cycles"]),
                       f"{100 * x['utilization']:.2f}", str(x["memory_accesses"]),
                       f"{x['throughput_macs_per_s']:.3g}") for x in layers]
    lines = _table(cells)
    print(f"{topo.name} on a {rg}x{cg} grid of {args.ptc}x{args.ptc} PTCs ({summary['pes']} PEs), "
          f"{args.core}, {args.modulation_ghz} GHz, reprogram {args.reprogram_ns} ns, "
          f"dataflow {r.dataflow}, SRAM "
          + (f"{r.sram_bandwidth} words/cycle" if r.sram_bandwidth else "unlimited"))
    print("\n".join(lines))
    print(f"\ntotal: utilization {100 * tot['utilization']:.2f} %, cycles {tot['cycles']:.4g} "
          f"({tot['stall_cycles']:.4g} SRAM stalls), "
          f"memory accesses {tot['memory_accesses']:.4g}, throughput {tot['throughput']:.4g} MAC/s, "
          f"energy {tot['energy_j']:.4g} J, laser {summary['laser_dbm']:.1f} dBm "
          f"({'feasible' if summary['feasible'] else 'INFEASIBLE'})")
    return 0


PHOTONIC_SWEEP_HEADER = ("topology,pes,grid_rows,grid_cols,k,utilization,cycles,memory_accesses,"
                         "throughput_macs_per_s,energy_j,gemv_utilization,conv_utilization,dataflow,"
                         "is_layers,sram_bandwidth,stall_cycles")


def _cmd_photonic_sweep(args) -> int:
    import numpy as np

    from hwsim import photonic

    # -t before `sweep` gives one name (the parent's option), after it a list (repeatable)
    names = [args.topology] if isinstance(args.topology, str) else args.topology
    names = names or ["googlenet", "resnet18", "mobilenet", "alphagozero"]
    lines = [PHOTONIC_SWEEP_HEADER]
    try:
        ptc = _ptc(args)
        for name in names:
            s = photonic.sweep(name, pes=args.pes, ptc=ptc, dataflow=args.dataflow,
                               sram_bandwidth=args.sram_bandwidth)
            g = np.asarray(s.is_gemv)
            macs = np.asarray(s.layers.macs, np.float64)
            cyc = np.asarray(s.layers.cycles, np.float64)
            pes = np.asarray(s.pes, np.float64)

            def part(mask, macs=macs, cyc=cyc, pes=pes):
                if not mask.any():
                    return np.full(len(pes), np.nan)
                return macs[mask].sum(0) / (pes * cyc[mask].sum(0))

            ug, uc = part(g), part(~g)
            n_is = np.asarray(s.layers.input_stationary).sum(0)
            for j in range(len(pes)):
                lines.append(f"{s.topology},{int(s.pes[j])},{int(s.grid_rows[j])},{int(s.grid_cols[j])},"
                             f"{ptc.k},{float(s.utilization[j]):.6g},{float(s.cycles[j]):.6g},"
                             f"{float(s.memory_accesses[j]):.6g},{float(s.throughput[j]):.6g},"
                             f"{float(s.energy_j[j]):.6g},{ug[j]:.6g},{uc[j]:.6g},{s.dataflow},"
                             f"{int(n_is[j])},{s.sram_bandwidth or 'none'},{float(s.stall_cycles[j]):.6g}")
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SystemExit(f"sciml hwsim photonic sweep: {e}") from None
    print("\n".join(lines))
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        print(f"\nwrote {len(lines) - 1} rows to {out}")
    return 0


def _sram_bandwidth(text: str) -> int | None:
    if text.strip().lower() in ("none", "inf", ""):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int (words per cycle) or 'none', "
                                         f"got {text!r}")
    return value


def _ptc_options(p: argparse.ArgumentParser, *, inherit: bool = False) -> None:
    """The core/dataflow options. With ``inherit`` (the ``sweep`` subcommand) an option that is not
    given keeps the value the parent ``photonic`` command parsed, instead of resetting it to the
    default: ``photonic --dataflow best sweep`` and ``photonic sweep --dataflow best`` agree."""
    d = (lambda value: argparse.SUPPRESS) if inherit else (lambda value: value)  # noqa: E731
    p.add_argument("--ptc", type=int, default=d(4), help="core size k (k x k weights)")
    p.add_argument("--core", choices=("mzi", "microring"), default=d("mzi"), help="core kind")
    p.add_argument("--modulation-ghz", type=float, default=d(10.0), help="modulation rate, GHz")
    p.add_argument("--reprogram-ns", type=float, default=d(1000.0),
                   help="time to reprogram the meshes, ns (1000: thermal, 1: electro-optic)")
    p.add_argument("--dataflow", choices=("ws", "is", "best"), default=d("ws"),
                   help="ws: weights programmed into the meshes, inputs streamed; is: input tiles "
                        "programmed, weight columns streamed (wins on M = 1 fully connected layers); "
                        "best: the faster of the two per layer (default ws)")
    p.add_argument("--sram-bandwidth", type=_sram_bandwidth, default=d(None), metavar="WORDS",
                   help="SRAM words per modulation cycle, reads and writes together; the grid stalls "
                        "when it needs more (default none: the SRAM keeps up)")


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
    p.add_argument("--dataflows", type=_dataflows, default=["os", "ws", "is"],
                   help="comma-separated dataflows among os, ws, is")
    p.add_argument("--sparsity", type=lambda s: s.split(","), default=["dense"],
                   help="sparsity levels (only 'dense' for now)")
    p.add_argument("-o", "--out", default="sweep.csv", help="output CSV")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("photonic", help="grid of photonic tensor cores: utilization, cycles, memory")
    p.add_argument("--grid", type=_grid_shape, default=(8, 8), help="grid of cores RgxCg, e.g. 8x8")
    p.add_argument("-t", "--topology", default=None,
                   help="shipped topology name or a SCALE-Sim CSV (default googlenet)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _ptc_options(p)
    p.set_defaults(func=_cmd_photonic)
    psub = p.add_subparsers(dest="photonic_verb", metavar="sweep", required=False)
    q = psub.add_parser("sweep", help="every grid factorisation of each PE budget, one CSV")
    q.add_argument("--pes", type=_budgets, default=[64, 256, 1024], help="PE budgets, e.g. 64,256,1024")
    q.add_argument("-t", "--topology", action="append", default=argparse.SUPPRESS,
                   help="topology name or CSV (repeat for several; default: the four networks)")
    q.add_argument("-o", "--out", default=None, help="output CSV")
    _ptc_options(q, inherit=True)
    q.set_defaults(func=_cmd_photonic_sweep)


register_command("hwsim", "systolic-array simulator: SCALE-Sim reports, array/dataflow sweeps", _configure)


def hwsim_demo(opts: DemoOptions) -> list[DemoRow]:
    """ResNet-18 on a 32x32 systolic array (SCALE-Sim's cycle count) and the photonic grid study."""
    import jax.numpy as jnp

    from hwsim import photonic, systolic

    t0 = time.perf_counter()
    net = systolic.load_topology("resnet18")
    res = systolic.simulate(net, systolic.SystolicArray(32, 32), dataflow="os", compat=True)
    cycles = float(jnp.sum(res.cycles))
    rows = [DemoRow("hwsim", "systolic: ResNet-18, 32x32 array, OS", "total cycles", cycles,
                    time.perf_counter() - t0)]
    t0 = time.perf_counter()
    s = photonic.sweep("googlenet", pes=(1024,), ptc=photonic.PTC(4, reprogram_ns=photonic.ELECTRO_OPTIC_NS))
    grids = [f"{int(r)}x{int(c)}" for r, c in zip(s.grid_rows, s.grid_cols)]
    util = dict(zip(grids, (float(u) for u in s.utilization)))
    rows.append(DemoRow("hwsim", "photonic: GoogLeNet, 64 4x4 PTCs, 8x8 vs 1x64 grid", "utilization ratio",
                        util["8x8"] / util["1x64"], time.perf_counter() - t0))
    return rows


register_demo("hwsim", hwsim_demo)
