r"""Photonic tensor cores (PTCs) tiled in an ``Rg x Cg`` grid: folds, cycles, utilisation, memory
traffic, throughput, energy and the laser link budget of a network.

**Mapping.** A grid of ``Rg x Cg`` PTCs of ``k x k`` elements acts as one ``R x C = (Rg k) x (Cg k)``
array whose tuned elements (phase shifters or rings) hold a *stationary* matrix while the input
modulators stream the other operand as light, one vector per modulation cycle. Layers are lowered to
GEMMs ``ofmap[M, N] = ifmap[M, K] @ filter[K, N]`` by :mod:`hwsim.systolic` (SCALE-Sim's lowering,
:func:`hwsim.systolic.conv`), and the mapping, folds and SRAM counts of its dataflow classes are
reused as they are (SCALE-Sim's ``S_r, S_c, T``; ``F = ceil(S_r / R) ceil(S_c / C)`` folds):

* ``dataflow="ws"`` (weight stationary, the default; :class:`hwsim.systolic.WeightStationary`): each
  fold programs a ``K x N`` tile of the filter into the meshes and streams the ``M`` ifmap rows
  (``S_r = K``, ``S_c = N``, ``T = M``). SRAM: ``ceil(N / C) M K`` ifmap reads (re-read once per
  column fold), ``K N`` filter reads (each weight programmed once), ``ceil(K / R) M N`` ofmap writes
  (outputs and partial sums, once per row fold).
* ``dataflow="is"`` (input stationary; :class:`hwsim.systolic.InputStationary`): the same optics
  compute the transposed product ``Y^T = W^T X^T``: each fold programs a ``K x M`` tile of the
  *ifmap* into the meshes and the ``N`` filter columns are modulated onto the light, so each cycle a
  detector column reads out one ofmap column ``X w_n`` (``S_r = K``, ``S_c = M``, ``T = N``). SRAM:
  ``K M`` ifmap reads (each activation programmed once), ``ceil(M / C) K N`` filter reads (re-read
  once per column fold), ``ceil(K / R) M N`` ofmap writes. It pays off where ``M`` is small and ``N``
  large (fully connected layers on one input vector, ``M = 1``): one fold then streams ``N`` vectors
  instead of one, so the reprogramming is amortised. Assumptions: activations are programmed with the
  same tuners and in the same time as weights; a coherent (SVD) core would also have to decompose each
  activation tile into phases online (a microring bank sets one ring per value directly); that
  electronic cost is not modelled.
* ``dataflow="best"``: per layer, whichever of ``"ws"`` and ``"is"`` takes fewer cycles (ties go to
  ``"ws"``); :attr:`GridResult.input_stationary` says which one ran. It minimises cycles, not SRAM
  traffic or energy.

Output stationary is not offered: it would need detectors that integrate over the ``K`` reduction
steps (time-integrating receivers), which this model does not include.

**Time.** Unlike a systolic array there is no operand skew: light crosses a core in picoseconds, so a
fold streams its ``T`` vectors (``M`` for ``"ws"``, ``N`` for ``"is"``) in ``T`` modulation cycles;
before that every core is reprogrammed with the fold's stationary tile (all cores in parallel), which
takes ``ceil(t_reprog f_mod)`` cycles:

.. math::
    \text{cycles} = F\,(T + \lceil t_\text{reprog} f_\text{mod} \rceil), \qquad
    \text{utilisation} = \frac{M N K}{R C \cdot \text{cycles}}, \qquad
    \text{throughput} = \frac{M N K\, f_\text{mod}}{\text{cycles}}.

**SRAM bandwidth** (``sram_bandwidth``, optional). By default the SRAM buffers keep up with the grid
(SCALE-Sim's assumption for its SRAMs). A photonic grid modulates at GHz rates, so the buffers that
feed its DACs and take its ADC outputs may not: with a bandwidth of ``B`` words per modulation cycle
(reads and writes together), loading the stationary operand takes ``max(F t_reprog f_mod, ceil(S /
B))`` cycles and streaming takes ``max(F T, ceil(D / B))``, where ``S`` is the stationary operand's
SRAM reads (filter for ``"ws"``, ifmap for ``"is"``) and ``D`` the streamed operand's reads plus the
ofmap writes. Per cycle a fold moves about ``R + C`` words (``R`` inputs in, ``C`` partial sums
out), so for a fixed PE budget ``R C`` the grid whose ``R + C`` is smallest, the square one, stalls
least: this is the bandwidth half of the topology argument, and it comes out of the counts, not out
of a rule. The stall is ``GridResult.stall_cycles``.

**Link budget.** Every one of the ``Rg Cg k`` detector channels must receive the detector
sensitivity ``P_det`` through the optical path: laser splitting to all channels is paid in power
(``Rg Cg k`` times), the path adds ``depth * IL + fixed`` dB (``depth`` = MZIs a signal crosses in
a coherent SVD core, ``2k + 1``, or microrings passed in an incoherent bank, ``k``), so

.. math::
    P_\text{laser} = P_\text{det} + 10 \log_{10}(R_g C_g k) + \text{depth}\cdot\text{IL}
    + L_\text{fixed} \quad [\text{dBm}],

and the design is feasible when ``P_laser <= P_max``.

**Energy** (no power gating of idle cores; an assumption): per compute cycle every core converts
``k`` inputs (DAC) and ``k`` outputs (ADC); per fold every tuned element is rewritten once; the
laser's electrical power (optical / wall-plug efficiency) and the tuners' static hold power run for
the whole layer.

Reference: M. Jahannia, A. Amirany, N. Dalir, "Towards topology-aware very large-scale photonic AI
accelerators", arXiv:2604.26966 (2026); the fold model is SCALE-Sim's (Samajdar et al., ISPASS 2020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

import sciml.backend as B
from sciml._checks import check_real_scalar

from ..systolic._dataflow import AbstractDataflow, InputStationary, WeightStationary, cdiv
from ..systolic._workload import (
    TOPOLOGIES,
    Layer,
    Topology,
    _dims,
    _is_concrete,
    _positive_int,
    check_int32_range,
    int_dtype,
    load_topology,
    read_topology,
)

__all__ = ["CORES", "DATAFLOWS", "ELECTRO_OPTIC_NS", "THERMO_OPTIC_NS", "PTC", "Grid", "GridResult",
           "SweepResult", "factor_grids", "simulate_grid", "sweep", "as_topology"]

#: Weight reprogramming time of thermo-optic phase shifters / microring heaters, in ns: heaters settle
#: in microseconds (order of magnitude; Harris et al., "Efficient, compact and low loss thermo-optic
#: phase shifter in silicon", Opt. Express 22(9):10487 (2014), report microsecond-scale switching).
THERMO_OPTIC_NS = 1000.0
#: Reprogramming time of electro-optic (carrier-depletion / Pockels) tuning, in ns: nanoseconds
#: (order of magnitude; an assumption, limited by the weight DACs rather than the modulator).
ELECTRO_OPTIC_NS = 1.0

#: Core kinds: the elements a signal crosses (optical depth) and the tuned elements of a ``k x k``
#: core. ``"mzi"``: coherent SVD core ``U Sigma V^H`` (two Clements meshes of ``k(k-1)/2`` MZIs with
#: two phase shifters each, plus ``k`` attenuator MZIs; depth ``k`` per mesh + 1, Clements et al.,
#: Optica 3:1460 (2016); Shen et al., Nat. Photon. 11:441 (2017)). ``"microring"``: incoherent
#: broadcast-and-weight bank, one ring per weight, a signal passes the ``k`` rings of its bus
#: (Tait et al., "Neuromorphic photonic networks using silicon photonic weight banks", Sci. Rep.
#: 7:7430 (2017)).
CORES: dict[str, tuple[Any, Any]] = {
    "mzi": (lambda k: 2 * k + 1, lambda k: 2 * k * (k - 1) + k),
    "microring": (lambda k: k, lambda k: k * k),
}

#: The grid's dataflow choices (module docstring) and the :mod:`hwsim.systolic` dataflows each one tries:
#: per layer, the one with the fewest cycles runs, the first on ties.
DATAFLOWS: dict[str, tuple[AbstractDataflow, ...]] = {
    "ws": (WeightStationary(),),
    "is": (InputStationary(),),
    "best": (WeightStationary(), InputStationary()),
}


def _dataflow(dataflow: Any) -> str:
    """The name in :data:`DATAFLOWS` of a grid dataflow given by name or as a systolic instance."""
    if isinstance(dataflow, AbstractDataflow):
        dataflow = dataflow.short_name
    if not isinstance(dataflow, str):
        raise TypeError(f"`dataflow` must be one of {list(DATAFLOWS)} (a str), got "
                        f"{type(dataflow).__name__}")
    key = dataflow.strip().lower()
    if key not in DATAFLOWS:
        raise ValueError(f"`dataflow` must be one of {list(DATAFLOWS)} (weight stationary, input "
                         f"stationary, or the faster of the two per layer), got {dataflow!r}")
    return key


def _positive(value: Any, name: str, dtype: Any, *, allow_zero: bool = False) -> Array:
    arr = check_real_scalar(value, name, dtype)
    if _is_concrete(arr):
        ok = bool(jnp.isfinite(arr)) and (float(arr) >= 0 if allow_zero else float(arr) > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"`{name}` must be a finite number {bound}, got {value!r}")
    return arr


def _finite(value: Any, name: str, dtype: Any) -> Array:
    arr = check_real_scalar(value, name, dtype)
    if _is_concrete(arr) and not bool(jnp.isfinite(arr)):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    return arr


class PTC(eqx.Module):
    r"""One ``k x k`` photonic tensor core: its size, kind, speeds, link budget and energy costs.

    ``k`` and ``core`` are static (they fix shapes and counts); every rate, time, loss and energy is a
    0-d float array leaf, so new values do not recompile. Defaults are order-of-magnitude values of
    silicon photonics; each one below says where it comes from or that it is an assumption.

    Attributes:
        k: the core's size (``k x k`` weights; 4 in Jahannia et al. 2026).
        core: ``"mzi"`` (coherent MZI mesh, SVD form) or ``"microring"`` (incoherent ring bank); see
            :data:`CORES`.
        modulation_ghz: input modulation (and detection) rate ``f_mod`` in GHz. Default 10 GHz, an
            assumption of the order of the rates of integrated photonic tensor cores (Feldmann et
            al., "Parallel convolutional processing using an integrated photonic tensor core",
            Nature 589:52 (2021), ran at GHz rates).
        reprogram_ns: time to rewrite a core's weights, in ns. Default :data:`THERMO_OPTIC_NS`
            (1 us, thermal tuning); :data:`ELECTRO_OPTIC_NS` (1 ns) for electro-optic tuning.
        loss_per_element_db: insertion loss of one MZI or ring passed, dB. Default 0.2 dB (an
            assumption; MZI losses of 0.1-0.5 dB are typical of silicon meshes, Bogaerts et al.,
            "Programmable photonic circuits", Nature 586:207 (2020)).
        fixed_loss_db: path loss outside the core (fibre-chip coupling, modulator, waveguides), dB.
            Default 6 dB (assumption: ~2 dB per grating/edge coupler plus ~4 dB modulator loss).
        detector_dbm: detector sensitivity, optical power per channel in dBm. Default -20 dBm
            (assumption; typical of a photodiode + TIA at ~10 GHz for ~8-bit signals).
        max_laser_dbm: the largest total optical laser power available, dBm. Default 20 dBm
            (100 mW; assumption, the order of on-chip-coupled DFB/comb sources).
        laser_efficiency: the laser's wall-plug efficiency (optical / electrical). Default 0.2
            (assumption; 10-30 % is typical of semiconductor lasers).
        dac_pj: energy of one input DAC conversion (and modulator drive), pJ. Default 1 pJ.
        adc_pj: energy of one output ADC conversion, pJ. Default 1 pJ (assumption for both: ~8 bit at
            ~10 GS/s, from the energy-per-conversion trend of Murmann's ADC survey, 2024).
        tune_pj: energy to rewrite one tuned element (phase shifter or ring), pJ. Default 10 pJ
            (assumption: ~10 mW of heater power for ~1 us).
        hold_mw: static power to hold one tuned element at its setting, mW. Default 1 mW (assumption;
            thermal phase shifters need ~1-20 mW per pi, Harris et al. 2014; ~0 for electro-optic).

    Raises:
        ValueError: ``k`` < 1, an unknown ``core``, a rate/time/efficiency that is not > 0, a loss or
            energy that is negative (the message names the argument).
        TypeError: a value that is not a real number.

    Example:
        >>> from hwsim import photonic
        >>> ptc = photonic.PTC(4, core="microring", reprogram_ns=photonic.ELECTRO_OPTIC_NS)
        >>> ptc.depth, ptc.tuned_elements, int(ptc.reprogram_cycles)
        (4, 16, 10)
    """

    k: int = eqx.field(static=True)
    core: str = eqx.field(static=True)
    modulation_ghz: Float[Array, ""]
    reprogram_ns: Float[Array, ""]
    loss_per_element_db: Float[Array, ""]
    fixed_loss_db: Float[Array, ""]
    detector_dbm: Float[Array, ""]
    max_laser_dbm: Float[Array, ""]
    laser_efficiency: Float[Array, ""]
    dac_pj: Float[Array, ""]
    adc_pj: Float[Array, ""]
    tune_pj: Float[Array, ""]
    hold_mw: Float[Array, ""]

    def __init__(self, k: int = 4, *, core: str = "mzi", modulation_ghz: Any = 10.0,
                 reprogram_ns: Any = THERMO_OPTIC_NS, loss_per_element_db: Any = 0.2,
                 fixed_loss_db: Any = 6.0, detector_dbm: Any = -20.0, max_laser_dbm: Any = 20.0,
                 laser_efficiency: Any = 0.2, dac_pj: Any = 1.0, adc_pj: Any = 1.0,
                 tune_pj: Any = 10.0, hold_mw: Any = 1.0, dtype: Any = None):
        self.k = _positive_int(k, "k")
        if core not in CORES:
            raise ValueError(f"`core` must be one of {sorted(CORES)}, got {core!r}")
        self.core = core
        dt = B.float_dtype(dtype)
        self.modulation_ghz = _positive(modulation_ghz, "modulation_ghz", dt)
        self.reprogram_ns = _positive(reprogram_ns, "reprogram_ns", dt, allow_zero=True)
        self.loss_per_element_db = _positive(loss_per_element_db, "loss_per_element_db", dt,
                                             allow_zero=True)
        self.fixed_loss_db = _positive(fixed_loss_db, "fixed_loss_db", dt, allow_zero=True)
        self.detector_dbm = _finite(detector_dbm, "detector_dbm", dt)
        self.max_laser_dbm = _finite(max_laser_dbm, "max_laser_dbm", dt)
        self.laser_efficiency = _positive(laser_efficiency, "laser_efficiency", dt)
        if _is_concrete(self.laser_efficiency) and float(self.laser_efficiency) > 1:
            raise ValueError(f"`laser_efficiency` must be in (0, 1], got {laser_efficiency!r}")
        self.dac_pj = _positive(dac_pj, "dac_pj", dt, allow_zero=True)
        self.adc_pj = _positive(adc_pj, "adc_pj", dt, allow_zero=True)
        self.tune_pj = _positive(tune_pj, "tune_pj", dt, allow_zero=True)
        self.hold_mw = _positive(hold_mw, "hold_mw", dt, allow_zero=True)

    @property
    def depth(self) -> int:
        """Optical elements a signal crosses in the core (MZIs or rings)."""
        return CORES[self.core][0](self.k)

    @property
    def tuned_elements(self) -> int:
        """Phase shifters or rings rewritten when the core is reprogrammed."""
        return CORES[self.core][1](self.k)

    @property
    def reprogram_cycles(self) -> Int[Array, ""]:
        """``ceil(reprogram_ns * modulation_ghz)``: modulation cycles lost per reprogramming."""
        return jnp.ceil(self.reprogram_ns * self.modulation_ghz).astype(int_dtype())


class Grid(eqx.Module):
    """``rows x cols`` PTCs (``Rg x Cg``); integer array leaves, so a batch of grids is one call.

    Attributes:
        rows: grid rows ``Rg`` (an int or an integer array of them).
        cols: grid columns ``Cg`` (same shape as ``rows`` or broadcastable).

    Raises:
        ValueError: a size that is not a positive int (named).

    Example:
        >>> from hwsim import photonic
        >>> g = photonic.Grid(jnp.array([1, 4, 16]), jnp.array([16, 4, 1]))
        >>> (g.rows * g.cols).tolist()
        [16, 16, 16]
    """

    rows: Int[Array, "..."]
    cols: Int[Array, "..."]

    def __init__(self, rows, cols):
        self.rows = _dims(rows, "rows")
        self.cols = _dims(cols, "cols")


class GridResult(eqx.Module):
    """What :func:`simulate_grid` returns; arrays shaped ``layers + grid shape`` (a :class:`Layer`
    gives just the grid shape).

    Attributes:
        row_folds, col_folds, folds: ``ceil(S_r / R)``, ``ceil(S_c / C)`` and their product
            (``S_r = K`` in both dataflows; ``S_c = N`` weight stationary, ``M`` input stationary).
        compute_cycles: ``F T`` (cycles spent modulating the streamed operand; ``T = M`` weight
            stationary, ``N`` input stationary).
        reprogram_cycles: ``F ceil(t_reprog f_mod)``.
        stall_cycles: cycles lost waiting for the SRAM (0 when ``sram_bandwidth`` is None; module
            docstring).
        cycles: the sum of the three.
        macs: useful multiply-accumulates ``M N K``.
        utilization: ``MACs / (R C cycles)``.
        mapping_efficiency: ``S_r S_c / (F R C)``, the fraction of tuned slots that hold a value.
        ifmap_reads, filter_reads, ofmap_writes: SRAM traffic of the dataflow that ran (module
            docstring).
        memory_accesses: their sum.
        seconds: ``cycles / f_mod``.
        throughput: ``MACs / seconds`` (MAC/s).
        energy_j: energy in joules (DAC + ADC + reprogramming + laser + tuner hold).
        laser_dbm: optical laser power the link budget needs (grid shape only).
        feasible: ``laser_dbm <= max_laser_dbm``.
        pes: ``R C`` (the grid's PEs).
        input_stationary: whether the layer ran input stationary (always for ``"is"``, never for
            ``"ws"``, the faster one per layer for ``"best"``).
        names: the layers' names.
        dataflow: the requested dataflow (``"ws"``, ``"is"`` or ``"best"``).
        sram_bandwidth: the SRAM bandwidth in words per modulation cycle, None for an SRAM that
            keeps up.
        layer_axis: whether the arrays lead with a layer axis (a :class:`Topology` was simulated;
            ``False`` for a single :class:`Layer`).
    """

    pes: Int[Array, "..."]
    row_folds: Int[Array, "..."]
    col_folds: Int[Array, "..."]
    folds: Int[Array, "..."]
    compute_cycles: Int[Array, "..."]
    reprogram_cycles: Int[Array, "..."]
    stall_cycles: Int[Array, "..."]
    cycles: Int[Array, "..."]
    macs: Int[Array, "..."]
    utilization: Float[Array, "..."]
    mapping_efficiency: Float[Array, "..."]
    ifmap_reads: Int[Array, "..."]
    filter_reads: Int[Array, "..."]
    ofmap_writes: Int[Array, "..."]
    memory_accesses: Int[Array, "..."]
    seconds: Float[Array, "..."]
    throughput: Float[Array, "..."]
    energy_j: Float[Array, "..."]
    laser_dbm: Float[Array, "..."]
    feasible: Bool[Array, "..."]
    input_stationary: Bool[Array, "..."]
    names: tuple[str, ...] = eqx.field(default=(), static=True)
    dataflow: str = eqx.field(default="ws", static=True)
    sram_bandwidth: int | None = eqx.field(default=None, static=True)
    layer_axis: bool = eqx.field(default=True, static=True)

    def totals(self) -> dict[str, Array]:
        """Network totals over the leading layer axis, as floats (sums can pass int32): ``macs``,
        ``cycles``, ``stall_cycles``, ``memory_accesses`` (and its three parts), ``seconds``,
        ``energy_j``, ``utilization`` (total MACs over total PE-cycles) and ``throughput``; shaped like
        the grid batch. For a single :class:`Layer` (no layer axis) they are the layer's own values."""
        fdt = self.utilization.dtype
        total = (lambda x: x.sum(0)) if self.layer_axis else (lambda x: x)  # noqa: E731
        s = {key: total(getattr(self, key).astype(fdt))
             for key in ("macs", "cycles", "stall_cycles", "memory_accesses", "ifmap_reads",
                         "filter_reads", "ofmap_writes", "seconds", "energy_j")}
        pes = self.pes[0] if self.layer_axis else self.pes
        s["utilization"] = s["macs"] / (pes.astype(fdt) * s["cycles"])
        s["throughput"] = s["macs"] / s["seconds"]
        return s


def _xp(x):
    # NumPy int64 counts (the int32 overflow check) must stay NumPy; traced ones stay JAX.
    return np if isinstance(x, (np.ndarray, np.generic)) else jnp


def _dataflow_counts(m, n, k, rows, cols, reprog, df: AbstractDataflow, bandwidth: int | None):
    """Integer counts of one dataflow; works on JAX and NumPy integer arrays alike (the fold
    arithmetic and SRAM counts are those of :mod:`hwsim.systolic`'s dataflow classes). With a finite
    SRAM ``bandwidth`` (words per cycle), loading the stationary operand takes at least
    ``ceil(stationary reads / bandwidth)`` cycles and streaming at least ``ceil((streamed reads +
    ofmap writes) / bandwidth)``; the excess over ``F reprog`` and ``F T`` is the stall."""
    sr, sc, t = df.spatiotemporal(m, n, k)
    row_folds, col_folds = cdiv(sr, rows), cdiv(sc, cols)
    folds = row_folds * col_folds
    xp = _xp(folds)
    ifmap, filt, ofmap = df.sram_accesses(sr, sc, t, row_folds, col_folds)
    stationary_is = isinstance(df, InputStationary)
    compute, reprogram = folds * t, folds * reprog
    load, stream = reprogram, compute
    if bandwidth is not None:
        stationary, streamed = (ifmap, filt + ofmap) if stationary_is else (filt, ifmap + ofmap)
        load = xp.maximum(reprogram, cdiv(stationary, bandwidth))
        stream = xp.maximum(compute, cdiv(streamed, bandwidth))
    cycles = load + stream
    return dict(sr=sr, sc=sc, row_folds=row_folds, col_folds=col_folds, folds=folds,
                compute=compute, reprogram=reprogram, stall=cycles - compute - reprogram,
                cycles=cycles, macs=m * n * k, ifmap=ifmap, filter=filt, ofmap=ofmap,
                memory=ifmap + filt + ofmap,
                input_stationary=xp.full(xp.shape(folds), stationary_is))


def _counts(m, n, k, rows, cols, reprog, dataflow: str, bandwidth: int | None):
    """The counts of the dataflow ``dataflow`` names in :data:`DATAFLOWS`; with several candidates,
    element by element those of the one with the fewest cycles (the first on ties)."""
    best = None
    for df in DATAFLOWS[dataflow]:
        c = _dataflow_counts(m, n, k, rows, cols, reprog, df, bandwidth)
        if best is not None:
            faster = c["cycles"] < best["cycles"]
            c = {key: _xp(faster).where(faster, c[key], best[key]) for key in c}
        best = c
    return best


@eqx.filter_jit
def _simulate_grid(m, n, k, grid_rows, grid_cols, ptc: PTC, names: tuple[str, ...],
                   dataflow: str, sram_bandwidth: int | None, layer_axis: bool = True) -> GridResult:
    fdt = ptc.modulation_ghz.dtype
    rows, cols = grid_rows * ptc.k, grid_cols * ptc.k
    c = _counts(m, n, k, rows, cols, ptc.reprogram_cycles, dataflow, sram_bandwidth)
    cores = (grid_rows * grid_cols).astype(fdt)
    pes = (rows * cols).astype(fdt)
    f = lambda x: x.astype(fdt)  # noqa: E731
    utilization = f(c["macs"]) / (f(c["cycles"]) * pes)
    mapping = f(c["sr"] * c["sc"]) / (f(c["folds"]) * pes)
    seconds = f(c["cycles"]) / (ptc.modulation_ghz * 1e9)
    channels = cores * ptc.k
    laser_dbm = (ptc.detector_dbm + 10 * jnp.log10(channels) + ptc.depth * ptc.loss_per_element_db
                 + ptc.fixed_loss_db)
    laser_w = 1e-3 * 10 ** (laser_dbm / 10) / ptc.laser_efficiency
    energy = (f(c["compute"]) * channels * (ptc.dac_pj + ptc.adc_pj) * 1e-12
              + f(c["folds"]) * cores * ptc.tuned_elements * ptc.tune_pj * 1e-12
              + (laser_w + cores * ptc.tuned_elements * ptc.hold_mw * 1e-3) * seconds)
    shape = jnp.broadcast_shapes(m.shape, n.shape, k.shape, grid_rows.shape, grid_cols.shape)
    full = lambda x: jnp.broadcast_to(x, shape)  # noqa: E731
    return GridResult(
        pes=full(rows * cols), row_folds=full(c["row_folds"]), col_folds=full(c["col_folds"]),
        folds=full(c["folds"]),
        compute_cycles=full(c["compute"]), reprogram_cycles=full(c["reprogram"]),
        stall_cycles=full(c["stall"]), cycles=full(c["cycles"]), macs=full(c["macs"]),
        utilization=full(utilization),
        mapping_efficiency=full(mapping), ifmap_reads=full(c["ifmap"]),
        filter_reads=full(c["filter"]), ofmap_writes=full(c["ofmap"]),
        memory_accesses=full(c["memory"]), seconds=full(seconds),
        throughput=full(f(c["macs"]) / seconds), energy_j=full(energy), laser_dbm=full(laser_dbm),
        feasible=full(laser_dbm <= ptc.max_laser_dbm),
        input_stationary=full(c["input_stationary"]), names=names, dataflow=dataflow,
        sram_bandwidth=sram_bandwidth, layer_axis=layer_axis,
    )


def _sram_bandwidth(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError("`sram_bandwidth` must be None (SRAM keeps up with the grid) or a positive "
                         f"int (words per modulation cycle), got {value!r}")
    return int(value)


def _prepare(workload, grid, ptc, dataflow, sram_bandwidth):
    """Check the arguments of :func:`simulate_grid` and lay the layers out against the grid batch."""
    dataflow = _dataflow(dataflow)
    sram_bandwidth = _sram_bandwidth(sram_bandwidth)
    if not isinstance(workload, (Layer, Topology)):
        raise TypeError("`workload` must be a hwsim.systolic.Layer (gemm(), conv()) or Topology "
                        f"(read_topology(), load_topology()), got {type(workload).__name__}")
    if not isinstance(grid, Grid):
        raise TypeError(f"`grid` must be a hwsim.photonic.Grid(rows, cols), got {type(grid).__name__}")
    ptc = PTC() if ptc is None else ptc
    if not isinstance(ptc, PTC):
        raise TypeError(f"`ptc` must be a hwsim.photonic.PTC or None, got {type(ptc).__name__}")
    gshape = jnp.broadcast_shapes(grid.rows.shape, grid.cols.shape)
    extra = (1,) * len(gshape)
    m, n, k = (x.reshape(x.shape + extra) for x in (workload.m, workload.n, workload.k))
    leaves = (m, n, k, grid.rows, grid.cols, ptc.reprogram_ns, ptc.modulation_ghz)
    if all(_is_concrete(x) for x in leaves):
        reprog = int(math.ceil(float(ptc.reprogram_ns) * float(ptc.modulation_ghz)))
        dims = [np.asarray(x, np.int64) for x in (m, n, k, grid.rows * ptc.k, grid.cols * ptc.k)]
        # every candidate must fit: "best" compares their cycle counts in the model's integer type
        for df in DATAFLOWS[dataflow]:
            c = _dataflow_counts(*dims, np.int64(reprog), df, sram_bandwidth)
            check_int32_range({key: c[key] for key in ("cycles", "macs", "memory")})
    layer_axis = isinstance(workload, Topology)
    names = workload.names if layer_axis else (workload.name,)
    return m, n, k, grid.rows, grid.cols, ptc, names, dataflow, sram_bandwidth, layer_axis


def simulate_grid(workload: Layer | Topology, grid: Grid, ptc: PTC | None = None, *,
                  dataflow: str = "ws", sram_bandwidth: int | None = None) -> GridResult:
    r"""Folds, cycles, utilisation, SRAM traffic, throughput and energy of a layer or a network on a
    grid of photonic tensor cores (the model is in the module docstring of
    :mod:`hwsim.photonic._grid`).

    With ``R = Rg k``, ``C = Cg k``, the GEMM ``(M, N, K)`` and the dataflow's ``(S_r, S_c, T)``
    (``(K, N, M)`` weight stationary, ``(K, M, N)`` input stationary): ``F = ceil(S_r / R)
    ceil(S_c / C)`` folds of ``T + ceil(t_reprog f_mod)`` cycles each; utilisation
    ``M N K / (R C F (T + ...))``. Weight stationary reads ``ceil(N / C) M K + K N`` operands and
    writes ``ceil(K / R) M N``; input stationary reads ``K M + ceil(M / C) K N`` and writes the same.

    Args:
        workload: a :class:`hwsim.systolic.Layer` (``gemm``, ``conv``) or :class:`hwsim.systolic.Topology`.
        grid: the :class:`Grid`; its ``rows``/``cols`` may be arrays (a batch of grid shapes).
        ptc: the core (default ``PTC()``: 4 x 4 coherent MZI core, thermal tuning).
        dataflow: ``"ws"`` (weights programmed into the meshes, ifmap rows streamed; the default),
            ``"is"`` (ifmap tiles programmed, filter columns streamed) or ``"best"`` (per layer the
            one with fewer cycles, ties to ``"ws"``); see :data:`DATAFLOWS`. Static: a new value
            compiles anew.
        sram_bandwidth: words per modulation cycle the on-chip SRAM buffers move to and from the
            grid, reads and writes together; ``None`` (the default, SCALE-Sim's assumption) for
            buffers that always keep up. Static (a positive int).

    Returns:
        A :class:`GridResult` with arrays shaped ``workload.m.shape + grid shape``.

    Raises:
        TypeError: ``workload``, ``grid``, ``ptc`` or ``dataflow`` of the wrong type (named).
        ValueError: an unknown ``dataflow`` (the allowed names are listed), an ``sram_bandwidth``
            that is not None or a positive int, counts that overflow int32 while JAX's 64-bit mode is
            off.

    Example:
        >>> from hwsim import photonic, systolic
        >>> eo = photonic.PTC(4, reprogram_ns=1.0)   # 10 cycles per reprogramming
        >>> layer = systolic.gemm(100, 8, 8)
        >>> r = photonic.simulate_grid(layer, photonic.Grid(1, 2), eo)
        >>> int(r.folds), int(r.cycles), float(r.utilization)   # 2 x 1 folds of 100 + 10 cycles
        (2, 220, 0.9090909...)
        >>> gemv = systolic.gemm(1, 64, 32)   # M = 1: ws needs 16 folds of 1 + 10, is 1 of 64 + 10
        >>> [int(photonic.simulate_grid(gemv, photonic.Grid(8, 1), eo, dataflow=d).cycles)
        ...  for d in ("ws", "is", "best")]
        [176, 74, 74]
    """
    return _simulate_grid(*_prepare(workload, grid, ptc, dataflow, sram_bandwidth))


def factor_grids(pes: int, k: int = 4) -> list[tuple[int, int]]:
    """Every ``(Rg, Cg)`` with ``Rg Cg k^2 = pes``, ``1 x N`` first and ``N x 1`` last.

    Raises:
        ValueError: ``pes`` or ``k`` not a positive int, or ``pes`` not a multiple of ``k^2``.

    Example:
        >>> from hwsim import photonic
        >>> photonic.factor_grids(64, k=4)
        [(1, 4), (2, 2), (4, 1)]
    """
    pes, k = _positive_int(pes, "pes"), _positive_int(k, "k")
    if pes % (k * k):
        raise ValueError(f"`pes`={pes} must be a multiple of k*k={k * k} (the PEs of one {k}x{k} "
                         "core) to be tiled by whole cores")
    cores = pes // (k * k)
    return [(r, cores // r) for r in range(1, cores + 1) if cores % r == 0]


def as_topology(topology: Topology | str | Any) -> Topology:
    """A :class:`hwsim.systolic.Topology` from itself, a shipped name, or a CSV path.

    Raises:
        ValueError: an unknown name (the message lists :data:`hwsim.systolic.TOPOLOGIES`).
        FileNotFoundError: a ``.csv`` path that does not exist.
    """
    if isinstance(topology, Topology):
        return topology
    if isinstance(topology, str) and not topology.lower().endswith(".csv"):
        if topology not in TOPOLOGIES:
            raise ValueError(f"`topology` must be a Topology, a CSV path or one of {TOPOLOGIES}, got "
                             f"{topology!r}")
        return load_topology(topology)
    return read_topology(topology)


class SweepResult(eqx.Module):
    """What :func:`sweep` returns: one entry per (PE budget, grid factorisation).

    Attributes:
        pes, grid_rows, grid_cols: shape ``(grids,)``.
        layers: the per-layer :class:`GridResult`, arrays shaped ``(layers, grids)``.
        utilization, memory_accesses, cycles, stall_cycles, throughput, energy_j: network totals,
            ``(grids,)``.
        is_gemv: per layer, whether ``M = 1`` (a fully connected layer on one input vector).
        topology: the network's name.
        dataflow: the dataflow swept (``"ws"``, ``"is"`` or ``"best"``; the per-layer choice is
            ``layers.input_stationary``).
    """

    pes: Int[Array, " grids"]
    grid_rows: Int[Array, " grids"]
    grid_cols: Int[Array, " grids"]
    layers: GridResult
    utilization: Float[Array, " grids"]
    memory_accesses: Float[Array, " grids"]
    cycles: Float[Array, " grids"]
    stall_cycles: Float[Array, " grids"]
    throughput: Float[Array, " grids"]
    energy_j: Float[Array, " grids"]
    is_gemv: Bool[Array, " layers"]
    topology: str = eqx.field(static=True)
    dataflow: str = eqx.field(default="ws", static=True)
    sram_bandwidth: int | None = eqx.field(default=None, static=True)


@eqx.filter_jit
def _sweep_totals(m, n, k, rows, cols, ptc: PTC, names: tuple[str, ...], dataflow: str,
                  sram_bandwidth: int | None, layer_axis: bool):
    res = _simulate_grid(m, n, k, rows, cols, ptc, names, dataflow, sram_bandwidth, layer_axis)
    return res, res.totals()


def sweep(topology: Topology | str, pes: Sequence[int] = (64, 256, 1024), k: int = 4, *,
          ptc: PTC | None = None, dataflow: str = "ws",
          sram_bandwidth: int | None = None) -> SweepResult:
    """Every ``Rg x Cg`` factorisation of each PE budget, simulated in one compiled call.

    For each budget ``P`` in ``pes``, the ``P / k^2`` cores are arranged in every grid
    ``Rg x Cg`` with ``Rg Cg = P / k^2`` (``1 x N`` and ``N x 1`` included); all grids of all budgets
    form one batch for :func:`simulate_grid`.

    Args:
        topology: a :class:`hwsim.systolic.Topology`, a shipped name (``"googlenet"``, ...) or a CSV.
        pes: PE budgets, each a multiple of ``k^2``.
        k: the core size (ignored when ``ptc`` is given, which carries its own ``k``).
        ptc: the core (default ``PTC(k)``).
        dataflow: ``"ws"``, ``"is"`` or ``"best"``, as in :func:`simulate_grid`.
        sram_bandwidth: SRAM words per modulation cycle, or None (unlimited), as in
            :func:`simulate_grid`.

    Returns:
        A :class:`SweepResult`.

    Raises:
        ValueError: a budget that ``k^2`` does not divide, ``k < 1``, an unknown topology or
            dataflow name.

    Example:
        >>> from hwsim import photonic, systolic
        >>> net = systolic.Topology([systolic.gemm(100, 4, 16)])   # K = 16, N = 4
        >>> s = photonic.sweep(net, pes=(64,), ptc=photonic.PTC(4, reprogram_ns=1.0))
        >>> list(zip(s.grid_rows.tolist(), s.grid_cols.tolist()))
        [(1, 4), (2, 2), (4, 1)]
        >>> s.layers.folds[0].tolist()   # ceil(16 / 4Rg) ceil(4 / 4Cg)
        [4, 2, 1]
        >>> [round(float(u), 3) for u in s.utilization]   # 6400 / (64 * folds * (100 + 10))
        [0.227, 0.455, 0.909]
    """
    topo = as_topology(topology)
    if ptc is None:
        ptc = PTC(_positive_int(k, "k"))
    elif not isinstance(ptc, PTC):
        raise TypeError(f"`ptc` must be a hwsim.photonic.PTC or None, got {type(ptc).__name__}")
    if isinstance(pes, (int, np.integer)):
        pes = (pes,)
    grids = [(p, r, c) for p in pes for r, c in factor_grids(p, ptc.k)]
    if not grids:
        raise ValueError(f"`pes` must be a non-empty sequence of PE budgets, got {pes!r}")
    p_arr, r_arr, c_arr = (jnp.asarray([g[i] for g in grids], int_dtype()) for i in range(3))
    args = _prepare(topo, Grid(r_arr, c_arr), ptc, dataflow, sram_bandwidth)
    res, tot = _sweep_totals(*args)
    return SweepResult(pes=p_arr, grid_rows=r_arr, grid_cols=c_arr, layers=res,
                       utilization=tot["utilization"], memory_accesses=tot["memory_accesses"],
                       cycles=tot["cycles"], stall_cycles=tot["stall_cycles"],
                       throughput=tot["throughput"], energy_j=tot["energy_j"], is_gemv=topo.m == 1,
                       topology=topo.name, dataflow=res.dataflow, sram_bandwidth=res.sram_bandwidth)
