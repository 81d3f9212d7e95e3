"""``hwsim.systolic.simulate``: the analytic cycle model of a systolic array, one entry point.

The model is SCALE-Sim v3's compute model in closed form. SCALE-Sim builds, per fold, demand matrices
with one line per cycle (operands entering the array, outputs leaving it) and concatenates the folds;
here the same counts come from a few integer formulas (see :mod:`hwsim.systolic._dataflow`), so a
whole network times a sweep of array shapes is one broadcast expression instead of minutes of Python.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from sciml import backend

from ._dataflow import AbstractDataflow, SystolicArray, WeightStationary, as_dataflow, cdiv
from ._memory import Memory, MemoryResult, geometry_ifmap_words, memory_model
from ._workload import ConvGeometry, Layer, Topology, _is_concrete, check_int32_range


class SimulationResult(eqx.Module):
    """What :func:`simulate` returns: per-layer counts, shaped ``workload.shape + array.shape``.

    Utilisations are fractions in [0, 1] (SCALE-Sim reports them in percent).

    Attributes:
        cycles: compute cycles (SCALE-Sim's ``Total Cycles``; stall-free, as in its ``CALC``
            bandwidth mode).
        overall_utilization: ``MACs / (cycles * R * C)``, SCALE-Sim's ``Overall Util``.
        mapping_efficiency: mean over folds of the fraction of PEs that hold work.
        compute_utilization: mean over folds of ``MACs in the fold / (R * C * fold cycles)``.
        ifmap_reads, filter_reads: SRAM reads of each operand (SCALE-Sim's detailed access report).
        ofmap_writes: SRAM writes of outputs and partial sums.
        macs: multiply-accumulates ``M N K``.
        row_folds, col_folds: how many times the work is tiled over the array's rows and columns.
        names: the layers' names (empty for a single unnamed batch).
        memory: with ``simulate(..., memory=Memory(...))``, the SRAM/DRAM model's
            :class:`MemoryResult` (DRAM traffic, stalls, bandwidths); else ``None``.
    """

    cycles: Int[Array, "..."]
    overall_utilization: Float[Array, "..."]
    mapping_efficiency: Float[Array, "..."]
    compute_utilization: Float[Array, "..."]
    ifmap_reads: Int[Array, "..."]
    filter_reads: Int[Array, "..."]
    ofmap_writes: Int[Array, "..."]
    macs: Int[Array, "..."]
    row_folds: Int[Array, "..."]
    col_folds: Int[Array, "..."]
    names: tuple[str, ...] = eqx.field(default=(), static=True)
    memory: MemoryResult | None = None


def _counts(m, n, k, rows, cols, dataflow: AbstractDataflow, compat: bool):
    """The integer part of the model; works on JAX and NumPy integer arrays alike."""
    sr, sc, t = dataflow.spatiotemporal(m, n, k)
    row_folds, col_folds = cdiv(sr, rows), cdiv(sc, cols)
    folds = row_folds * col_folds
    cycles = folds * dataflow.fold_cycles(rows, cols, t)
    ifmap, filt, ofmap = dataflow.sram_accesses(sr, sc, t, row_folds, col_folds)
    if compat:
        # SCALE-Sim reports the largest 0-based cycle index, one less than the cycles it simulated.
        cycles = cycles - 1
        ofmap = ofmap + dataflow.compat_extra_ofmap_writes(rows, cols, folds)
    return dict(sr=sr, sc=sc, t=t, row_folds=row_folds, col_folds=col_folds, folds=folds,
                cycles=cycles, ifmap=ifmap, filter=filt, ofmap=ofmap, macs=m * n * k)


@eqx.filter_jit
def _simulate(m, n, k, rows, cols, dataflow: AbstractDataflow, compat: bool, names: tuple[str, ...],
              memory: Memory | None = None, ifmap_words=None, geometry: ConvGeometry | None = None):
    c = _counts(m, n, k, rows, cols, dataflow, compat)
    fdt = backend.default_dtype()
    pes = (rows * cols).astype(fdt)
    mapping = (c["sr"] * c["sc"]).astype(fdt) / (c["folds"].astype(fdt) * pes)
    util_cycles = (dataflow.compat_util_cycles(rows, cols, c["t"]) if compat
                   else dataflow.fold_cycles(rows, cols, c["t"]))
    compute = mapping * c["t"].astype(fdt) / util_cycles.astype(fdt)
    overall = c["macs"].astype(fdt) / (c["cycles"].astype(fdt) * pes)
    shape = jnp.broadcast_shapes(m.shape, n.shape, k.shape, rows.shape, cols.shape)
    full = lambda x: jnp.broadcast_to(x, shape)  # noqa: E731
    mem = None
    if memory is not None:
        if ifmap_words is not None:
            words = ifmap_words
        elif geometry is not None:
            words = geometry_ifmap_words(geometry)
        else:
            words = m * k
        mem = memory_model(m, n, k, rows, cols, words, memory, dataflow,
                           (c["ifmap"], c["filter"], c["ofmap"]), c["cycles"], geometry=geometry)
    return SimulationResult(
        cycles=full(c["cycles"]), overall_utilization=full(overall), mapping_efficiency=full(mapping),
        compute_utilization=full(compute), ifmap_reads=full(c["ifmap"]), filter_reads=full(c["filter"]),
        ofmap_writes=full(c["ofmap"]), macs=full(c["macs"]), row_folds=full(c["row_folds"]),
        col_folds=full(c["col_folds"]),
        names=names, memory=mem,
    )


_WS = WeightStationary()  # a field-less Module: no arrays are made at import


def simulate(workload: Layer | Topology, array: SystolicArray, *,
             dataflow: AbstractDataflow | str = _WS, compat: bool = False,
             memory: Memory | None = None, ifmap_words=None) -> SimulationResult:
    """Cycles, utilisation and SRAM traffic of a layer or a network on a systolic array.

    With ``(S_r, S_c, T)`` the dataflow's mapping of the GEMM (``M, N, K``) and an ``R x C`` array,
    the work runs in ``F = ceil(S_r / R) ceil(S_c / C)`` folds, one after another, each of
    ``L`` cycles (``T + R + C - 2`` for output stationary, ``2R + C + T - 2`` for weight and input
    stationary), and

    .. math::
        \\text{cycles} = F L, \\quad
        \\text{mapping efficiency} = \\frac{S_r S_c}{F R C}, \\quad
        \\text{compute utilisation} = \\text{mapping efficiency} \\cdot \\frac{T}{L}, \\quad
        \\text{overall utilisation} = \\frac{M N K}{\\text{cycles} \\cdot R C}.

    **Compatibility mode** (``compat=True``) reproduces the ``COMPUTE_REPORT.csv`` of SCALE-Sim v3.0.0
    (``Total Cycles``, ``Overall Util %``, ``Mapping Efficiency %``, ``Compute Util %``, divided by 100
    here) and the SRAM counts of its ``DETAILED_ACCESS_REPORT.csv`` for dense layers in its ``CALC``
    bandwidth mode, where it never stalls. Its quirks, reproduced only in this mode:

    1. ``Total Cycles`` is one less than the cycles simulated: it is the largest 0-based cycle index
       of the ofmap demand (``max(ofmap_serviced_cycles)``), so ``cycles = F L - 1``; ``Overall
       Util`` divides by that number.
    2. Weight and input stationary divide each fold's compute utilisation by ``2R + 2C + T - 3``
       cycles, ``C - 1`` more than the fold's ``2R + C + T - 2`` (the fold's filter/ifmap demand
       length plus the array width minus one), so their ``Compute Util`` is lower than the ratio of
       useful MACs to PE-cycles.
    3. Output stationary counts ``R + C`` extra ofmap SRAM writes per fold (it adds the padded ofmap
       demand's ``shape[0] + shape[1]`` to its write counter after the real ``S_r S_c`` writes).

    Kept in both modes, since they are SCALE-Sim's model rather than slips: folds do not overlap
    (each pays its own fill and drain); utilisations are unweighted means over folds; and
    convolutions are lowered without padding (see :func:`hwsim.systolic.conv`). Sparsity support is
    not modelled.

    **Memory** (``memory=Memory(...)``): SCALE-Sim's double-buffered SRAMs and DRAM interface, in its
    ``CALC`` (no stalls) or ``USER`` (given bandwidths, stalls) mode; ``result.memory`` holds the DRAM
    reads and writes, stall cycles, ``Total Cycles (incl. prefetch)``, the start/stop cycles and
    average bandwidths of SCALE-Sim's ``BANDWIDTH_REPORT.csv`` and ``DETAILED_ACCESS_REPORT.csv``.
    See :mod:`hwsim.systolic._memory` for the model and how closely it follows SCALE-Sim.

    Counts are integers of the model's integer type (int32, or int64 with JAX's 64-bit mode) and
    utilisations floats of the backend's default dtype. SCALE-Sim sums its per-fold ratios in
    float64, one fold at a time; the closed forms here agree with its numbers to rounding (relative
    1e-6 in float32, 1e-12 in float64), and the integer counts agree exactly.

    Args:
        workload: a :class:`Layer` (from :func:`gemm` or :func:`conv`) or a :class:`Topology`.
        array: the :class:`SystolicArray`; its ``rows``/``cols`` may be arrays of shapes (a sweep).
        dataflow: an :class:`AbstractDataflow` instance (default :class:`WeightStationary`, SCALE-Sim's
            default) or SCALE-Sim's name for one: ``"os"``, ``"ws"``, ``"is"``.
        compat: reproduce SCALE-Sim v3's reported numbers, quirks included (see above).
        memory: a :class:`Memory` (SRAM sizes, DRAM bandwidths) to model the memory system too.
        ifmap_words: an override of the distinct ifmap words per layer the memory model uses (see
            :func:`conv_ifmap_words`); by default they come from the layers' :class:`ConvGeometry`
            (convolutions) or are ``M K`` (GEMMs), which is what SCALE-Sim reads.

    Returns:
        A :class:`SimulationResult` whose arrays have shape ``workload.m.shape + array.rows.shape``
        (layers first, then array shapes).

    Raises:
        TypeError: ``workload``, ``array`` or ``dataflow`` of the wrong type (named).
        ValueError: an unknown dataflow name, a non-bool ``compat``, or counts that overflow int32
            while JAX's 64-bit mode is off.

    Example:
        >>> from hwsim import systolic
        >>> layer = systolic.conv(10, 10, 3, 3, 4, 6, 1)
        >>> r = systolic.simulate(layer, systolic.SystolicArray(4, 5), dataflow="os", compat=True)
        >>> int(r.cycles), int(r.ifmap_reads), int(r.filter_reads), int(r.ofmap_writes)
        (1375, 4608, 3456, 672)
        >>> round(float(r.mapping_efficiency), 4)
        0.6

    Reference: A. Samajdar et al., "SCALE-Sim: Systolic CNN Accelerator Simulator", arXiv:1811.02883
    (2018), and "A systematic methodology for characterizing scalability of DNN accelerators using
    SCALE-Sim", ISPASS 2020.
    """
    if not isinstance(workload, (Layer, Topology)):
        raise TypeError("`workload` must be a hwsim.systolic.Layer (gemm(), conv()) or Topology "
                        f"(read_topology(), load_topology()), got {type(workload).__name__}")
    if not isinstance(array, SystolicArray):
        raise TypeError(f"`array` must be a hwsim.systolic.SystolicArray(rows, cols), got "
                        f"{type(array).__name__}")
    df = as_dataflow(dataflow)
    if not isinstance(compat, bool):
        raise ValueError(f"`compat` must be True or False, got {compat!r}")
    extra = (1,) * np.ndim(array.rows)
    m, n, k = (x.reshape(x.shape + extra) for x in (workload.m, workload.n, workload.k))
    rows, cols = array.rows, array.cols
    leaves = (m, n, k, rows, cols)
    if all(_is_concrete(x) for x in leaves):
        c = _counts(*(np.asarray(x, dtype=np.int64) for x in leaves), df, compat)
        check_int32_range({key: c[key] for key in ("cycles", "macs", "ifmap", "filter", "ofmap")})
    names = workload.names if isinstance(workload, Topology) else (workload.name,)
    if memory is not None and not isinstance(memory, Memory):
        raise TypeError(f"`memory` must be a hwsim.systolic.Memory or None, got {type(memory).__name__}")
    if ifmap_words is not None:
        if memory is None:
            raise ValueError("`ifmap_words` is used by the memory model only; pass `memory=Memory(...)` too")
        ifmap_words = jnp.asarray(ifmap_words)
        if not jnp.issubdtype(ifmap_words.dtype, jnp.integer):
            raise TypeError(f"`ifmap_words` must be integers, got dtype {ifmap_words.dtype}")
        if ifmap_words.shape not in ((), workload.m.shape):
            raise ValueError(f"`ifmap_words` must have the workload's shape {workload.m.shape}, got "
                             f"{ifmap_words.shape}")
        ifmap_words = ifmap_words.astype(m.dtype).reshape(ifmap_words.shape + extra)
    geometry = workload.geometry if memory is not None else None
    if geometry is not None:
        geometry = jax.tree.map(lambda x: x.reshape(x.shape + extra), geometry)
    return _simulate(m, n, k, rows, cols, df, compat, names, memory, ifmap_words, geometry)
