"""The memory system of SCALE-Sim v3: double-buffered SRAMs in front of DRAM, in closed form or replayed.

SCALE-Sim puts one double-buffered SRAM in front of each operand (``scalesim.memory``): half of each
SRAM serves the array while the other half is filled from (ifmap, filter) or drained to (ofmap) DRAM.
It simulates every address. Two models of it here, chosen with ``Memory(..., dram_model=...)``:

**``"trace"``: SCALE-Sim's algorithm on SCALE-Sim's address streams (exact).** The operand matrices
(the im2col ifmap with ``-1`` where a ceil-mode window reaches past the input, the filter), the
per-fold demand order of each dataflow (a streamed operand enters skewed, ``skew_matrix``; a pinned
tile is demanded a row per cycle, last row first) and the prefetch orders (``create_*_prefetch_mat``,
diagonal or row-major) are built with NumPy index arithmetic, and SCALE-Sim's buffers are replayed on
them:

* CALC bandwidth mode (``ReadBufferEstimateBw``): a word is read from DRAM when it is not among the
  words read since the estimator's last reset; the window resets after every ``W = 50 floor(words /
  100)`` reads. Followed fold by fold with a window id stamped on every word read: a fold too small to
  fill the window adds its tile's unstamped words (one gather); a fold in which the window resets is
  replayed in service order (each element's previous occurrence in the fold from one stable sort,
  cached for tiles that several folds read); an operand with all words distinct (filters, GEMM
  inputs) places its resets arithmetically.
* USER bandwidth mode (``read_buffer``): the prefetch order cut into sets of ``ceil(words / 100)``
  valid words; the active window holds ``A`` sets and slides ``P`` sets on a miss until it holds the
  word (a vectorised hit test over chunks of the demand stream finds each miss; the slides follow from
  the sets holding the word, duplicates included); each slide reads ``ceil(P words / bw) * bw`` words.
* The cycles (SCALE-Sim's ``service_memory_requests``): each demand line waits for the prefetches its
  misses started (with SCALE-Sim's accounting of the wait), the ofmap ``write_buffer`` drains
  ``ceil(half / bw)`` lines when its active half fills and stalls the array when it is full; the
  array's stall per line is the largest of the three. Followed event to event (misses, drains, full
  buffer), with the lines in between in bulk.

It runs on the host (NumPy through ``jax.pure_callback``: it works under ``jax.jit`` and ``jax.vmap``,
is not differentiable, and ``ifmap_words`` overrides are ignored) and caches each (layer, array,
memory) it has seen. Cost, ResNet-18 (21 layers) on a 32x32 array with 64 kB SRAMs: 0.25-0.4 s of
CPU per configuration in CALC mode (plus about 0.5 s to compile the call), 2-4 s in USER mode at 10
words/cycle; SCALE-Sim 3.0.0 took 353 s (OS, WS) and about 450 s (IS) of CPU per CALC configuration
on the same (shared) machine: 850-1900x more, 400-650x counting the compilation.

**``"closed-form"`` (default): fold-level formulas, traceable, microseconds per layer.**

* CALC mode: with ``U`` an operand's distinct words, an operand with ``U < W`` is read once (``U``
  words). A larger ifmap is followed through the window fold by fold (a ``lax.while_loop`` over one
  column fold's sweep, scaled to all of them): each fold streams a block of the im2col matrix (OS: a
  range of output pixels, WS: a range of ``K``, IS: a ``K`` range x pixel range block), and its new
  words are the words of its block that the folds since the last reset have not touched, counted in
  closed form from the :class:`ConvGeometry` (the union of the blocks' convolution windows; exact for
  stride 1, approximate for strided windows and IS blocks). GEMMs are convolutions without overlapping
  windows, for which this reduces to the sweep count. A tile re-used by consecutive folds (the filter
  under output stationary) is followed through the counter fold by fold.
* USER mode: the read buffers' window walk followed fold by fold, each fold touching a contiguous
  range of sets; stalls are the DRAM time that the compute time cannot hide.
* The ofmap SRAM drains every word written to it: DRAM writes are the ofmap SRAM writes, plus the
  padding of the first partially filled drain line.

Measured against SCALE-Sim 3.0.0: the ``mem_*`` cases of ``tests/data/scalesim_v3_reference.json``
(a 16x16x8 3x3 convolution and a 96x80x64 GEMM on 8x8, 16x16, 32x32, 4x256, 256x4, 2x512 arrays, all
three dataflows, 64 kB and 2 kB SRAMs; a stride-2 3x3 convolution with a ceil-mode edge and a stride-2
1x1 one on the same arrays with 2 kB; 21 USER-mode runs with 1-10 words/cycle), and ResNet-18 on a
32x32 array with 64 kB SRAMs (CALC mode, every dataflow). Relative error of the DRAM counts:

======================================  ==================  ==================  ==================
case                                    OS                  WS                  IS
======================================  ==================  ==================  ==================
closed form: 3x3 conv, 2 kB, ifmap      -3.8% .. +11.7%     -4.7% .. +2.2%      -8.3% .. +18.7%
closed form: s2 convs, 2 kB, ifmap      -36% .. +7.3%       -20% .. +7.5%       -7.3% .. +81%
closed form: ResNet-18, 64 kB, ifmap    -14% .. +2.7%       0% .. +30%          -14% .. +84%
closed form: USER, read operands        -96% .. 0%          -67% .. 0%          -95% .. +300%
closed form: USER, stall cycles         -100% .. -4%        -94% .. -21%        -28% .. +55%
trace: every case above                 exact               exact               exact
======================================  ==================  ==================  ==================

The closed form is exact on the filter reads and ofmap writes in CALC mode, on every GEMM and on
every convolution whose ifmap fits the SRAM; its ``Total Cycles (incl. prefetch)`` and DRAM start/stop
cycles approximate the drain tail and the estimator's last reset. The trace model also reproduces the
stall cycles, ``Total Cycles`` (with and without the prefetch), every DRAM start/stop cycle and so the
average DRAM bandwidths of all the runs above (ResNet-18: all 21 layers, every dataflow), and of 45
random small convolutions (strides 1-3, filters up to 4x4, arrays from 1x1 to 32x33, 1-3 kB SRAMs,
CALC and USER at 1-10 words/cycle) run live. Neither model covers sparsity or custom layouts.
"""

from __future__ import annotations

import functools
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

# how `Memory` counts DRAM traffic: fold-level closed forms (traceable) or a replay of SCALE-Sim's streams
DRAM_MODELS = ("closed-form", "trace")


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
        dram_model: how the DRAM traffic is counted (static): ``"closed-form"`` (default; fold-level
            formulas, traceable, microseconds per layer) or ``"trace"`` (SCALE-Sim's operand
            address streams replayed through its buffers on the host: exact DRAM reads, writes, stalls
            and DRAM start/stop cycles, milliseconds to a second per layer; see the module docstring).

    Raises:
        ValueError: a non-positive size or bandwidth, only some of the bandwidths given, or an
            unknown ``dram_model``.

    Example:
        >>> from hwsim import systolic
        >>> mem = systolic.Memory(64, 64, 64)                       # CALC mode
        >>> mem.mode, systolic.Memory(64, 64, 64, ifmap_bandwidth=10, filter_bandwidth=10,
        ...                           ofmap_bandwidth=10).mode
        ('CALC', 'USER')
        >>> systolic.Memory(2, 2, 2, dram_model="trace").dram_model
        'trace'
    """

    ifmap_sram_kb: Int[Array, ""]
    filter_sram_kb: Int[Array, ""]
    ofmap_sram_kb: Int[Array, ""]
    word_bytes: Int[Array, ""]
    ifmap_bandwidth: Int[Array, ""] | None
    filter_bandwidth: Int[Array, ""] | None
    ofmap_bandwidth: Int[Array, ""] | None
    dram_model: str = eqx.field(static=True)

    def __init__(self, ifmap_sram_kb=256, filter_sram_kb=256, ofmap_sram_kb=128, *, word_bytes=1,
                 ifmap_bandwidth=None, filter_bandwidth=None, ofmap_bandwidth=None,
                 dram_model="closed-form"):
        if dram_model not in DRAM_MODELS:
            raise ValueError(f"`dram_model` must be one of {DRAM_MODELS}, got {dram_model!r}")
        self.dram_model = dram_model
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
         dataflow: AbstractDataflow, user: bool, closed: bool = True):
    """All memory counts for one (layer, array) pair; scalars in, dict of scalars out. ``closed=False``
    leaves the read counts' fold walks out (the trace model replaces them)."""
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
            if not closed:
                reads.append(zero)
            elif op == 0 and kind in ("cyclic", "single"):
                walk = _ifmap_walk(dataflow, cgeo, R, C, rf, folds, w)
                if kind == "single":
                    # a pinned ifmap whose im2col words are all distinct (GEMMs, convolutions without
                    # overlapping windows) is demanded once per word: no window can re-read it
                    walk = jnp.where(u == m * k, u, walk)
                reads.append(jnp.where(u < w, u, walk))
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

        state = lax.while_loop(lambda st: st[0] < folds, body, (zero,) * 5) if closed else (zero,) * 5
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
    # The first drain starts at the (drain + 1)-th word, closing a partial line of (drain + 1) % bw
    # words, and takes ceil(drain / bw) lines; SCALE-Sim discounts the padding of a drain's last line
    # only. When bw divides drain the one-word partial line is left over and drained inside the next
    # batch, its bw - 1 padding counted as written; otherwise it ends the first drain and costs nothing.
    pad = jnp.where((ofmap_real > drain) & (drain % bw_o == 0), bw_o - 1, 0)
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
    closed = memory.dram_model == "closed-form"
    fn = lambda *a: _one(*a, sram_kb, memory.word_bytes, bws, dataflow, user, closed)  # noqa: E731
    out = jax.vmap(fn)(*flat)
    if memory.dram_model == "trace":
        if type(dataflow) not in _DF_NAMES:
            raise ValueError(f"dram_model='trace' replays SCALE-Sim's OS, WS and IS streams only, got "
                             f"{type(dataflow).__name__}; use dram_model='closed-form'")
        words = (sram_kb * 1024) // memory.word_bytes
        out = _trace_override(out, flat, words, bws, dataflow, user)
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
# The "trace" DRAM model: SCALE-Sim's address streams replayed through its buffers (host-side NumPy)
# --------------------------------------------------------------------------------------------------


def _im2col(h, w, fh, fw, c, sh, sw, ho, wo):
    """SCALE-Sim's ifmap operand matrix (``operand_matrix.calc_ifmap_elem_addr``): ``M x K`` word
    addresses, ``-1`` where a ceil-mode window reaches past the input."""
    dt = np.int32 if h * w * c < 2**31 else np.int64
    oy, ox = np.divmod(np.arange(ho * wo, dtype=dt), wo)
    dy, rem = np.divmod(np.arange(fh * fw * c, dtype=dt), fw * c)
    dx, ch = np.divmod(rem, c)
    X = ((oy * sh * w + ox * sw) * c)[:, None] + ((dy * w + dx) * c + ch)[None, :]
    # only the last output rows/columns of a ceil-mode convolution reach past the input
    for start, d, size in ((oy * sh, dy, h), (ox * sw, dx, w)):
        rows = np.flatnonzero(start + int(d.max()) >= size)
        if rows.size:
            X[rows] = np.where(start[rows, None] + d[None, :] >= size, -1, X[rows])
    return X


def _valid_pairs(size, filt, stride, out):
    """Pairs (output, filter offset) whose input coordinate lies inside ``size``."""
    o = np.arange(out)
    return int(np.clip(size - o * stride, 0, filt).sum())


class _Operand:
    """One read operand of a layer on an ``R x C`` array as SCALE-Sim's compute module feeds it.

    Fold ``f = fc * rf + fr`` (column folds outer) reads ``tile(fc, fr)``. A streamed operand's tile is
    ``lines x depth``: element ``(j, u)`` enters array line ``j`` at cycle ``f L + lead + u + j``
    (``skew_matrix``). A pinned operand's tile is ``rows x lines``, demanded a row per cycle, last row
    first (SCALE-Sim flips it): row ``i`` at cycle ``f L + R - 1 - i``. ``reuse(fc, fr)`` names a tile
    that other folds read too: the tile depends on ``fr`` only (``by="fr"``) or on ``fc`` only."""

    def __init__(self, tile, pinned, by, lead, R, rf, cf, L, space, complete):
        self.tile, self.pinned, self.by, self.lead = tile, pinned, by, lead
        self.R, self.rf, self.cf, self.L, self.space = R, rf, cf, L, space
        self.complete = complete  # no -1 entries

    def reuse(self, fc, fr):
        """The name of the tile fold ``(fc, fr)`` reads when other folds read it too, else ``None``."""
        return None if self.by is None else (fr if self.by == "fr" else fc)

    def again(self, fc, fr):
        """Whether a later fold reads the tile of fold ``(fc, fr)``."""
        if self.by is None:
            return False
        return fc < self.cf - 1 if self.by == "fr" else fr < self.rf - 1

    def fold(self, fc, fr):
        """Addresses and cycles of fold ``(fc, fr)`` in SCALE-Sim's service order (cycle, then line)."""
        tile = self.tile(fc, fr)
        base = (fc * self.rf + fr) * self.L
        if self.pinned:
            addr = tile[::-1].reshape(-1)
            cyc = base + self.R - tile.shape[0] + np.repeat(np.arange(tile.shape[0]), tile.shape[1])
        else:
            # skew without gathers: in a row-major n_l x (depth + n_l) buffer holding the tile's rows,
            # line j's element u sits at flat index j (depth + n_l - 1) + (u + j)
            n_l, depth = tile.shape
            span = depth + n_l - 1
            buf = np.full((n_l, span + 1), -1, tile.dtype)
            buf[:, :depth] = tile
            addr = buf.reshape(-1)[:n_l * span].reshape(n_l, span).T.reshape(-1)
            cyc = np.repeat(base + self.lead + np.arange(span), n_l)
        keep = addr >= 0
        return addr[keep], cyc[keep]

    def stream(self):
        """The whole demand stream (all folds in order)."""
        parts = [self.fold(fc, fr) for fc in range(self.cf) for fr in range(self.rf)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _layout(df, X, N, R, C, space, complete):
    """The two read operands of a layer (``X``: its ``M x K`` ifmap addresses; the filter's are
    ``n K + k``) on an ``R x C`` array under dataflow ``df``, their prefetch matrices (SCALE-Sim's
    ``create_*_prefetch_mat``, built on demand: the matrix and whether it is fetched in diagonal
    order) and the fold geometry."""
    M, K = X.shape
    sr, sc, T = {"os": (M, N, K), "ws": (K, N, M), "is": (K, M, N)}[df]
    rf, cf = cdiv(sr, R), cdiv(sc, C)
    L = T + R + C - 2 if df == "os" else 2 * R + C + T - 2

    ydt = np.int32 if N * K < 2**31 else np.int64

    def yt(fc=None, fr=None):  # a block of the transposed filter operand matrix (filter n, row k: n K + k)
        n0 = 0 if fc is None else fc * C
        k0 = 0 if fr is None else fr * R
        n1 = N if fc is None else min(N, n0 + C)
        k1 = K if fr is None else min(K, k0 + R)
        return np.arange(n0, n1, dtype=ydt)[:, None] * K + np.arange(k0, k1, dtype=ydt)[None, :]

    sx, sy = space, K * N
    cx = complete
    rs = lambda fr: slice(fr * R, fr * R + R)  # noqa: E731
    cs = lambda fc: slice(fc * C, fc * C + C)  # noqa: E731
    geo = (R, rf, cf, L)
    if df == "os":
        ifm = _Operand(lambda fc, fr: X[rs(fr)], False, "fr", 0, *geo, sx, cx)
        fil = _Operand(lambda fc, fr: yt(fc=fc), False, "fc", 0, *geo, sy, True)
        pf = (lambda: (_blocks(X.T, rf, R, sr), True), lambda: (_blocks(yt().T, cf, C, sc), True))
    elif df == "ws":
        XT = np.ascontiguousarray(X.T)
        ifm = _Operand(lambda fc, fr: XT[rs(fr)], False, "fr", R, *geo, sx, cx)
        fil = _Operand(lambda fc, fr: yt(fc, fr).T, True, None, 0, *geo, sy, True)
        pf = (lambda: (_blocks(X, rf, R, sr), True), lambda: (_blocks(yt().T, cf, C, sc), False))
    else:
        ifm = _Operand(lambda fc, fr: X[cs(fc), rs(fr)].T, True, None, 0, *geo, sx, cx)
        fil = _Operand(lambda fc, fr: yt(fr=fr).T, False, "fr", R, *geo, sy, True)
        pf = (lambda: (_blocks(X.T, cf, C, sc), False), lambda: (_blocks(yt(), rf, R, sr), True))
    return (ifm, fil), pf, dict(sr=sr, sc=sc, T=T, rf=rf, cf=cf, L=L)


def _blocks(mat, folds, width, extent):
    """Column blocks of ``width`` of ``mat`` (the last padded with -1), stacked vertically."""
    pad = folds * width - extent
    m = np.concatenate([mat, np.full((mat.shape[0], pad), -1, mat.dtype)], axis=1) if pad else mat
    return m.reshape(m.shape[0], folds, width).transpose(1, 0, 2).reshape(folds * m.shape[0], width)


def _diag_order(rows, cols):
    """Position of element ``(i, j)`` of a ``rows x cols`` matrix in SCALE-Sim's diagonal prefetch order
    (anti-diagonals ``i + j = d`` in turn, each from its largest row down)."""
    d = np.arange(rows + cols - 1)
    lens = np.minimum(d, rows - 1) - np.maximum(0, d - cols + 1) + 1
    start = np.concatenate([[0], np.cumsum(lens)[:-1]])
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    dd = i + j
    return start[dd] + np.minimum(dd, rows - 1) - i


# --------------------------------------------------------------------------------------------------
# CALC mode: ReadBufferEstimateBw's tumbling window of distinct words
# --------------------------------------------------------------------------------------------------


def _prev_occurrence(addr):
    """Index of the previous occurrence of each element's value (``-1`` for the first)."""
    order = np.argsort(addr, kind="stable")
    sa = addr[order]
    prev = np.full(addr.shape[0], -1, np.int32 if addr.shape[0] < 2**31 else np.int64)
    same = sa[1:] == sa[:-1]
    prev[order[1:][same]] = order[:-1][same]
    return prev


def _calc_walk(op, W, unique):
    """DRAM reads of SCALE-Sim's CALC-mode estimator on one operand, and the cycle of its last window
    reset (``-1``: none).

    The estimator reads a word when it is not among the words read since its last reset, and resets
    after every ``W`` reads. Followed fold by fold with the id of the current window stamped on every
    word read: a fold too small to fill the window adds its tile's words not stamped with the current
    id; otherwise its stream is replayed in service order (a word is new where it is not stamped and
    does not occur earlier in the fold: its previous occurrence comes from one stable sort per tile),
    the resets falling on every ``W``-th new word. An operand whose words are all distinct (``unique``:
    filters, GEMM inputs) needs neither for a tile none of whose words is in the window: its first
    reset falls on its ``(W - count)``-th element and then every ``W``-th."""
    stamp = np.zeros(op.space, np.int32)
    owner = None if unique else np.empty(op.space, np.int64)
    wid, count, total, last = 1, 0, 0, None
    stamped = {}  # reused tile -> window id under which (some of) its words were stamped
    full = {}  # reused tile -> window id under which all its words were stamped
    replays = {}  # reused tile -> (stream in service order, previous occurrences)

    def replay(fc, fr, key):
        if key is not None and key in replays:
            return replays[key]
        addr = op.fold(fc, fr)[0]
        out = (addr, None if unique else _prev_occurrence(addr))
        if key is not None:
            replays[key] = out
        return out

    for fc in range(op.cf):
        for fr in range(op.rf):
            key = op.reuse(fc, fr)
            if key is not None and full.get(key) == wid:
                continue  # every word of the tile is in the window
            tile = op.tile(fc, fr)
            size = tile.size if op.complete else int(np.count_nonzero(tile >= 0))
            keep = not unique or op.again(fc, fr)  # whether later folds ask for these words
            fresh = unique and (key is None or stamped.get(key) != wid)
            if count + size < W:
                blk = tile.reshape(-1)
                if not op.complete:
                    blk = blk[blk >= 0]
                new = blk if fresh else blk[stamp[blk] != wid]
                if unique or not new.size:
                    nd = new.size
                else:
                    idx = np.arange(new.size)
                    owner[new] = idx
                    nd = int(np.count_nonzero(owner[new] == idx))  # one survivor per distinct word
                count += nd
                total += nd
                if keep:
                    stamp[new] = wid
                if key is not None:
                    stamped[key] = full[key] = wid
                continue
            need = W - count
            if fresh:
                p, n_f = need - 1, size
            else:
                addr, prev = replay(fc, fr, key)
                n_f = addr.shape[0]
                miss = stamp[addr] != wid
                if not unique:
                    miss &= prev < 0
                pos = np.flatnonzero(miss)
                if pos.size < need:  # no reset after all
                    count += pos.size
                    total += pos.size
                    if keep:
                        stamp[addr[pos]] = wid
                    if key is not None:
                        stamped[key] = full[key] = wid
                    continue
                p = int(pos[need - 1])
            total += need
            wid, s, last = wid + 1, p + 1, (fc, fr, p)
            if unique:  # after a reset every element is new
                extra = (n_f - s) // W
                total += n_f - s
                wid += extra
                if extra:
                    last = (fc, fr, s - 1 + extra * W)
                s += extra * W
                count = n_f - s
            else:
                while True:
                    q, c = _scan(prev, s, W)
                    if q < 0:
                        count = c
                        total += c
                        break
                    total += W
                    wid, s, last = wid + 1, q + 1, (fc, fr, q)
            if keep and count:
                stamp[replay(fc, fr, key)[0][s:]] = wid
                if key is not None:
                    stamped[key] = wid
    if last is None:
        return total, -1
    fc, fr, p = last
    return total, int(op.fold(fc, fr)[1][p])


def _scan(prev, s, W):
    """The first position from ``s`` where the ``W``-th word not seen since ``s`` appears (``-1``: none),
    and how many such words there are up to it (or to the end)."""
    n, e, cnt, chunk = prev.shape[0], s, 0, 4 * W
    while e < n:
        nz = np.flatnonzero(prev[e:e + chunk] < s)
        if nz.size >= W - cnt:
            return e + int(nz[W - cnt - 1]), W
        cnt += nz.size
        e += chunk
        chunk *= 2
    return -1, cnt

# --------------------------------------------------------------------------------------------------
# USER mode: read_buffer's sliding window over the prefetch order
# --------------------------------------------------------------------------------------------------


def _set_table(pf, diagonal, E):
    """For every address, the ids of the sets (``E`` valid words each, in prefetch order) that hold it.
    Returns the table (addresses x most copies, padded with the number of sets) and that number."""
    mat = pf
    if diagonal:
        order = np.empty(mat.size, np.int64)
        order[_diag_order(*mat.shape).reshape(-1)] = np.arange(mat.size)
        seq = mat.reshape(-1)[order]
    else:
        seq = mat.reshape(-1)
    seq = seq[seq >= 0]
    nsets = seq.shape[0] // E + 1
    sid = np.arange(seq.shape[0], dtype=np.int64) // E
    order = np.argsort(seq, kind="stable")
    sa = seq[order]
    size = int(sa[-1]) + 1 if sa.shape[0] else 1
    counts = np.bincount(sa, minlength=size)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(sa.shape[0]) - first[sa]
    table = np.full((size, max(int(counts.max()) if counts.size else 1, 1)), nsets, np.int32)
    table[sa, rank] = sid[order]
    return table, nsets


def _user_replay(addr, cyc, table, nsets, A, P):
    """Window slides of a USER-mode read buffer over its demand stream: ``(cycle, slides)`` per miss.

    The active window holds sets ``a .. a + A - 1`` (mod ``nsets``); a demanded word in none of them
    slides the window by ``P`` sets until one holds it."""
    A = min(A, nsets)
    P = min(P, nsets - A)
    events = []
    if A >= nsets or addr.shape[0] == 0:
        return events
    a, p, chunk, n = 0, 0, 256, addr.shape[0]
    ks = np.arange(1, nsets // P + 3)
    sets = np.arange(nsets + 1)
    while p < n:
        # sets in the window; index nsets (the table's -1 padding) never is
        inside = ((sets - a) % nsets < A) & (sets < nsets)
        while p < n:
            hit = inside[table[addr[p:p + chunk]]].any(axis=1)
            if not hit.all():
                break
            p += hit.shape[0]
            chunk = min(chunk * 2, 1 << 16)
        if p >= n:
            break
        q = p + int(np.argmin(hit))
        occ = table[addr[q]]
        occ = occ[occ < nsets]
        ok = ((occ[:, None] - a - ks[None, :] * P) % nsets) < A
        k = int(ks[np.argmax(ok, axis=1)[ok.any(axis=1)]].min())
        a = (a + k * P) % nsets
        events.append((int(cyc[q]), k))
        p, chunk = q + 1, 256
    return events


# --------------------------------------------------------------------------------------------------
# The ofmap write buffer and the stall bookkeeping of double_buffered_scratchpad
# --------------------------------------------------------------------------------------------------


def _ofmap_counts(df, R, C, T, sr, sc, rf, cf, L):
    """Valid ofmap demands per cycle (row of SCALE-Sim's ofmap demand matrix)."""
    fc = np.arange(cf)[:, None, None]
    fr = np.arange(rf)[None, :, None]
    t = np.arange(L)[None, None, :]
    cc = np.minimum(C, sc - fc * C)
    if df == "os":
        r = np.minimum(R, sr - fr * R)
        base = t - (T - 1)
        lo, hi = base - (R - 1), base - (R - r)
    else:
        base = t - (2 * R - 1)
        lo, hi = base - (T - 1), base
    cnt = np.maximum(0, np.minimum(hi, cc - 1) - np.maximum(lo, 0) + 1)
    return np.broadcast_to(cnt, (cf, rf, L)).reshape(-1)


class _WriteBuffer:
    """SCALE-Sim's ``write_buffer`` (the ofmap SRAM), element counts only."""

    def __init__(self, words, bw):
        self.total = words
        self.active = cdiv(words, 2)
        self.lines_per_drain = cdiv(words - self.active, bw)
        self.bw = bw
        self.free = words
        self.drain_end = 0
        self.fill = 0          # words in the open trace line
        self.lines = 0         # closed trace lines
        self.pads = {}         # closed partial line -> its -1 padding
        self.drained = 0       # lines drained
        self.writes = 0
        self.first = None
        self.last = None

    def store(self, m):
        self.free -= m
        self.fill += m
        self.lines += self.fill // self.bw
        self.fill %= self.bw

    def close(self):
        if self.fill:
            self.pads[self.lines] = self.bw - self.fill
            self.lines += 1
            self.fill = 0

    def drain(self, cycle):
        end = min(self.drained + self.lines_per_drain, self.lines)
        n = end - self.drained
        data = n * self.bw - self.pads.get(end - 1, 0)
        self.writes += data
        self.free += data
        self.drained = end
        self.drain_end = cycle + n - 1  # the write port has no latency
        # SCALE-Sim reports the extremes of its drain cycles (the final drain can start before the
        # previous one ended)
        self.first = cycle if self.first is None else min(self.first, cycle)
        self.last = cycle + n - 1 if self.last is None else max(self.last, cycle + n - 1)
        return self.drain_end

    def row(self, left, cycle):
        """One demand line of ``left`` writes at ``cycle``; returns the cycle it is served."""
        cur = cycle
        while left > 0:
            if cur < self.drain_end:
                need = max(self.free, 1)
                if need > left:
                    self.store(left)
                    break
                self.store(need)
                left -= need
                cur = self.drain_end
            else:
                need = max(self.free - self.active + 1, 1)
                if need > left:
                    self.store(left)
                    break
                self.store(need)
                left -= need
                self.close()
                self.drain(cur)
        return cur

    def next_event(self, i, stall, Q, nz_next, rows):
        """The first line at or after ``i`` where this buffer stalls or drains (``rows``: none)."""
        if i >= rows:
            return rows
        i_d = min(max(i, self.drain_end - stall), rows)
        best = rows
        if i < i_d:
            j = int(np.searchsorted(Q, Q[i] + max(self.free, 1), "left")) - 1
            if j < i_d:
                best = j
        if i_d < rows:
            j = int(np.searchsorted(Q, Q[i] + max(self.free - self.active + 1, 1), "left")) - 1
            j = max(j, i_d)
            if j < rows:
                best = min(best, int(nz_next[j]))
        return best

    def finish(self, cycle):
        self.close()
        while self.drained < self.lines:
            cycle = self.drain(cycle) + 1


def _group(events):
    out = {}
    for c, k in events:
        out.setdefault(c, []).append(k)
    return out


@functools.lru_cache(maxsize=4096)
def _replay(df, m, n, k, R, C, geo, words, bws, user):
    """All DRAM counts of one layer on one array by replaying SCALE-Sim's buffers over its streams.

    Args:
        df: ``"os"``, ``"ws"`` or ``"is"``.
        m, n, k, R, C: the GEMM and the array.
        geo: ``(h, w, fh, fw, c, sh, sw, ho, wo)``, the convolution (a GEMM: ``(M, K, 1, K, 1, 1, 1,
            M, 1)``, SCALE-Sim's lowering).
        words: SRAM words (ifmap, filter, ofmap).
        bws: USER-mode DRAM words per cycle (ifmap, filter, ofmap).
        user: USER mode (else CALC).

    Returns:
        A dict of ints: ``reads`` (ifmap, filter), ``ofmap`` (writes), ``stall``, ``cycles`` (SCALE-Sim's
        ``Total Cycles``), ``dram_start``/``dram_stop`` (ifmap, filter, ofmap).
    """
    X = _im2col(*geo)
    if X.shape != (m, k):
        raise ValueError(f"a layer's convolution geometry {geo} lowers to an {X.shape} ifmap, not the "
                         f"layer's M x K = {m} x {k}")
    h, w, fh, fw, c, sh, sw, ho, wo = geo
    valid = _valid_pairs(h, fh, sh, ho) * _valid_pairs(w, fw, sw, wo) * c
    ops, prefetch, g = _layout(df, X, n, R, C, h * w * c, valid == m * k)
    rows = g["cf"] * g["rf"] * g["L"]
    out = dict(reads=[0, 0], dram_start=[0, 0, 0], dram_stop=[-1, -1, 0])
    read_events = [{}, {}]
    last_pf = [-1, -1]
    nl_pf = [0, 0]
    for o, op in enumerate(ops):
        if not user:
            E = words[o] // 100
            W = 50 * E
            if o == 0:
                distinct = _touched(h, fh, sh, ho) * _touched(w, fw, sw, wo) * c
                unique = distinct == valid
            else:
                distinct, unique = k * n, True
            # the window never resets when every word fits in it
            reads, last = (distinct, -1) if distinct < W or W == 0 else _calc_walk(op, W, unique)
            out["reads"][o] = reads
            if last >= 0:
                out["dram_start"][o] = int(op.fold(0, 0)[1][0]) - cdiv(W, 10)
                out["dram_stop"][o] = last + 1
            else:
                out["dram_start"][o] = -cdiv(cdiv(reads, max(E, 1)) * E, 10)
                out["dram_stop"][o] = -1
        else:
            bw = bws[o]
            E = cdiv(words[o], 100)
            active = cdiv(words[o], 2)
            pref = words[o] - active
            pf, diag = prefetch[o]()
            nsets = int(np.count_nonzero(pf >= 0)) // E + 1
            events = []
            if cdiv(active, E) < nsets:  # else every set stays in the active window
                table, nsets = _set_table(pf, diag, E)
                addr, cyc = op.stream()
                events = _user_replay(addr, cyc, table, nsets, cdiv(active, E), cdiv(pref, E))
            first_lines = min(cdiv(active, bw), cdiv(pf.size, bw))
            nl_pf[o] = cdiv(pref, bw)
            slides = sum(kk for _, kk in events)
            out["reads"][o] = first_lines * bw + slides * nl_pf[o] * bw
            out["dram_start"][o] = -first_lines
            read_events[o] = _group(events)
    # --- the cycle loop, event to event -------------------------------------------------------
    cnt = _ofmap_counts(df, R, C, g["T"], g["sr"], g["sc"], g["rf"], g["cf"], g["L"])
    Q = np.concatenate([[0], np.cumsum(cnt)])
    # nz_next[i]: the first line at or after i with an ofmap write
    nz_next = np.append(np.where(cnt > 0, np.arange(rows), rows), rows)
    nz_next = np.minimum.accumulate(nz_next[::-1])[::-1]
    wb = _WriteBuffer(words[2], bws[2] if user else C)
    ev_rows = sorted(set(read_events[0]) | set(read_events[1]))
    stall, i, last_served = 0, 0, None
    ptr = 0
    while True:
        r_read = ev_rows[ptr] if ptr < len(ev_rows) else rows
        r = min(r_read, wb.next_event(i, stall, Q, nz_next, rows))
        if r >= rows:
            wb.store(int(Q[rows] - Q[i]))
            break
        wb.store(int(Q[r] - Q[i]))
        c = r + stall
        stalls = [0, 0]
        if r == r_read:
            ptr += 1
            for op in range(2):
                ks = read_events[op].get(r)
                if not ks:
                    continue
                x = c + 1
                for kk in ks:
                    for _ in range(kk):
                        last_pf[op] += nl_pf[op] + 1
                        x = last_pf[op] + max(last_pf[op] - x, 0)
                stalls[op] = x - c - 1
        served = wb.row(int(cnt[r]), c)
        if r == rows - 1:
            last_served = served
        stall += max(stalls[0], stalls[1], served - c)
        i = r + 1
    # rows without an event are served on time; the last row is served last
    last_row_served = rows - 1 + stall if last_served is None else last_served
    wb.finish(last_row_served)
    if user:
        out["dram_stop"][0], out["dram_stop"][1] = last_pf
    out["dram_start"][2] = wb.first if wb.first is not None else 0
    out["dram_stop"][2] = wb.last if wb.last is not None else 0
    out["ofmap"] = wb.writes
    out["stall"] = stall
    out["cycles"] = last_row_served
    return out


_DF_NAMES = {OutputStationary: "os", WeightStationary: "ws", InputStationary: "is"}


def _trace_host(df, user, m, n, k, rows, cols, h, w, fh, fw, c, sh, sw, ho, wo, words, bws):
    """Host side of the ``"trace"`` DRAM model: :func:`_replay` for every (layer, array) of the batch."""
    dt = int_dtype()
    b = np.shape(m)[0]
    res = dict(ifmap=np.zeros(b, dt), filter=np.zeros(b, dt), ofmap=np.zeros(b, dt), stall=np.zeros(b, dt),
               dram_start=np.zeros((b, 3), dt), dram_stop=np.zeros((b, 3), dt))
    words = tuple(int(x) for x in np.asarray(words))
    bws = tuple(int(x) for x in np.asarray(bws))
    for i in range(b):
        geo = tuple(int(np.asarray(g)[i]) for g in (h, w, fh, fw, c, sh, sw, ho, wo))
        o = _replay(df, int(m[i]), int(n[i]), int(k[i]), int(rows[i]), int(cols[i]), geo, words, bws, user)
        res["ifmap"][i], res["filter"][i] = o["reads"]
        res["ofmap"][i], res["stall"][i] = o["ofmap"], o["stall"]
        res["dram_start"][i], res["dram_stop"][i] = o["dram_start"], o["dram_stop"]
    return res


def _trace_override(out, flat, words, bws, dataflow: AbstractDataflow, user: bool):
    """The closed form's per-layer dict with its DRAM counts replaced by the trace replay's (a host
    callback: works under ``jax.jit`` and ``jax.vmap``, runs in NumPy on the CPU)."""
    dt = int_dtype()
    b = flat[0].shape[0]
    vec, tri = jax.ShapeDtypeStruct((b,), dt), jax.ShapeDtypeStruct((b, 3), dt)
    shapes = dict(ifmap=vec, filter=vec, ofmap=vec, stall=vec, dram_start=tri, dram_stop=tri)
    host = functools.partial(_trace_host, _DF_NAMES[type(dataflow)], user)
    # flat: m, n, k, rows, cols, ifmap_words (closed form only), then the nine geometry entries
    t = jax.pure_callback(host, shapes, *flat[:5], *flat[6:], words, bws, vmap_method="sequential")
    new = dict(out)
    shift = t["stall"] - out["stall"]
    new.update(ifmap=t["ifmap"], filter=t["filter"], ofmap=t["ofmap"], stall=t["stall"],
               dram_start=t["dram_start"], dram_stop=t["dram_stop"], cycles=out["cycles"] + shift,
               sram_stop=out["sram_stop"] + shift[:, None],
               incl=t["dram_stop"][:, 2] - jnp.minimum(t["dram_start"][:, 0], t["dram_start"][:, 1]))
    return new


# --------------------------------------------------------------------------------------------------
# Distinct ifmap words of convolutions (what the DRAM reads of a fitting ifmap are)
# --------------------------------------------------------------------------------------------------


def _touched(size: int, filt: int, stride: int, out: int) -> int:
    """Input rows (or columns) that SCALE-Sim's ``out`` windows of ``filt`` at ``stride`` touch (a
    ceil-mode last window may start past the input when ``stride > filt``: it touches none)."""
    if stride <= filt:
        return min(size, (out - 1) * stride + filt)
    return (out - 1) * filt + max(0, min(filt, size - (out - 1) * stride))


def _touched_jnp(size, filt, stride, out):
    return jnp.where(stride <= filt, jnp.minimum(size, (out - 1) * stride + filt),
                     (out - 1) * filt + jnp.maximum(0, jnp.minimum(filt, size - (out - 1) * stride)))


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
