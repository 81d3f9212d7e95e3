"""The PE array and the three classic dataflows of SCALE-Sim (output, weight and input stationary).

A dataflow maps the GEMM ``ofmap[M, N] = ifmap[M, K] @ filter[K, N]`` onto an ``R x C`` array as
three numbers (SCALE-Sim's ``S_r, S_c, T``; Samajdar et al., "A systematic methodology for
characterizing scalability of DNN accelerators using SCALE-Sim", ISPASS 2020): ``S_r`` operand
rows are spread over the array's rows, ``S_c`` over its columns, and ``T`` elements stream through
each PE in time. The work is cut into ``ceil(S_r / R) x ceil(S_c / C)`` folds, run one after another.

All formulas are integer arithmetic on array leaves (``+``, ``*``, floor division), so they broadcast
over batches of layers and arrays and run the same under ``jit``/``vmap`` and on NumPy arrays.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
from jaxtyping import Array, Int

from ._workload import _dims


def cdiv(a, b):
    """Ceiling division of positive integers (arrays or ints)."""
    return (a + b - 1) // b


class SystolicArray(eqx.Module):
    """An ``rows x cols`` array of multiply-accumulate PEs.

    ``rows`` and ``cols`` are integer array leaves, so a sweep over array shapes neither recompiles
    nor needs Python loops: pass arrays of shapes (``SystolicArray(jnp.array([8, 16]),
    jnp.array([8, 16]))``) or ``vmap`` over them.

    Attributes:
        rows: number of PE rows ``R`` (SCALE-Sim's ``ArrayHeight``).
        cols: number of PE columns ``C`` (``ArrayWidth``).

    Raises:
        ValueError: a non-positive or non-integer size (the message names ``rows`` or ``cols``).

    Example:
        >>> from hwsim import systolic
        >>> a = systolic.SystolicArray(128, 128)
        >>> int(a.pes)
        16384
    """

    rows: Int[Array, "..."]
    cols: Int[Array, "..."]

    def __init__(self, rows, cols):
        self.rows = _dims(rows, "rows")
        self.cols = _dims(cols, "cols")

    @property
    def pes(self) -> Int[Array, "..."]:
        return self.rows * self.cols


class AbstractDataflow(eqx.Module):
    """How a GEMM is mapped onto the PE array; subclasses give the mapping and the access counts.

    A dataflow object has no fields; pass it to :func:`hwsim.systolic.simulate` as ``dataflow=``.
    The cycle counts of one fold (SCALE-Sim's demand matrices, one line per cycle) are
    :meth:`fold_cycles`; compatibility mode (``compat=True`` in ``simulate``) uses
    :meth:`compat_util_cycles` for SCALE-Sim's per-fold compute-utilisation denominator.
    """

    #: SCALE-Sim's short name for the dataflow (its config's ``Dataflow`` value).
    short_name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def spatiotemporal(self, m, n, k):
        """``(S_r, S_c, T)``: operand extents along the array's rows, its columns, and time."""

    @abc.abstractmethod
    def fold_cycles(self, rows, cols, t):
        """Cycles one fold occupies the array, fill and drain included."""

    @abc.abstractmethod
    def compat_util_cycles(self, rows, cols, t):
        """The per-fold cycle count SCALE-Sim divides by in its compute utilisation."""

    @abc.abstractmethod
    def sram_accesses(self, sr, sc, t, row_folds, col_folds):
        """``(ifmap reads, filter reads, ofmap writes)`` between the SRAMs and the array."""

    @abc.abstractmethod
    def compat_extra_ofmap_writes(self, rows, cols, folds):
        """Ofmap writes SCALE-Sim counts on top of the real ones (compatibility mode only)."""


class OutputStationary(AbstractDataflow):
    """Output stationary: each PE accumulates one output; ``S_r = M``, ``S_c = N``, ``T = K``.

    Inputs stream from the left, weights from the top, both skewed; a fold takes ``T + R + C - 2``
    cycles (``T`` MACs, ``R - 1`` + ``C - 1`` of skew). The ifmap is re-read once per column fold and
    the filter once per row fold; every output is written once.
    """

    short_name: ClassVar[str] = "os"

    def spatiotemporal(self, m, n, k):
        return m, n, k

    def fold_cycles(self, rows, cols, t):
        return t + rows + cols - 2

    def compat_util_cycles(self, rows, cols, t):
        return t + rows + cols - 2

    def sram_accesses(self, sr, sc, t, row_folds, col_folds):
        return col_folds * sr * t, row_folds * t * sc, sr * sc

    def compat_extra_ofmap_writes(self, rows, cols, folds):
        # systolic_compute_os adds the padded ofmap demand's `shape[0] + shape[1]` (R + C) to its
        # write counter once per fold, after the fold's real writes.
        return folds * (rows + cols)


class WeightStationary(AbstractDataflow):
    """Weight stationary: the filter is pinned in the PEs; ``S_r = K``, ``S_c = N``, ``T = M``.

    A fold loads ``R`` rows of weights, streams ``T`` input rows through (skewed over ``R`` rows) and
    drains the partial sums over the ``C`` columns: ``2R + C + T - 2`` cycles. Each ifmap element is
    read once per column fold; each partial sum is written once per row fold.
    """

    short_name: ClassVar[str] = "ws"

    def spatiotemporal(self, m, n, k):
        return k, n, m

    def fold_cycles(self, rows, cols, t):
        return 2 * rows + cols + t - 2

    def compat_util_cycles(self, rows, cols, t):
        return 2 * rows + 2 * cols + t - 3

    def sram_accesses(self, sr, sc, t, row_folds, col_folds):
        return col_folds * t * sr, sr * sc, row_folds * t * sc

    def compat_extra_ofmap_writes(self, rows, cols, folds):
        return 0 * folds


class InputStationary(AbstractDataflow):
    """Input stationary: the ifmap is pinned in the PEs; ``S_r = K``, ``S_c = M``, ``T = N``.

    The mirror image of weight stationary with the roles of the ifmap and the filter swapped:
    ``2R + C + T - 2`` cycles per fold, the filter re-read once per column fold, partial sums written
    once per row fold.
    """

    short_name: ClassVar[str] = "is"

    def spatiotemporal(self, m, n, k):
        return k, m, n

    def fold_cycles(self, rows, cols, t):
        return 2 * rows + cols + t - 2

    def compat_util_cycles(self, rows, cols, t):
        return 2 * rows + 2 * cols + t - 3

    def sram_accesses(self, sr, sc, t, row_folds, col_folds):
        return sr * sc, col_folds * sr * t, row_folds * sc * t

    def compat_extra_ofmap_writes(self, rows, cols, folds):
        return 0 * folds


#: SCALE-Sim's dataflow names (the config's ``Dataflow`` values) and their classes.
DATAFLOWS: dict[str, type[AbstractDataflow]] = {
    cls.short_name: cls for cls in (OutputStationary, WeightStationary, InputStationary)
}


def as_dataflow(dataflow: Any, name: str = "dataflow") -> AbstractDataflow:
    """An :class:`AbstractDataflow` instance, or one looked up by SCALE-Sim's name (``"os"``, ...)."""
    if isinstance(dataflow, AbstractDataflow):
        return dataflow
    if isinstance(dataflow, str):
        key = dataflow.strip().lower()
        if key in DATAFLOWS:
            return DATAFLOWS[key]()
        raise ValueError(f"`{name}` must be one of {sorted(DATAFLOWS)} or an AbstractDataflow such as "
                         f"hwsim.systolic.WeightStationary(), got {dataflow!r}")
    if isinstance(dataflow, type) and issubclass(dataflow, AbstractDataflow):
        raise TypeError(f"`{name}` must be a dataflow instance, got the class {dataflow.__name__}; "
                        f"write {dataflow.__name__}()")
    raise TypeError(f"`{name}` must be an AbstractDataflow (OutputStationary(), WeightStationary(), "
                    f"InputStationary()) or one of {sorted(DATAFLOWS)}, got {type(dataflow).__name__}")
