r"""Sparse-on-dense vs sparse-PE accelerators at equal area: where is the crossover in sparsity?

Yoon, Kim and Ryu ("Sparse-on-Dense", arXiv:2604.26587, 2026) argue that, at equal area, a dense
systolic array fed by on-chip decompressors (weights kept compressed in DRAM and SRAM) beats a
sparse accelerator whose larger PEs skip zero MACs by index matching. This script sweeps the weight
sparsity of the layers of ResNet-18 and of a BERT-base encoder block (the weight GEMMs: Q, K, V,
output projection, FFN1, FFN2; the attention products have no weights) with the cost model of
``hwsim.systolic._sparse`` and reports, per layer and per network:

* throughput per area (dense-equivalent MACs per cycle per mm²) and energy efficiency (MACs per pJ)
  of three designs at the same area budget: plain dense (uncompressed weights), dense + decompressor
  (CSC weights, the paper's format) and sparse-PE (``k`` times the area of a dense PE, OS dataflow,
  K reduced by the density, index-matching overhead ``o``);
* the crossover sparsities: where the sparse-PE design overtakes dense + decompressor in
  throughput/area and in energy efficiency, for several area factors ``k``; and where compressed
  storage starts to pay off against the plain dense design;
* the storage size of each weight format against sparsity (metadata included).

All defaults of the cost model (PE area, energies, bandwidth, ``k``, ``o``) and which of them are
assumptions are documented in ``hwsim/systolic/_sparse.py`` and copied into the JSON.

Usage::

    python experiments/sparse_on_dense.py --quick      # seconds
    python experiments/sparse_on_dense.py              # the full sweep (under a minute)

Writes ``results.json`` and ``sparse_on_dense.png`` into ``--out`` (default
``experiments/out/sparse_on_dense``; ``--quick`` writes to ``.../quick``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax.numpy as jnp
import numpy as np

from hwsim import systolic
from hwsim.systolic._sparse import (
    CSC,
    CSR,
    NM,
    Bitmap,
    Dense,
    DenseDecompressDesign,
    EnergyTable,
    SparsePEDesign,
    compare_designs,
)

BERT_WEIGHT_LAYERS = ("Q_proj", "K_proj", "V_proj", "Out_proj", "FFN1", "FFN2")
METRICS = ("throughput_per_area", "energy_efficiency", "cycles", "energy", "pes")


def _network(name: str, quick: bool) -> systolic.Topology:
    topo = systolic.load_topology(name)
    keep = BERT_WEIGHT_LAYERS if name == "bert_base_encoder" else topo.names
    if quick:
        keep = ("Q_proj", "FFN1") if name == "bert_base_encoder" else ("Conv2_1a", "Conv4_1a", "FC")
    return systolic.Topology([topo[topo.names.index(n)] for n in keep], name=name)


def crossover(s: np.ndarray, advantage: np.ndarray) -> float | None:
    """The first sparsity where ``advantage`` (dense over sparse) falls through 1, interpolated in
    ``log(advantage)``; ``None`` when it never does in the sweep."""
    log_adv = np.log(advantage)
    below = np.flatnonzero(log_adv < 0)
    if len(below) == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(s[0])
    x0, x1, y0, y1 = s[i - 1], s[i], log_adv[i - 1], log_adv[i]
    return float(x0 + (x1 - x0) * y0 / (y0 - y1))


def _designs(factors, overhead, bandwidth):
    d = {"dense": DenseDecompressDesign(fmt=Dense(), dram_bits_per_cycle=bandwidth),
         "dense+decompressor": DenseDecompressDesign(fmt=CSC(), dram_bits_per_cycle=bandwidth)}
    for k in factors:
        d[f"sparse-PE k={k:g}"] = SparsePEDesign(area_factor=k, match_overhead=overhead,
                                                 dram_bits_per_cycle=bandwidth)
    return d


def _network_totals(reports, macs):
    """Network-level metrics: layers run one after another (cycles and energies add up)."""
    out = {}
    for name, r in reports.items():
        cycles = np.asarray(r.cycles).sum(axis=0)
        energy = np.asarray(r.energy).sum(axis=0)
        tpa_per_cycle = np.asarray(r.throughput_per_area / r.throughput)[0]  # 1 / area in mm²
        out[name] = {"throughput_per_area": macs / cycles * tpa_per_cycle,
                     "energy_efficiency": macs / energy, "cycles": cycles, "energy": energy}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few layers and a coarse sparsity grid")
    p.add_argument("--area-um2", type=float, default=4.0e6,
                   help="area budget for PEs and decompressors in µm² (default 4 mm²: ~9,400 dense PEs)")
    p.add_argument("--area-factors", type=str, default="2,4,8,12",
                   help="sparse-PE area / dense-PE area values to sweep (default 2,4,8,12)")
    p.add_argument("--match-overhead", type=float, default=0.1,
                   help="index-matching overhead o of the sparse PE (extra cycles per effectual MAC)")
    p.add_argument("--bandwidth", type=float, default=512.0, help="DRAM bits per cycle (default 512)")
    p.add_argument("--points", type=int, default=0, help="sparsity grid points (default 100, quick 34)")
    p.add_argument("--out", type=pathlib.Path, default=None)
    args = p.parse_args(argv)

    out_dir = args.out or pathlib.Path("experiments/out/sparse_on_dense") / ("quick" if args.quick else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    factors = [float(x) for x in args.area_factors.split(",")]
    points = args.points or (34 if args.quick else 100)
    s = np.round(np.linspace(0.0, 0.99, points), 6)
    designs = _designs(factors, args.match_overhead, args.bandwidth)
    energy = EnergyTable()
    t0 = time.perf_counter()

    config = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}
    results = {"config": {**config,
                          "sparsity": s.tolist(), "designs": list(designs)},
               "assumptions": {
                   "dense_pe_area_um2": "419 = 8-bit multiplier 282 + 32-bit adder 137, Horowitz ISSCC 2014 "
                                        "(45 nm); registers and wiring left out (assumption)",
                   "sparse_pe_area_factor": "swept (--area-factors); the model's default k = 4 is an "
                                            "assumption: the paper only says sparse PEs are much larger",
                   "decompressor": "area 2 % of the budget (paper); 1 array row per cycle, latency 4 "
                                   "cycles per fold, 0.05 pJ per element (assumptions)",
                   "energy_pj": {"mac": 0.3, "sram_read_8b": 2.5, "sram_write_8b": 2.5, "dram_8b": 243.75,
                                 "decompress_per_element": 0.05, "index_match_per_effectual_mac": 0.3,
                                 "source": "Horowitz ISSCC 2014 (45 nm) for MAC, SRAM (32 KB, 64 b) and "
                                           "DRAM (1.3-2.6 nJ / 64 b, midpoint); SRAM write, decompressor "
                                           "and index matching are assumptions"},
                   "dram": f"{args.bandwidth:g} bits/cycle; every word fetched once; activations counted "
                           "as the lowered GEMM's M*K words (overcounts convolutions' input reads)",
                   "dense_arrays": "compute every MAC incl. zeros (no zero gating); weight stationary",
                   "sparse_pe": "output stationary, T_eff = ceil((1-s) K (1+o)); same CSC weights",
               },
               "networks": {}}

    for net in ("resnet18", "bert_base_encoder"):
        topo = _network(net, args.quick)
        reports = compare_designs(topo, jnp.asarray(s), args.area_um2, designs=designs, energy=energy)
        macs = float(np.asarray(topo.macs, np.float64).sum())
        entry = {"layers": {}, "network": {}}
        for i, lname in enumerate(topo.names):
            layer = {"mnk": [int(topo.m[i]), int(topo.n[i]), int(topo.k[i])], "curves": {}, "crossover": {}}
            for dname, r in reports.items():
                layer["curves"][dname] = {m: np.asarray(getattr(r, m))[i].tolist() for m in METRICS[:4]}
                layer["curves"][dname]["pes"] = float(np.asarray(r.pes).ravel()[0])
            entry["layers"][lname] = layer
        totals = _network_totals(reports, macs)
        entry["network"]["curves"] = {d: {k: v.tolist() for k, v in t.items()} for d, t in totals.items()}
        cross = {}
        dd = totals["dense+decompressor"]
        for k in factors:
            sp = totals[f"sparse-PE k={k:g}"]
            cross[f"k={k:g}"] = {
                "throughput_per_area": crossover(s, dd["throughput_per_area"] / sp["throughput_per_area"]),
                "energy_efficiency": crossover(s, dd["energy_efficiency"] / sp["energy_efficiency"]),
            }
            for lname in topo.names:
                i = topo.names.index(lname)
                lr = entry["layers"][lname]["curves"]
                a = np.asarray(lr["dense+decompressor"]["throughput_per_area"])
                b = np.asarray(lr[f"sparse-PE k={k:g}"]["throughput_per_area"])
                entry["layers"][lname]["crossover"][f"k={k:g}"] = crossover(s, a / b)
        plain = totals["dense"]
        cross["compression_pays_energy"] = _first_above(
            s, dd["energy_efficiency"] / plain["energy_efficiency"])
        cross["compression_pays_throughput"] = _first_above(
            s, dd["throughput_per_area"] / plain["throughput_per_area"])
        entry["network"]["crossover"] = cross
        results["networks"][net] = entry

    results["storage_bits_relative_to_dense"] = _storage_table(s)
    results["wall_s"] = round(time.perf_counter() - t0, 2)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    _figure(results, s, factors, out_dir / "sparse_on_dense.png")
    _summary(results, factors)
    return results


def _first_above(s, ratio):
    """The first sparsity where ``ratio`` (compressed over plain) rises above 1, interpolated."""
    return crossover(s, 1.0 / np.asarray(ratio))


def _storage_table(s):
    k, n = 768, 768  # a BERT projection
    dense = Dense().storage_bits(k, n, 0, 8)
    table = {}
    for fmt in (Bitmap(), CSR(), CSC()):
        table[fmt.name] = [float(fmt.storage_bits(k, n, (1 - x) * k * n, 8)) / dense for x in s]
    for nm in (NM(2, 4), NM(1, 4), NM(1, 8)):
        table[f"{nm.n}:{nm.m}"] = {"sparsity": 1 - nm.n / nm.m,
                                   "relative": float(nm.storage_bits(k, n, 0, 8)) / dense}
    return {"shape": [k, n], "formats": table}


def _summary(results, factors):
    for net, entry in results["networks"].items():
        c = entry["network"]["crossover"]
        parts = [f"k={k:g}: s*={_fmt(c[f'k={k:g}']['throughput_per_area'])} (thr/area), "
                 f"{_fmt(c[f'k={k:g}']['energy_efficiency'])} (energy)" for k in factors]
        print(f"{net}: sparse-PE overtakes dense+decompressor at " + "; ".join(parts))
        print(f"{net}: CSC storage beats plain dense above s={_fmt(c['compression_pays_energy'])} (energy), "
              f"s={_fmt(c['compression_pays_throughput'])} (throughput/area)")


def _fmt(x):
    return "never" if x is None else f"{x:.3f}"


def _figure(results, s, factors, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(results["networks"])
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(factors)))
    for row, net in enumerate(nets):
        entry = results["networks"][net]["network"]
        for col, metric, label in [(0, "throughput_per_area", "MACs / cycle / mm²"),
                                   (1, "energy_efficiency", "MACs / pJ")]:
            ax = axes[row, col]
            ax.plot(s, entry["curves"]["dense"][metric], "k--", label="dense (uncompressed)")
            ax.plot(s, entry["curves"]["dense+decompressor"][metric], "k-", lw=2,
                    label="dense + decompressor")
            for c, k in zip(colours, factors):
                ax.plot(s, entry["curves"][f"sparse-PE k={k:g}"][metric], color=c,
                        label=f"sparse PE, k={k:g}")
                x = entry["crossover"][f"k={k:g}"][metric]
                if x is not None:
                    ax.axvline(x, color=c, ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("weight sparsity")
            ax.set_ylabel(label)
            ax.set_title(f"{net}: {metric.replace('_', ' ')} (dotted: crossover)")
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    ax = axes[0, 2]
    for net in nets:
        c = results["networks"][net]["network"]["crossover"]
        ys = [c[f"k={k:g}"]["throughput_per_area"] for k in factors]
        ax.plot(factors, [np.nan if y is None else y for y in ys], "o-", label=f"{net} (throughput/area)")
        ys = [c[f"k={k:g}"]["energy_efficiency"] for k in factors]
        ax.plot(factors, [np.nan if y is None else y for y in ys], "s--", label=f"{net} (energy)")
    ks = np.linspace(min(factors), max(factors), 50)
    ax.plot(ks, 1 - 1 / ks, "k:", label="1 - 1/k (no overheads)")
    ax.set_xlabel("sparse-PE area / dense-PE area (k)")
    ax.set_ylabel("crossover sparsity s*")
    ax.set_title("dense + decompressor wins below s*, sparse PE above")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    st = results["storage_bits_relative_to_dense"]
    for name, vals in st["formats"].items():
        if isinstance(vals, dict):
            ax.plot([vals["sparsity"]], [vals["relative"]], "D", label=f"N:M {name}")
        else:
            ax.plot(s, vals, label=name)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set_xlabel("weight sparsity")
    ax.set_ylabel("bits / dense bits")
    ax.set_title(f"storage incl. metadata, {st['shape'][0]}x{st['shape'][1]} int8")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
