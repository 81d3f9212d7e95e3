"""The memory system of SCALE-Sim v3: double-buffered SRAMs in front of DRAM, in closed form and a fold scan.

SCALE-Sim puts one double-buffered SRAM in front of each operand (``scalesim.memory``): half of each
SRAM serves the array while the other half is filled from (ifmap, filter) or drained to (ofmap) DRAM.
It simulates every address; here the same counts come from the fold structure of the dataflow:

* **CALC bandwidth mode** (``InterfaceBandwidth: CALC``, :class:`Memory` without bandwidths): reads never
  stall, and SCALE-Sim's estimator (``ReadBufferEstimateBw``) fetches an address from DRAM whenever it is
  not among the addresses fetched since the last time its miss counter passed a multiple of
  ``W = 50 floor(words / 100)`` (its active buffer is 50 "sets" of ``floor(words/100)`` words, emptied
  in one go). With ``U`` an operand's distinct words, an operand with ``U < W`` is read once (``U``
  words). A larger ifmap is followed through the window fold by fold (a ``lax.while_loop`` over one
  column fold's sweep, scaled to all of them): each fold streams a block of the im2col matrix (OS: a
  range of output pixels, WS: a range of ``K``, IS: a ``K`` range x pixel range block), and its new
  words are the words of its block that the folds since the last reset have not touched, counted in
  closed form from the :class:`ConvGeometry` (the union of the blocks' convolution windows; exact for
  stride 1, approximate for strided windows and IS blocks). GEMMs are convolutions without overlapping
  windows, for which this reduces to the sweep count. A tile re-used by consecutive folds (the filter
  under output stationary) is followed through the counter fold by fold.
* **USER bandwidth mode** (:class:`Memory` with bandwidths): the read buffers hold the operand's
  prefetch order cut into 100 sets per SRAM; a miss slides the active window forward by the prefetch
  half, and each slide reads ``ceil(prefetch words / bw) * bw`` words (padding included) and takes that
  many cycles plus one. The window walk is followed fold by fold, each fold touching a contiguous range
  of sets; stalls are the DRAM time that the compute time cannot hide.
* The ofmap SRAM drains every word written to it: DRAM writes are the ofmap SRAM writes, plus the
  padding of the first partially filled drain line.

Measured against SCALE-Sim 3.0.0 (the ``mem_*`` cases of ``tests/data/scalesim_v3_reference.json``:
a 16x16x8 3x3 convolution and a 96x80x64 GEMM on 8x8, 16x16, 32x32, 4x256, 256x4, 2x512 arrays, all
three dataflows, 64 kB and 2 kB SRAMs, and 15 USER-mode runs with 1-10 words/cycle; and ResNet-18 on a
32x32 array with 64 kB SRAMs, ``benchmarks/bench_systolic.py``):

* CALC mode: filter DRAM reads, ofmap DRAM writes, total cycles (no stalls) and the SRAM start/stop
  cycles are exact on all 72 runs; ifmap DRAM reads are exact on every GEMM and on every convolution
  whose ifmap fits the SRAM. Convolutions whose ifmap does not fit (SCALE-Sim re-uses overlapping
  windows only while they are in its window), relative error of the ifmap DRAM reads:

  ==========================  ===============  ===============  ===============
  case                        OS               WS               IS
  ==========================  ===============  ===============  ===============
  3x3 conv, 2 kB, 6 arrays    -3.8% .. +11.7%  -4.7% .. +2.2%   -8.3% .. +18.7%
  ResNet-18, 32x32, 64 kB     -14% .. +2.7%    |err| <= 30%     |err| <= 84%
  (same, whole network)       -7.6%            +1.4%            +6.5%
  3x3 conv, 2 kB, before      -12% .. -23%     up to 7x low     up to 7x low
  ==========================  ===============  ===============  ===============

  (the ResNet-18 rows are per layer, then summed over the network; ``python -m benchmarks systolic``.)

  The largest errors: OS on small arrays (the estimator's reset falls inside a fold and the model
  treats the rest of the fold as kept), 3x3 convolutions in ResNet-18's stride-2 and 28x28/14x14
  layers under OS (10-14% low), and IS blocks narrower than a column fold (their words are a share of
  the ``K`` range's words). ``Total Cycles (incl. prefetch)`` and the DRAM start/stop cycles are
  approximations of the drain tail and of when the estimator's last window reset happens (within 2%
  on GEMMs, up to 13% off on convolutions; the ifmap/filter DRAM stop cycle of runs that reset is only
  a linear interpolation).
* USER mode: the pinned operand's DRAM reads (filter under WS, ifmap under IS) are exact but on the
  4x256 IS run (25% low); ofmap DRAM writes within 0.2%; runs whose operands fit report SCALE-Sim's
  reads and no stalls. **Not yet faithful**: the streamed operands when they do not fit (up to 20x
  low: SCALE-Sim's diagonal prefetch order makes a fold's first demand fall just behind the sliding
  window, which then goes the whole way round; the fold-level walk here misses most of those wraps),
  and so the stall cycles (here the DRAM time the compute time cannot hide; 23-100% low).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from sciml import backend

from ._dataflow import AbstractDataflow, InputStationary, OutputStationary, WeightStationary, cdiv
from ._workload import ConvGeometry, int_dtype


def _leaf(value: Any, name: str, *, minimum: int = 1) -> Int[Array, "..."]:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"`{name}` must be an int or an integer array, got dtype {arr.dtype}")
    if not isinstance(arr, jax.core.Tracer) and arr.size and int(arr.min()) < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")
    return arr.astype(int_dtype())


class Memory(eqx.Module):
    """The on-chip SRAMs and the DRAM interface (SCALE-Sim's ``[architecture_presets]``/``[run_presets]``).

    Sizes and bandwidths are integer array leaves (a sweep over them does not recompile). Leave the
    bandwidths out for SCALE-Sim's ``CALC`` mode (no stalls; the report gives the bandwidth that was
    needed); give all three for its ``USER`` mode (stalls when they are too small).

    Attributes:
        ifmap_sram_kb, filter_sram_kb, ofmap_sram_kb: SRAM sizes in kB (``IfmapSramSzkB``, ...), each
            split into two halves (double buffering).
        word_bytes: bytes per word (SCALE-Sim fixes it to 1).
        ifmap_bandwidth, filter_bandwidth, ofmap_bandwidth: DRAM words per cycle (``USER`` mode), or
            ``None`` (``CALC`` mode). SCALE-Sim 3.0.0 reads the ifmap and filter ones from
            ``[layout] IfmapSRAMBankBandwidth``/``FilterSRAMBankBandwidth`` and the ofmap one from
            ``Bandwidth``; :attr:`ScaleSimConfig.memory` does the same.

    Raises:
        ValueError: a non-positive size or bandwidth, or only some of the bandwidths given.

    Example:
        >>> from hwsim import systolic
        >>> mem = systolic.Memory(64, 64, 64)                       # CALC mode
        >>> mem.mode, systolic.Memory(64, 64, 64, ifmap_bandwidth=10, filter_bandwidth=10,
        ...                           ofmap_bandwidth=10).mode
        ('CALC', 'USER')
    """

    ifmap_sram_kb: Int[Array, ""]
    filter_sram_kb: Int[Array, ""]
    ofmap_sram_kb: Int[Array, ""]
    word_bytes: Int[Array, ""]
    ifmap_bandwidth: Int[Array, ""] | None
    filter_bandwidth: Int[Array, ""] | None
    ofmap_bandwidth: Int[Array, ""] | None

    def __init__(self, ifmap_sram_kb=256, filter_sram_kb=256, ofmap_sram_kb=128, *, word_bytes=1,
                 ifmap_bandwidth=None, filter_bandwidth=None, ofmap_bandwidth=None):
        self.ifmap_sram_kb = _leaf(ifmap_sram_kb, "ifmap_sram_kb")
        self.filter_sram_kb = _leaf(filter_sram_kb, "filter_sram_kb")
        self.ofmap_sram_kb = _leaf(ofmap_sram_kb, "ofmap_sram_kb")
        self.word_bytes = _leaf(word_bytes, "word_bytes")
        bws = (ifmap_bandwidth, filter_bandwidth, ofmap_bandwidth)
        if any(b is None for b in bws) and not all(b is None for b in bws):
            raise ValueError("give all of `ifmap_bandwidth`, `filter_bandwidth`, `ofmap_bandwidth` (USER "
                             f"mode) or none of them (CALC mode), got {bws}")
        if bws[0] is None:
            self.ifmap_bandwidth = self.filter_bandwidth = self.ofmap_bandwidth = None
        else:
            self.ifmap_bandwidth = _leaf(ifmap_bandwidth, "ifmap_bandwidth")
            self.filter_bandwidth = _leaf(filter_bandwidth, "filter_bandwidth")
            self.ofmap_bandwidth = _leaf(ofmap_bandwidth, "ofmap_bandwidth")

    @property
    def mode(self) -> str:
        """SCALE-Sim's ``InterfaceBandwidth``: ``"CALC"`` or ``"USER"``."""
        return "CALC" if self.ifmap_bandwidth is None else "USER"


class MemoryResult(eqx.Module):
    """The memory part of a :class:`SimulationResult` (``result.memory``); shapes as its other fields.

    Trailing axes of length 3 are ``(ifmap, filter, ofmap)``. Cycles count from the first compute
    cycle; DRAM prefetches before it have negative cycles, as in SCALE-Sim's reports.

    Attributes:
        stall_cycles: cycles the array waits for DRAM (``Stall Cycles``; 0 in CALC mode).
        cycles: compute plus stall cycles (``Total Cycles``).
        cycles_incl_prefetch: from the first DRAM read to the last DRAM write
            (``Total Cycles (incl. prefetch)``).
        ifmap_dram_reads, filter_dram_reads, ofmap_dram_writes: DRAM words moved.
        sram_start, sram_stop: first and last cycle each SRAM serves the array.
        dram_start, dram_stop: first and last cycle of each operand's DRAM traffic.
        sram_bandwidth: average SRAM words per cycle over ``cycles`` (``Avg IFMAP SRAM BW``, ...).
        dram_bandwidth: average DRAM words per cycle over each operand's DRAM activity
            (``Avg IFMAP DRAM BW``, ...); in CALC mode the bandwidth needed for no stalls.
    """

    stall_cycles: Int[Array, "..."]
    cycles: Int[Array, "..."]
    cycles_incl_prefetch: Int[Array, "..."]
    ifmap_dram_reads: Int[Array, "..."]
    filter_dram_reads: Int[Array, "..."]
    ofmap_dram_writes: Int[Array, "..."]
    sram_start: Int[Array, "... 3"]
    sram_stop: Int[Array, "... 3"]
    dram_start: Int[Array, "... 3"]
    dram_stop: Int[Array, "... 3"]
    sram_bandwidth: Float[Array, "... 3"]
    dram_bandwidth: Float[Array, "... 3"]


# --------------------------------------------------------------------------------------------------
# Geometry of the dataflows' folds: which part of each operand a fold (fc, fr) touches
# --------------------------------------------------------------------------------------------------
#
# For each dataflow and read operand: its kind in the CALC model ("cyclic": the operand is swept once
# per column fold; "repeat": column-fold tile fc is re-used by the row folds that follow each other;
# "single": every word is used by one fold), and in SCALE-Sim's prefetch order (the order its USER-mode
# read buffer fetches) the start and size of the range a fold touches, and the prefetch matrix's size
# with its -1 padding. g = dict(R, C, sr, sc, t, m, n, k, fr, fc, r, c) with r, c the used rows/cols.


def _os_ifmap(g):  # ifmap row folds, swept once per column fold, diagonal prefetch order
    return g["fr"] * g["R"] * g["k"], g["r"] * g["k"], cdiv(g["sr"], g["R"]) * g["R"] * g["k"]


def _os_filter(g):
    return g["fc"] * g["C"] * g["k"], g["k"] * g["c"], cdiv(g["sc"], g["C"]) * g["C"] * g["k"]


def _ws_ifmap(g):
    return g["fr"] * g["R"] * g["m"], g["m"] * g["r"], cdiv(g["sr"], g["R"]) * g["R"] * g["m"]


def _block(g):  # a (row fold, col fold) block of a column-fold-major, row-major prefetch matrix
    return (g["fc"] * g["C"] * g["k"] + g["fr"] * g["R"] * g["c"], g["r"] * g["c"],
            cdiv(g["sc"], g["C"]) * g["C"] * g["k"])


def _is_filter(g):
    return g["fr"] * g["R"] * g["n"], g["r"] * g["n"], cdiv(g["sr"], g["R"]) * g["R"] * g["n"]


# dataflow -> ((ifmap kind, ifmap region), (filter kind, filter region))
_LAYOUT = {
    OutputStationary: (("cyclic", _os_ifmap), ("repeat", _os_filter)),
    WeightStationary: (("cyclic", _ws_ifmap), ("single", _block)),
    InputStationary: (("single", _block), ("cyclic", _is_filter)),
}


def _sram_windows(dataflow: AbstractDataflow, R, C, t, r0, c0, r_last, c_last, folds):
    """First and last cycle each SRAM serves the array (closed forms of SCALE-Sim's demand matrices)."""
    L = dataflow.fold_cycles(R, C, t)
    base = (folds - 1) * L
    if isinstance(dataflow, OutputStationary):
        start = (1, 1, t - 1 + R - r0)
        stop = (base + r_last - 1 + t, base + c_last - 1 + t, base + t + R + c_last - 3)
    elif isinstance(dataflow, WeightStationary):
        start = (R + 1, R - r0 + 1, 2 * R - 1)
        stop = (base + R + r_last + t - 1, base + R, base + 2 * R + c_last + t - 3)
    else:  # input stationary: the ifmap is pinned (unskewed), the filter streams
        start = (R - r0 + 1, R + 1, 2 * R - 1)
        stop = (base + R, base + R + r_last + t - 1, base + 2 * R + c_last + t - 3)
    return start, stop


# --------------------------------------------------------------------------------------------------
# Distinct input words of parts of a convolution's im2col matrix (CALC-mode window reuse)
# --------------------------------------------------------------------------------------------------
#
# The ifmap a fold streams is a block of the im2col matrix: OS folds take a range of output pixels
# (all of K), WS folds a range of K = (filter row, filter col, channel), channel fastest (all pixels).
# Both touch input words on a 2D grid through "first partial row, full rows, last partial row" of an
# index range; the union of their windows is counted with the measures below (exact for stride 1).


def _cover(a, b, s, filt, size):
    """Input coordinates the windows of outputs ``a..b`` touch (filter ``filt``, stride ``s``)."""
    return jnp.where(s <= filt, jnp.minimum(size, b * s + filt) - a * s,
                     (b - a) * filt + jnp.maximum(0, jnp.minimum(filt, size - b * s)))


def _spread(a, b, s, out, size):
    """Input coordinates filter offsets ``a..b`` touch over ``out`` outputs at stride ``s``."""
    n = b - a + 1
    return jnp.where(n >= s, jnp.minimum(size, b + s * (out - 1) + 1) - a,
                     n * jnp.minimum(out, cdiv(jnp.maximum(size - b, 0), s)))


def _union2d(r0, c0, r1, c1, ncols, my, mx):
    """Distinct cells of the union over index cells (r0, c0..ncols-1), rows r0+1..r1-1 (all columns),
    (r1, 0..c1) (or (r0, c0..c1) when r0 == r1), each row index covering ``my`` input rows and each
    column index ``mx`` input columns."""
    xf = mx(0, ncols - 1)
    x_first, x_last = mx(c0, ncols - 1), mx(0, c1)
    x_both = jnp.minimum(x_first + x_last, xf)
    single = my(r0, r0) * mx(c0, jnp.maximum(c1, c0))
    y0, y1, y01 = my(r0, r0), my(r1, r1), my(r0, r1)
    both = y0 + y1 - y01
    two = (y0 - both) * x_first + (y1 - both) * x_last + both * x_both
    lo, hi = r0 + 1, jnp.maximum(r1 - 1, r0 + 1)
    yfull = my(lo, hi)
    many = yfull * xf + (my(r0, hi) - yfull) * x_first + (my(lo, r1) - yfull) * x_last
    return jnp.where(r1 == r0, single, jnp.where(r1 == r0 + 1, two, many))


def _os_words(g, p0, p1):
    """Distinct input words of output pixels ``p0..p1 - 1`` (all of K)."""
    last = p1 - 1
    wo = g["wo"]
    my = lambda a, b: _cover(a, b, g["sh"], g["fh"], g["h"])  # noqa: E731
    mx = lambda a, b: _cover(a, b, g["sw"], g["fw"], g["w"])  # noqa: E731
    return _union2d(p0 // wo, p0 % wo, last // wo, last % wo, wo, my, mx) * g["c"]


def _ws_words(g, k0, k1):
    """Distinct input words of im2col columns ``k0..k1 - 1`` (all output pixels)."""
    ch, fw = g["c"], g["fw"]
    q0, r0 = k0 // ch, k0 % ch
    q1, r1 = k1 // ch, k1 % ch
    my = lambda a, b: _spread(a, b, g["sh"], g["ho"], g["h"])  # noqa: E731
    mx = lambda a, b: _spread(a, b, g["sw"], g["wo"], g["w"])  # noqa: E731

    def positions(ps, pe):  # filter positions ps..pe (row-major), one channel
        ps_c, pe_c = jnp.maximum(ps, 0), jnp.maximum(pe, ps)
        u = _union2d(ps_c // fw, ps_c % fw, pe_c // fw, pe_c % fw, fw, my, mx)
        return jnp.where(pe >= ps, u, 0)

    lo, hi = jnp.minimum(r0, r1), jnp.maximum(r0, r1)
    mid = jnp.where(r0 <= r1, positions(q0, q1), positions(q0 + 1, q1 - 1))
    return lo * positions(q0 + 1, q1) + (hi - lo) * mid + (ch - hi) * positions(q0, q1 - 1)


# --------------------------------------------------------------------------------------------------
# The model for one layer on one array (vmapped over the batch)
# --------------------------------------------------------------------------------------------------


def _ifmap_walk(dataflow: AbstractDataflow, g, R, C, rf, folds, w):
    """CALC-mode DRAM reads of an ifmap that does not fit: the estimator's tumbling window of ``w``
    words followed fold by fold.

    A fold's new words are those of its im2col block that the folds since the window's last reset have
    not touched (a closed-form union of the blocks' convolution windows). After a reset the next fold
    pays all its words (a fold streams its block pixel by pixel, so the words it left in the window
    are not the ones the next fold starts with), and a reset inside a fold costs the words
    the fold re-uses from the output rows just before it (``extra``: the first output row's words
    less the steady per-row increment), which the emptied window has lost; counted only for folds
    whose new words alone exceed the window.
    """
    dt = int_dtype()
    zero = jnp.zeros((), dt)
    m, k, wo = g["m"], g["k"], g["wo"]

    def os_words(p0, p1):
        return _os_words(g, p0, jnp.minimum(p1, m))

    def ws_words(k0, k1, rows=None):
        h = g if rows is None else dict(g, ho=jnp.minimum(rows, g["ho"]))
        return _ws_words(h, k0, jnp.minimum(k1, k))

    os_extra = 2 * os_words(0, wo) - os_words(0, 2 * wo)
    ws_extra = 2 * ws_words(0, R, 1) - ws_words(0, R, 2)
    if isinstance(dataflow, OutputStationary):  # row folds: ranges of output pixels, all of K
        def words(a, b, fc):
            return os_words(a * R, b * R)
        extra, sweep = os_extra, rf
    elif isinstance(dataflow, WeightStationary):  # row folds: ranges of K, all output pixels
        def words(a, b, fc):
            return ws_words(a * R, b * R)
        extra, sweep = ws_extra, rf
    else:
        # input stationary: fold (fr, fc) pins the block (K range fr, pixel range fc), fc-major. With
        # one row fold the blocks are consecutive pixel ranges (as OS row folds); else a block's words
        # are its K range's words over all pixels scaled to its share of the pixels.
        def words(a, b, fc):
            used = jnp.minimum(C, m - fc * C)
            share = used.astype(jnp.float32) / m.astype(jnp.float32)  # float: no int32 overflow
            block = jnp.ceil(ws_words(a * R, b * R).astype(jnp.float32) * share).astype(dt)
            return jnp.where(rf == 1, os_words(a * C, b * C), block)
        extra = jnp.where(rf == 1, os_extra, ws_extra)
        sweep = jnp.where(rf == 1, folds, rf)
    extra = jnp.maximum(extra, 0)

    # After a reset inside fold f, the next fold pays all its words. A pixel-major stream (WS, IS
    # blocks) then starts the window afresh; OS's diagonal stream keeps fold f as the window's first
    # fold, so later folds still re-use it (measured: closer to SCALE-Sim than an empty window or a
    # window that kept fold f's share).
    keep = isinstance(dataflow, OutputStationary)

    def body(state):
        i, a, c, total, prev, fresh, alone = state
        pos = i % sweep
        unit = jnp.where(rf == 1, i, pos) if isinstance(dataflow, InputStationary) else pos
        first = pos == 0
        a = jnp.where(first, unit, a)
        prev = jnp.where(first, 0, prev)
        own = words(unit, unit + 1, i // rf)
        cur = words(a, unit + 1, i // rf)
        new = jnp.where(fresh > 0, own, cur - prev)
        c2 = c + new
        resets = c2 // w
        refetch = jnp.where(new >= w, resets * extra, 0)  # only a fold larger than the window
        reset = resets > 0
        if keep:
            a2, prev2, fresh2 = jnp.where(reset, unit, a), jnp.where(reset, own, cur), reset.astype(dt)
        else:
            a2, prev2, fresh2 = jnp.where(reset, unit + 1, a), jnp.where(reset, 0, cur), zero
        return i + 1, a2, (c2 + refetch) % w, total + new + refetch, prev2, fresh2, alone + own

    # the sweeps of the column folds repeat one another: walk one and scale (IS: one column fold of
    # full width, scaled to all the pixels)
    state = lax.while_loop(lambda st: st[0] < sweep, body, (zero,) * 7)
    total, alone = state[3], state[6]
    if isinstance(dataflow, InputStationary):
        # a sweep smaller than the window is cut by the resets of the sweeps around it: each reset
        # re-reads the sweep's re-used words (at most the sweep), one reset per w words read
        f = total.astype(jnp.float32)
        lost = jnp.minimum(total, alone - total).astype(jnp.float32)
        f = jnp.where(total < w, f / (1.0 - lost / w.astype(jnp.float32)), f)
        scaled = (f * m.astype(jnp.float32) / jnp.minimum(C, m).astype(jnp.float32)).astype(dt)
        return jnp.where(rf == 1, total, scaled)
    return total * (folds // rf)


def _one(m, n, k, rows, cols, uif, gh, gw, gfh, gfw, gc, gsh, gsw, gho, gwo, sram_kb, word, bws,
         dataflow: AbstractDataflow, user: bool):
    """All memory counts for one (layer, array) pair; scalars in, dict of scalars out."""
    dt = int_dtype()
    R, C = rows, cols
    sr, sc, t = dataflow.spatiotemporal(m, n, k)
    rf, cf = cdiv(sr, R), cdiv(sc, C)
    folds = rf * cf
    words = (sram_kb * 1024) // word  # per SRAM: (ifmap, filter, ofmap)
    (kind_i, region_i), (kind_f, region_f) = _LAYOUT[type(dataflow)]
    unique = (uif, k * n)
    r_last, c_last = sr - (rf - 1) * R, sc - (cf - 1) * C
    r0, c0 = jnp.minimum(R, sr), jnp.minimum(C, sc)

    def geom(fc, fr):
        r = jnp.minimum(R, sr - fr * R)
        c = jnp.minimum(C, sc - fc * C)
        return dict(R=R, C=C, sr=sr, sc=sc, t=t, m=m, n=n, k=k, fr=fr, fc=fc, r=r, c=c)

    zero = jnp.zeros((), dt)
    cgeo = dict(h=gh, w=gw, fh=gfh, fw=gfw, c=gc, sh=gsh, sw=gsw, ho=gho, wo=gwo, m=m, k=k)
    if not user:
        # --- CALC: the estimator's tumbling window of W words -----------------------------------
        W = jnp.maximum(50 * (words[:2] // 100), 1)
        reads = []
        for op, kind in enumerate((kind_i, kind_f)):
            u, w = unique[op], W[op]
            if op == 0 and kind in ("cyclic", "single"):
                reads.append(jnp.where(u < w, u, _ifmap_walk(dataflow, cgeo, R, C, rf, folds, w)))
            elif kind == "cyclic":
                reads.append(jnp.where(u < w, u, cf * u))
            elif kind == "single":
                reads.append(u)
            else:  # "repeat": follow the window fold by fold
                def body(state, u=u, w=w):
                    i, c, s, total = state
                    fc, fr = i // rf, i % rf
                    size = k * jnp.minimum(C, sc - fc * C)
                    r_room = w - c % w
                    first = fr == 0
                    partial = (~first) & (s > 0) & (s < r_room)
                    full = first | ((s > 0) & ~partial)
                    miss = jnp.where(full, size, jnp.where(partial, s, 0))
                    c2 = c + miss
                    s_full = jnp.where(c2 // w > c // w, size - c2 % w, 0)
                    s2 = jnp.where(full, s_full, 0)
                    return i + 1, c2, s2, total + miss

                state = lax.while_loop(lambda st: st[0] < folds, body, (zero, zero, zero, zero))
                reads.append(state[3])
        n_prefetch = (zero, zero)
        stall = zero
        pf_cycles = (zero, zero)
    else:
        # --- USER: the read buffers' window walk over 100 sets per SRAM ------------------------
        bw_r = bws[:2]
        E = cdiv(words[:2], 100)
        active = cdiv(words[:2], 2)
        pref = words[:2] - active
        valid = (m * k, k * n)
        nsets = tuple(valid[o] // E[o] + 1 for o in range(2))
        A = tuple(jnp.minimum(cdiv(active[o], E[o]), nsets[o]) for o in range(2))
        P = tuple(jnp.maximum(jnp.minimum(cdiv(pref[o], E[o]), nsets[o] - A[o]), 1) for o in range(2))
        regions = (region_i, region_f)
        kinds = (kind_i, kind_f)

        def adv(x, a, o):
            inside = (x - a) % nsets[o] < A[o]
            d = (x - a - A[o] + 1) % nsets[o]
            return jnp.where(inside, 0, cdiv(d, P[o]))

        def body(state):
            i, a0, n0, a1, n1 = state
            g = geom(i // rf, i % rf)
            out = []
            for o, (a, cnt) in enumerate(((a0, n0), (a1, n1))):
                start, size, _ = regions[o](g)
                lo, hi = start // E[o], (start + size - 1) // E[o]
                if kinds[o] == "single":
                    # the pinned operand's tile is demanded bottom row first (SCALE-Sim flips it):
                    # the window first slides to the tile's last set, and may then have to go the
                    # whole way round the buffer for its first one
                    lo, hi = hi, lo
                k1 = adv(lo, a, o)
                a = (a + k1 * P[o]) % nsets[o]
                k2 = adv(hi, a, o)
                a = (a + k2 * P[o]) % nsets[o]
                fits = A[o] >= nsets[o]
                out += [a, cnt + jnp.where(fits, 0, k1 + k2)]
            return (i + 1, *out)

        state = lax.while_loop(lambda st: st[0] < folds, body, (zero,) * 5)
        n_prefetch = (state[2], state[4])
        fetch = tuple(regions[o](geom(zero, zero))[2] for o in range(2))
        line_words = tuple(cdiv(pref[o], bw_r[o]) * bw_r[o] for o in range(2))
        first = tuple(jnp.minimum(cdiv(active[o], bw_r[o]), cdiv(fetch[o], bw_r[o])) * bw_r[o]
                      for o in range(2))
        reads = [first[o] + n_prefetch[o] * line_words[o] for o in range(2)]
        # every slide takes ceil(prefetch / bw) + 1 cycles, back to back
        pf_cycles = tuple(n_prefetch[o] * (cdiv(pref[o], bw_r[o]) + 1) for o in range(2))

    # --- ofmap: every word written to the SRAM is drained to DRAM ---------------------------------
    ofmap_real = dataflow.sram_accesses(sr, sc, t, rf, cf)[2]
    bw_o = bws[2] if user else C
    drain = words[2] - cdiv(words[2], 2)
    first_fill = (drain + 1) % bw_o
    # the first drain pushes out a partial line whose padding SCALE-Sim counts as written
    pad = jnp.where((ofmap_real > drain) & (first_fill > 0), bw_o - first_fill, 0)
    ofmap_writes = ofmap_real + pad

    compute = folds * dataflow.fold_cycles(R, C, t) - 1  # SCALE-Sim's Total Cycles in CALC mode
    if user:
        # the ofmap SRAM only drains (and can stall the array) once its active half has filled
        ofmap_cycles = cdiv(jnp.maximum(ofmap_real - drain, 0), bw_o)
        stall = jnp.maximum(0, jnp.maximum(jnp.maximum(pf_cycles[0], pf_cycles[1]), ofmap_cycles)
                            - compute)
    cycles = compute + stall

    # --- start/stop cycles ----------------------------------------------------------------------
    (s_i, s_f, s_o), (e_i, e_f, e_o) = _sram_windows(dataflow, R, C, t, r0, c0, r_last, c_last, folds)
    sram_start = (s_i, s_f, s_o)
    sram_stop = (e_i + stall, e_f + stall, e_o + stall)
    if user:
        dram_start = tuple(-cdiv(first[o], bw_r[o]) for o in range(2))
        dram_stop = tuple(jnp.where(n_prefetch[o] > 0, pf_cycles[o] - 1, -1) for o in range(2))
    else:
        E = words[:2] // 100
        W = jnp.maximum(50 * E, 1)
        first_req = (s_i - 1, s_f - 1)
        dram_start = tuple(jnp.where(reads[o] >= W[o], first_req[o] - cdiv(W[o], 10),
                                     -cdiv(cdiv(reads[o], jnp.maximum(E[o], 1)) * E[o], 10))
                           for o in range(2))
        # the last prefetch ends one cycle after the last window reset, taken as evenly spread
        last_reset = (reads[0] // W[0]) * W[0], (reads[1] // W[1]) * W[1]
        span = (sram_stop[0] - sram_start[0], sram_stop[1] - sram_start[1])
        dram_stop = tuple(jnp.where(reads[o] >= W[o],
                                    sram_start[o] + (span[o] * last_reset[o]) // jnp.maximum(reads[o], 1),
                                    -1) for o in range(2))
    rem = jnp.where(ofmap_real > drain, (ofmap_real - drain - 1) % drain + 1, ofmap_real)
    o_stop = cycles + jnp.maximum(cdiv(rem, bw_o) - 1, 0)
    o_start = jnp.where(ofmap_real > drain, s_o + cdiv(drain, jnp.maximum(C, 1)), cycles)
    dram_start = (*dram_start, o_start)
    dram_stop = (*dram_stop, o_stop)
    incl = o_stop - jnp.minimum(dram_start[0], dram_start[1])
    return dict(stall=stall, cycles=cycles, incl=incl, ifmap=reads[0], filter=reads[1],
                ofmap=ofmap_writes, sram_start=jnp.stack(sram_start), sram_stop=jnp.stack(sram_stop),
                dram_start=jnp.stack(dram_start), dram_stop=jnp.stack(dram_stop))


def memory_model(m, n, k, rows, cols, ifmap_words, memory: Memory, dataflow: AbstractDataflow,
                 sram_accesses, compute_cycles, *, geometry: ConvGeometry | None = None) -> MemoryResult:
    """The memory counts of a batch of layers on a batch of arrays (arrays broadcast together).

    Args:
        m, n, k, rows, cols: broadcastable integer arrays (layers x arrays, as in ``simulate``).
        ifmap_words: distinct ifmap words per layer (``M K`` for a GEMM; the convolution's touched
            input for a convolution), broadcastable with ``m``.
        memory: the :class:`Memory`.
        dataflow: the dataflow.
        sram_accesses: ``(ifmap reads, filter reads, ofmap writes)`` of the SRAMs (for the average
            SRAM bandwidths).
        compute_cycles: the stall-free cycles the result reports (stalls are added to them).
        geometry: the layers' :class:`ConvGeometry` (broadcastable with ``m``), for the re-use of
            overlapping convolution windows; ``None``: GEMMs.

    Returns:
        A :class:`MemoryResult`.
    """
    dt = int_dtype()
    user = memory.mode == "USER"
    sram_kb = jnp.stack([memory.ifmap_sram_kb, memory.filter_sram_kb, memory.ofmap_sram_kb])
    bws = (jnp.stack([memory.ifmap_bandwidth, memory.filter_bandwidth, memory.ofmap_bandwidth]) if user
           else jnp.ones(3, dt))
    if geometry is None:  # SCALE-Sim's GEMM input: an M x K ifmap under a 1 x K filter
        one = jnp.ones_like(m)
        geo = (m, k, one, k, one, one, one, m, one)
    else:
        geo = (geometry.ifmap_height, geometry.ifmap_width, geometry.filter_height, geometry.filter_width,
               geometry.channels, geometry.stride_h, geometry.stride_w, geometry.ofmap_height,
               geometry.ofmap_width)
    args = (m, n, k, rows, cols, ifmap_words, *geo)
    shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in args))
    flat = [jnp.broadcast_to(jnp.asarray(x, dt), shape).reshape(-1) for x in args]
    fn = lambda *a: _one(*a, sram_kb, memory.word_bytes, bws, dataflow, user)  # noqa: E731
    out = jax.vmap(fn)(*flat)
    out = {key: v.reshape(shape + v.shape[1:]) for key, v in out.items()}
    fdt = backend.default_dtype()
    cycles = jnp.broadcast_to(compute_cycles, shape) + out["stall"]
    cyc = cycles.astype(fdt)
    sram_bw = jnp.stack([jnp.broadcast_to(x, shape).astype(fdt) / cyc for x in sram_accesses], axis=-1)
    dram = jnp.stack([out["ifmap"], out["filter"], out["ofmap"]], axis=-1).astype(fdt)
    dram_bw = dram / (out["dram_stop"] - out["dram_start"] + 1).astype(fdt)
    return MemoryResult(
        stall_cycles=out["stall"], cycles=cycles, cycles_incl_prefetch=out["incl"],
        ifmap_dram_reads=out["ifmap"], filter_dram_reads=out["filter"], ofmap_dram_writes=out["ofmap"],
        sram_start=out["sram_start"], sram_stop=out["sram_stop"], dram_start=out["dram_start"],
        dram_stop=out["dram_stop"], sram_bandwidth=sram_bw, dram_bandwidth=dram_bw,
    )


# --------------------------------------------------------------------------------------------------
# Distinct ifmap words of convolutions (what the DRAM reads of a fitting ifmap are)
# --------------------------------------------------------------------------------------------------


def _touched(size: int, filt: int, stride: int, out: int) -> int:
    """Input rows (or columns) that SCALE-Sim's ``out`` windows of ``filt`` at ``stride`` touch."""
    if stride <= filt:
        return min(size, (out - 1) * stride + filt)
    return (out - 1) * filt + min(filt, size - (out - 1) * stride)


def _touched_jnp(size, filt, stride, out):
    return jnp.where(stride <= filt, jnp.minimum(size, (out - 1) * stride + filt),
                     (out - 1) * filt + jnp.minimum(filt, size - (out - 1) * stride))


def geometry_ifmap_words(g: ConvGeometry) -> Int[Array, "..."]:
    """Distinct ifmap words of the convolutions of a :class:`ConvGeometry` (traceable; see
    :func:`conv_ifmap_words`)."""
    return (_touched_jnp(g.ifmap_height, g.filter_height, g.stride_h, g.ofmap_height)
            * _touched_jnp(g.ifmap_width, g.filter_width, g.stride_w, g.ofmap_width) * g.channels)


def conv_ifmap_words(ifmap_height: int, ifmap_width: int, filter_height: int, filter_width: int,
                     channels: int, stride: int = 1) -> int:
    """Distinct ifmap words a convolution reads as SCALE-Sim lowers it (its windows, ceil-mode outputs).

    Example:
        >>> conv_ifmap_words(16, 16, 3, 3, 8)     # every input word
        2048
        >>> conv_ifmap_words(9, 9, 2, 2, 1, 3)    # stride > filter: gaps are never read
        36
    """
    ho = (ifmap_height - filter_height + stride - 1) // stride + 1
    wo = (ifmap_width - filter_width + stride - 1) // stride + 1
    return (_touched(ifmap_height, filter_height, stride, ho)
            * _touched(ifmap_width, filter_width, stride, wo) * channels)


def topology_ifmap_words(text: str, *, gemm: bool | None = None) -> list[int]:
    """Distinct ifmap words per layer of a SCALE-Sim topology CSV (in the order of :func:`parse_topology`).

    GEMM rows give ``M K``; convolution rows :func:`conv_ifmap_words`; a depthwise (``DP``) row one
    entry per channel, as the reader splits it.
    """
    from ._workload import _CONV_COLUMNS, _looks_gemm, _split_row

    lines = text.splitlines()
    header = _split_row(lines[0]) if lines else []
    is_gemm = _looks_gemm(header) if gemm is None else bool(gemm)
    out: list[int] = []
    for line in lines[1:]:
        fields = _split_row(line)
        if not fields or fields == [""]:
            continue
        if is_gemm:
            m, _, k = (int(v) for v in fields[1:4])
            out.append(m * k)
            continue
        h, w, r, s, c, _, stride = (int(v) for v in fields[1:len(_CONV_COLUMNS) + 1])
        if "DP" in fields[0]:
            out += [conv_ifmap_words(h, w, r, s, 1, stride)] * c
        else:
            out.append(conv_ifmap_words(h, w, r, s, c, stride))
    return out
