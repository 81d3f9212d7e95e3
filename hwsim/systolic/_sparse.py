r"""Sparse weights on a dense systolic array ("sparse-on-dense") against a sparse-PE accelerator.

Yoon, Kim and Ryu, "Sparse-on-Dense: Area and Energy-Efficient Computing of Sparse Neural Networks on
Dense Matrix Multiplication Accelerators" (arXiv:2604.26587, 2026) keep pruned weights compressed in
DRAM and SRAM (values + row indices + pointers) and decompress them *between* the global buffer and a
plain dense systolic array. Sparse PEs, which skip zero MACs by matching indices, are much larger
than dense PEs, so at equal area the dense design has many more PEs; the paper reports up to 11.9x
throughput/area and 3.2x energy efficiency over sparse accelerators, with the decompressor costing
about 2 % of the area.

This module has three parts:

1. **Weight formats** (:class:`Dense`, :class:`Bitmap`, :class:`CSR`, :class:`CSC`, :class:`NM`,
   subclasses of :class:`AbstractFormat`): :func:`compress` / :func:`decompress` in pure JAX with a
   fixed capacity (so they jit), and the storage size in bits, metadata included
   (:meth:`AbstractFormat.storage_bits`, also as a closed form of the non-zero count for sweeps).
2. **Functional path**: :func:`sparse_on_dense_matmul` = compress -> decompress -> the cycle-level
   int8 array of :func:`hwsim.systolic._functional.functional_matmul`; bit-exact to the dense product.
3. **Cost model**: a decompression unit (:class:`Decompressor`), the compressed SRAM/DRAM traffic of
   a layer (:func:`layer_traffic`), an Accelergy-style table of energies per action
   (:class:`EnergyTable`), the two designs at equal area (:class:`DenseDecompressDesign`,
   :class:`SparsePEDesign`, subclasses of :class:`AbstractDesign`) and :func:`compare_designs`,
   which evaluates them on a layer at a sparsity level and an area budget.

Every number of the cost model is a field that the user can override; the defaults, their sources and
which of them are assumptions are listed in each class's docstring.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from sciml import backend

from ._dataflow import AbstractDataflow, OutputStationary, SystolicArray, WeightStationary, as_dataflow
from ._functional import FunctionalResult, functional_matmul
from ._workload import Layer, Topology, _is_concrete

__all__ = [
    "CSC",
    "CSR",
    "FORMATS",
    "NM",
    "AbstractDesign",
    "AbstractFormat",
    "Bitmap",
    "Compressed",
    "Decompressor",
    "Dense",
    "DenseDecompressDesign",
    "DesignReport",
    "EnergyTable",
    "SparsePEDesign",
    "Traffic",
    "compare_designs",
    "compress",
    "decompress",
    "is_nm_sparse",
    "layer_traffic",
    "prune_nm",
    "sparse_on_dense_matmul",
]


def _bit_length(x):
    """``int.bit_length`` for Python ints, and elementwise (same dtype back) for arrays of counts."""
    if isinstance(x, (int, np.integer)):
        return int(x).bit_length()
    x = jnp.asarray(x)
    return (32 - lax.clz(x.astype(jnp.int32))).astype(x.dtype)


def _index_bits(extent):
    """Bits of an index into ``extent`` positions, ``ceil(log2(extent))`` (0 for a single one)."""
    return _bit_length(extent - 1)


def _pointer_bits(k, n):
    """Bits of a CSR/CSC pointer: it counts up to ``K N`` non-zeros, so ``ceil(log2(K N + 1))``."""
    return _bit_length(k * n)


# --------------------------------------------------------------------------------------------------
# Compressed weights
# --------------------------------------------------------------------------------------------------


class Compressed(eqx.Module):
    """A ``(K, N)`` weight matrix in a compressed format, in fixed-size arrays (so it jits).

    Attributes:
        values: the stored values: the matrix itself (:class:`Dense`), the non-zeros padded with zeros
            to ``capacity`` (:class:`Bitmap`, :class:`CSR`, :class:`CSC`), or ``(groups, n, N)``
            (:class:`NM`).
        metadata: the format's index arrays (see each format).
        nnz: the number of non-zeros.
        format: the :class:`AbstractFormat`.
        shape: ``(K, N)``.
    """

    values: Array
    metadata: tuple[Array, ...]
    nnz: Int[Array, ""]
    format: AbstractFormat = eqx.field(static=True)
    shape: tuple[int, int] = eqx.field(static=True)

    @property
    def value_bits(self) -> int:
        return int(np.dtype(self.values.dtype).itemsize * 8)

    @property
    def storage_bits(self) -> Int[Array, ""]:
        """Bits this matrix takes in memory, values and metadata (:meth:`AbstractFormat.storage_bits`)."""
        k, n = self.shape
        return self.format.storage_bits(k, n, self.nnz, self.value_bits)


class AbstractFormat(eqx.Module):
    """A weight storage format: encode, decode and its size in bits.

    Subclasses implement :meth:`encode` (a ``(K, N)`` matrix to a :class:`Compressed`), :meth:`decode`
    and :meth:`storage_bits`, the closed form of the size used by the cost model. Call them through
    :func:`compress` and :func:`decompress`, which check their inputs.
    """

    #: short name (``FORMATS`` key)
    name: eqx.AbstractClassVar[str]
    #: whether a decompression unit is needed between the buffer and the array
    compressed: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def encode(self, w: Array, capacity: int) -> Compressed:
        """The compressed form of ``w`` with room for ``capacity`` non-zeros."""

    @abc.abstractmethod
    def decode(self, c: Compressed) -> Array:
        """The dense ``(K, N)`` matrix back."""

    @abc.abstractmethod
    def storage_bits(self, k: int, n: int, nnz, value_bits: int):
        """Bits in memory of a ``(K, N)`` matrix with ``nnz`` non-zeros of ``value_bits`` bits each.

        ``nnz`` may be an int, a float (an expected count) or an array; ``k``, ``n`` are ints.
        """


class Dense(AbstractFormat):
    """Uncompressed: ``K N b`` bits for ``b``-bit values, no metadata."""

    name: ClassVar[str] = "dense"
    compressed: ClassVar[bool] = False

    def encode(self, w, capacity):
        return Compressed(w, (), jnp.sum(w != 0, dtype=jnp.int32), self, w.shape)

    def decode(self, c):
        return c.values

    def storage_bits(self, k, n, nnz, value_bits):
        return 0 * nnz + k * n * value_bits


def _row_compress(w: Array, capacity: int):
    """Row-major non-zeros of ``w`` (CSR): values, column indices and row pointers, padded."""
    k, n = w.shape
    flat = w.reshape(-1)
    (idx,) = jnp.nonzero(flat != 0, size=capacity, fill_value=k * n)
    inside = idx < k * n
    safe = jnp.minimum(idx, k * n - 1)
    values = jnp.where(inside, flat[safe], jnp.zeros((), w.dtype))
    cols = jnp.where(inside, safe % n, 0).astype(jnp.int32)
    counts = jnp.sum(w != 0, axis=1, dtype=jnp.int32)
    pointers = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(counts, dtype=jnp.int32)])
    return values, cols, pointers


def _row_decompress(values, cols, pointers, shape):
    k, n = shape
    entry = jnp.arange(values.shape[0], dtype=jnp.int32)
    row = jnp.searchsorted(pointers, entry, side="right").astype(jnp.int32) - 1
    row = jnp.where(entry < pointers[-1], row, k)  # padding entries: out of bounds, dropped
    return jnp.zeros((k, n), values.dtype).at[row, cols].set(values, mode="drop")


class CSR(AbstractFormat):
    """Compressed sparse rows (rows = the ``K`` axis): values, column indices, row pointers.

    Metadata: ``(column index per non-zero, K + 1 row pointers)``. Size:
    ``nnz (b + ceil(log2 N)) + (K + 1) ceil(log2(K N + 1))`` bits (pointer width fixed by the largest
    possible count, as a memory layout must be).
    """

    name: ClassVar[str] = "csr"
    compressed: ClassVar[bool] = True

    def encode(self, w, capacity):
        values, cols, pointers = _row_compress(w, capacity)
        return Compressed(values, (cols, pointers), pointers[-1], self, w.shape)

    def decode(self, c):
        cols, pointers = c.metadata
        return _row_decompress(c.values, cols, pointers, c.shape)

    def storage_bits(self, k, n, nnz, value_bits):
        return nnz * (value_bits + _index_bits(n)) + (k + 1) * _pointer_bits(k, n)


class CSC(AbstractFormat):
    """Compressed sparse columns: values, row indices, column pointers (the paper's format).

    Metadata: ``(row index per non-zero, N + 1 column pointers)``. Size:
    ``nnz (b + ceil(log2 K)) + (N + 1) ceil(log2(K N + 1))`` bits.
    """

    name: ClassVar[str] = "csc"
    compressed: ClassVar[bool] = True

    def encode(self, w, capacity):
        values, rows, pointers = _row_compress(w.T, capacity)
        return Compressed(values, (rows, pointers), pointers[-1], self, w.shape)

    def decode(self, c):
        rows, pointers = c.metadata
        k, n = c.shape
        return _row_decompress(c.values, rows, pointers, (n, k)).T

    def storage_bits(self, k, n, nnz, value_bits):
        return nnz * (value_bits + _index_bits(k)) + (n + 1) * _pointer_bits(k, n)


class Bitmap(AbstractFormat):
    """One presence bit per element plus the non-zero values in row-major order.

    Metadata: ``(mask,)``, a ``(K, N)`` boolean array. Size: ``K N + nnz b`` bits.
    """

    name: ClassVar[str] = "bitmap"
    compressed: ClassVar[bool] = True

    def encode(self, w, capacity):
        values, _, pointers = _row_compress(w, capacity)
        return Compressed(values, (w != 0,), pointers[-1], self, w.shape)

    def decode(self, c):
        (mask,) = c.metadata
        pos = jnp.cumsum(mask.reshape(-1), dtype=jnp.int32) - 1
        pos = jnp.clip(pos, 0, c.values.shape[0] - 1)
        return jnp.where(mask, c.values[pos].reshape(mask.shape), jnp.zeros((), c.values.dtype))

    def storage_bits(self, k, n, nnz, value_bits):
        return 0 * nnz + k * n + nnz * value_bits


class NM(AbstractFormat):
    """N:M structured sparsity: at most ``n`` non-zeros in every group of ``m`` consecutive weights
    along the reduction axis ``K`` (zero-padded to a multiple of ``m``).

    Values are ``(groups, n, N)`` (groups with fewer non-zeros are padded with zeros); metadata is
    ``(indices,)``, the position in ``[0, m)`` of each stored value. Size:
    ``ceil(K / m) N n (b + ceil(log2 m))`` bits, whatever the actual non-zero count.
    Encoding a matrix that is not ``n:m`` sparse raises (see :func:`is_nm_sparse`, :func:`prune_nm`).

    Reference: A. Mishra et al., "Accelerating Sparse Deep Neural Networks", arXiv:2104.08378 (2021)
    (2:4 in NVIDIA's sparse tensor cores).
    """

    n: int = eqx.field(static=True)
    m: int = eqx.field(static=True)
    name: ClassVar[str] = "nm"
    compressed: ClassVar[bool] = True

    def __check_init__(self):
        for field in ("n", "m"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"`{field}` of NM must be a positive int, got {v!r}")
        if self.n > self.m:
            raise ValueError(f"NM needs 1 <= n <= m, got n={self.n}, m={self.m} (e.g. NM(2, 4))")

    def _groups(self, w):
        k, cols = w.shape
        g = -(-k // self.m)
        wp = jnp.pad(w, ((0, g * self.m - k), (0, 0)))
        return wp.reshape(g, self.m, cols)

    def encode(self, w, capacity):
        grouped = self._groups(w)
        # stable sort puts the non-zeros first, in order; the rest are zeros (distinct positions)
        order = jnp.argsort((grouped == 0).astype(jnp.int8), axis=1, stable=True)[:, : self.n, :]
        values = jnp.take_along_axis(grouped, order, axis=1)
        return Compressed(values, (order.astype(jnp.int32),), jnp.sum(w != 0, dtype=jnp.int32), self,
                          w.shape)

    def decode(self, c):
        (order,) = c.metadata
        g, _, cols = c.values.shape
        gi = jnp.arange(g)[:, None, None]
        ci = jnp.arange(cols)[None, None, :]
        grouped = jnp.zeros((g, self.m, cols), c.values.dtype).at[gi, order, ci].set(c.values)
        return grouped.reshape(g * self.m, cols)[: c.shape[0]]

    def storage_bits(self, k, n, nnz, value_bits):
        return 0 * nnz + (-(-k // self.m)) * n * self.n * (value_bits + _index_bits(self.m))


#: Formats by name (``NM`` needs its ratio: ``NM(2, 4)``).
FORMATS: dict[str, type[AbstractFormat]] = {c.name: c for c in (Dense, Bitmap, CSR, CSC, NM)}


def _check_matrix(w: Any, name: str = "w") -> Array:
    if not isinstance(w, (jax.Array, np.ndarray)):
        raise TypeError(f"`{name}` must be a 2-D array (the (K, N) weights), got {type(w).__name__}")
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"`{name}` must be a non-empty 2-D (K, N) matrix, got shape {w.shape}")
    if not (jnp.issubdtype(w.dtype, jnp.integer) or jnp.issubdtype(w.dtype, jnp.floating)):
        raise TypeError(f"`{name}` must have an integer or floating dtype, got {w.dtype}")
    return jnp.asarray(w)


def _check_format(fmt: Any) -> AbstractFormat:
    if isinstance(fmt, AbstractFormat):
        return fmt
    if isinstance(fmt, str) and fmt in FORMATS and fmt != "nm":
        return FORMATS[fmt]()
    if isinstance(fmt, type) and issubclass(fmt, AbstractFormat):
        raise TypeError(f"`fmt` must be a format instance, got the class {fmt.__name__}; write "
                        f"{fmt.__name__}()")
    raise TypeError(f"`fmt` must be an AbstractFormat (Dense(), Bitmap(), CSR(), CSC(), NM(2, 4)) or one "
                    f"of {sorted(set(FORMATS) - {'nm'})}, got {fmt!r}")


def is_nm_sparse(w: Array, n: int, m: int) -> Bool[Array, ""]:
    """Whether every group of ``m`` consecutive weights along ``K`` (axis 0) has at most ``n``
    non-zeros (``K`` zero-padded to a multiple of ``m``).

    Example:
        >>> from hwsim.systolic._sparse import is_nm_sparse
        >>> w = jnp.array([[1, 0], [0, 0], [2, 3], [0, 4]], jnp.int8)
        >>> bool(is_nm_sparse(w, 2, 4)), bool(is_nm_sparse(w, 1, 2))
        (True, False)
    """
    return _nm_ok(_check_matrix(w), NM(n, m))


@eqx.filter_jit
def _nm_ok(w, fmt: NM) -> Bool[Array, ""]:
    return jnp.all(jnp.sum(fmt._groups(w) != 0, axis=1) <= fmt.n)


def prune_nm(w: Array, n: int, m: int) -> Array:
    """Keep the ``n`` largest-magnitude weights of every group of ``m`` along ``K`` (ties: the first).

    Example:
        >>> from hwsim.systolic._sparse import prune_nm
        >>> prune_nm(jnp.array([[1], [-5], [3], [2]], jnp.int8), 2, 4).ravel().tolist()
        [0, -5, 3, 0]
    """
    return _prune(_check_matrix(w), NM(n, m))


@eqx.filter_jit
def _prune(w, fmt: NM) -> Array:
    n = fmt.n
    grouped = fmt._groups(w)
    mag = jnp.abs(grouped.astype(jnp.float32))
    order = jnp.argsort(-mag, axis=1, stable=True)
    rank = jnp.argsort(order, axis=1, stable=True)
    kept = jnp.where(rank < n, grouped, jnp.zeros((), w.dtype))
    return kept.reshape(-1, w.shape[1])[: w.shape[0]]


def compress(w: Array, fmt: AbstractFormat | str, *, capacity: int | None = None) -> Compressed:
    """Encode a ``(K, N)`` weight matrix in a storage format (pure JAX; jit-compatible).

    Sparse formats store their non-zeros in arrays of a fixed ``capacity`` (default ``K N``, always
    enough), padded with zeros, so the shapes do not depend on the data.

    Args:
        w: the ``(K, N)`` weights (any integer or floating dtype; zeros are the pruned weights).
        fmt: :class:`Dense`, :class:`Bitmap`, :class:`CSR`, :class:`CSC`, :class:`NM` instance, or the
            name of one of the first four.
        capacity: room for non-zeros (Bitmap, CSR, CSC); ignored by Dense and NM.

    Returns:
        A :class:`Compressed`.

    Raises:
        TypeError/ValueError: a non-matrix ``w``, an unknown format, a non-positive capacity; more
            non-zeros than ``capacity`` or a matrix that is not N:M sparse for :class:`NM` (checked
            here when ``w`` is concrete, by ``eqx.error_if`` under ``jit``).

    Example:
        >>> from hwsim.systolic._sparse import compress, decompress, CSC
        >>> w = jnp.array([[0, 5], [-3, 0], [0, 0]], jnp.int8)
        >>> c = compress(w, CSC())
        >>> int(c.nnz), int(c.storage_bits)          # 2 x (8 + 2) + 3 pointers x 3 bits
        (2, 29)
        >>> bool(jnp.array_equal(decompress(c), w))
        True
    """
    w = _check_matrix(w)
    fmt = _check_format(fmt)
    k, n = w.shape
    if capacity is None:
        capacity = k * n
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ValueError(f"`capacity` must be a positive int (room for non-zeros), got {capacity!r}")
    ok = _encodable(w, fmt, int(capacity))
    if isinstance(fmt, NM):
        msg = (f"`w` is not {fmt.n}:{fmt.m} sparse along K (a group of {fmt.m} has more than {fmt.n} "
               "non-zeros); prune it first with prune_nm(w, n, m)")
    else:
        msg = f"`w` has more non-zeros than `capacity`={capacity}; raise the capacity"
    if _is_concrete(ok):
        if not bool(ok):
            raise ValueError(msg)
        return _encode(w, fmt, int(capacity))
    return eqx.error_if(_encode(w, fmt, int(capacity)), ~ok, msg)


@eqx.filter_jit
def _encodable(w, fmt: AbstractFormat, capacity: int) -> Bool[Array, ""]:
    if isinstance(fmt, NM):
        return _nm_ok(w, fmt)
    return (jnp.sum(w != 0, dtype=jnp.int32) <= capacity) | (not fmt.compressed)


@eqx.filter_jit
def _encode(w, fmt: AbstractFormat, capacity: int) -> Compressed:
    return fmt.encode(w, capacity)


@eqx.filter_jit
def _decode(c: Compressed) -> Array:
    return c.format.decode(c)


def decompress(c: Compressed) -> Array:
    """The dense ``(K, N)`` matrix of a :class:`Compressed` (what the decompression unit produces).

    Raises:
        TypeError: ``c`` is not a :class:`Compressed`.
    """
    if not isinstance(c, Compressed):
        raise TypeError(f"`c` must be a Compressed (from compress()), got {type(c).__name__}")
    return _decode(c)


_WS = WeightStationary()
_CSC = CSC()  # field-less Modules: no arrays are made at import


def sparse_on_dense_matmul(a: Array, weights: Compressed, array: SystolicArray, *,
                           dataflow: AbstractDataflow | str = _WS) -> FunctionalResult:
    """``a @ W`` with ``W`` stored compressed: decompress, then run the dense int8 systolic array.

    The functional path of sparse-on-dense: the decompressor turns the stored format back into dense
    int8 tiles and the array computes with them as with any dense weights, so the result equals
    ``a @ W`` bit for bit and the cycles are the dense array's (the decompressor's own throughput and
    latency are in the cost model, :class:`Decompressor`).

    Args:
        a: ``(M, K)`` int8 activations.
        weights: the ``(K, N)`` int8 weights as a :class:`Compressed`.
        array: the :class:`SystolicArray` (concrete size).
        dataflow: as in :func:`~hwsim.systolic._functional.functional_matmul`.

    Returns:
        The :class:`~hwsim.systolic._functional.FunctionalResult` of the dense array.

    Raises:
        TypeError: ``weights`` not a :class:`Compressed` or not int8; the errors of ``functional_matmul``.

    Example:
        >>> from hwsim import systolic
        >>> from hwsim.systolic._sparse import compress, sparse_on_dense_matmul, Bitmap
        >>> w = jnp.array([[0, 2], [1, 0]], jnp.int8)
        >>> a = jnp.array([[3, -4]], jnp.int8)
        >>> sparse_on_dense_matmul(a, compress(w, Bitmap()), systolic.SystolicArray(2, 2)).output.tolist()
        [[-4, 6]]
    """
    if not isinstance(weights, Compressed):
        raise TypeError(f"`weights` must be a Compressed (from compress()), got {type(weights).__name__}")
    return functional_matmul(a, decompress(weights), array, dataflow=dataflow)


# --------------------------------------------------------------------------------------------------
# Cost model: decompressor, traffic, energy, designs
# --------------------------------------------------------------------------------------------------


def _f(x) -> Float[Array, "..."]:
    return jnp.asarray(x, backend.default_dtype())


def _cdiv(a, b):
    return jnp.ceil(_f(a) / _f(b))


class Decompressor(eqx.Module):
    """The decompression unit between the global buffer and the array (a cost model).

    It emits ``rows_per_cycle * C`` dense weights per cycle (``C`` the array width) after a pipeline
    ``latency``. In a weight-stationary fold the array loads ``R`` rows of weights in ``R`` cycles,
    so the fold is stretched by ``max(0, ceil(R / rows_per_cycle) + latency - R)`` cycles (no overlap
    with the previous fold is assumed, which is conservative).

    Attributes:
        rows_per_cycle: array rows of weights produced per cycle (default 1: keeps pace with the load).
        latency: pipeline latency in cycles (default 4; an assumption, not from the paper).
        area_fraction: share of the area budget taken by the decompressors (default 0.02: "about 2 %"
            in Yoon, Kim, Ryu 2026).

    Fields may be Python numbers or arrays (arrays sweep without recompiling under ``jit``).
    """

    rows_per_cycle: float | Array = 1.0
    latency: float | Array = 4.0
    area_fraction: float | Array = 0.02

    def elements_per_cycle(self, cols) -> Float[Array, "..."]:
        """Dense elements produced per cycle for an array ``cols`` wide."""
        return _f(self.rows_per_cycle) * _f(cols)

    def stall_cycles(self, rows) -> Float[Array, "..."]:
        """Extra cycles per weight-stationary fold for an array with ``rows`` rows."""
        rows = _f(rows)
        return jnp.maximum(0.0, jnp.ceil(rows / _f(self.rows_per_cycle)) + _f(self.latency) - rows)


class EnergyTable(eqx.Module):
    """Energy per action in pJ (an Accelergy-style table: actions x energy each).

    Defaults from M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014
    (45 nm, 0.9 V), where a number is quoted there; the others are assumptions and say so:

    * ``mac`` 0.3: an 8-bit multiply (0.2 pJ) plus a 32-bit add (0.1 pJ) (Horowitz).
    * ``sram_read`` 2.5 per 8-bit word: a 32 KB SRAM reads 64 bits for 20 pJ (Horowitz), /8
      (energy taken as linear in the width: an assumption).
    * ``sram_write`` 2.5: assumed equal to a read.
    * ``dram`` 243.75 per 8-bit word: DRAM 1.3-2.6 nJ per 64-bit access (Horowitz), midpoint / 8.
    * ``decompress`` 0.05 per dense element produced: assumption, the energy of a 16-bit add
      (Horowitz: 0.05 pJ) for the pointer/index compare and the mux of each element.
    * ``index_match`` 0.3 per effectual MAC of a sparse PE: assumption, the index comparison and the
      FIFO read/write that a sparse PE does per non-zero, taken equal to a MAC.

    Attributes:
        mac, sram_read, sram_write, dram, decompress, index_match: pJ per action (see above).
        word_bits: the word size of the memory entries (default 8 bits); traffic in bits is divided by
            it to count accesses.
    """

    mac: float | Array = 0.3
    sram_read: float | Array = 2.5
    sram_write: float | Array = 2.5
    dram: float | Array = 243.75
    decompress: float | Array = 0.05
    index_match: float | Array = 0.3
    word_bits: int = eqx.field(default=8, static=True)


class Traffic(eqx.Module):
    """Memory traffic of a layer in bits, metadata included.

    Attributes:
        dram_read_bits: compressed weights and int8 activations read once from DRAM.
        dram_write_bits: int8 outputs written once to DRAM.
        sram_read_bits: operand reads from the global buffer (weights as stored, compressed) plus
            partial-sum reads of the row folds after the first.
        sram_write_bits: 32-bit partial sums / outputs written to the buffer.
        weight_bits: the stored size of the weights (:meth:`AbstractFormat.storage_bits`).
    """

    dram_read_bits: Float[Array, "..."]
    dram_write_bits: Float[Array, "..."]
    sram_read_bits: Float[Array, "..."]
    sram_write_bits: Float[Array, "..."]
    weight_bits: Float[Array, "..."]


def _layer_dims(layer: Any):
    if not isinstance(layer, (Layer, Topology)):
        raise TypeError("`layer` must be a hwsim.systolic.Layer (gemm(), conv()) or Topology, got "
                        f"{type(layer).__name__}")
    return _f(layer.m), _f(layer.n), _f(layer.k)


def _check_sparsity(sparsity: Any) -> Float[Array, "..."]:
    s = _f(sparsity)
    if _is_concrete(s) and s.size and (bool(jnp.any(s < 0)) or bool(jnp.any(s >= 1))):
        raise ValueError(f"`sparsity` must be in [0, 1) (the fraction of zero weights), got {sparsity!r}")
    return s


def layer_traffic(layer: Layer, sparsity, array: SystolicArray, *, fmt: AbstractFormat = _CSC,
                  dataflow: AbstractDataflow | str = _WS, value_bits: int = 8, psum_bits: int = 32
                  ) -> Traffic:
    r"""DRAM and SRAM traffic of a layer whose weights are stored in ``fmt`` at a sparsity level.

    With ``d = 1 - sparsity`` the expected non-zero count is ``d K N`` and the weights take
    ``W = fmt.storage_bits(K, N, d K N, b)`` bits. Every word is fetched from DRAM once (a buffer large
    enough to hold the layer's tiles is assumed): ``W + M K b`` bits in, ``M N b`` out. The buffer
    reads follow the dataflow's access counts (:meth:`AbstractDataflow.sram_accesses`), with each read
    of the filter costing ``W / (K N)`` bits instead of ``b``: the weights stay compressed until the
    decompressor. Partial sums are ``psum_bits`` wide.

    Args:
        layer: a :class:`Layer` (or a :class:`Topology`, broadcast over its layers).
        sparsity: fraction of zero weights in ``[0, 1)`` (scalar or array, broadcast).
        array: the :class:`SystolicArray`.
        fmt: the storage format of the weights (default :class:`CSC`, the paper's).
        dataflow: the array's dataflow (default weight stationary).
        value_bits, psum_bits: operand and partial-sum widths.

    Returns:
        A :class:`Traffic`.

    Raises:
        TypeError/ValueError: a bad ``layer``, ``array``, ``fmt``, ``dataflow`` or a sparsity outside
            ``[0, 1)``.

    Example:
        >>> from hwsim import systolic
        >>> from hwsim.systolic._sparse import layer_traffic, Dense
        >>> t = layer_traffic(systolic.gemm(4, 8, 16), 0.0, systolic.SystolicArray(4, 4), fmt=Dense())
        >>> float(t.weight_bits), float(t.dram_read_bits)
        (1024.0, 1536.0)
    """
    m, n, k = _layer_dims(layer)
    if not isinstance(array, SystolicArray):
        raise TypeError(f"`array` must be a SystolicArray, got {type(array).__name__}")
    fmt = _check_format(fmt)
    df = as_dataflow(dataflow)
    s = _check_sparsity(sparsity)
    m, n, k = (x.reshape(x.shape + (1,) * jnp.ndim(s)) for x in (m, n, k))
    return _traffic(m, n, k, s, _f(array.rows), _f(array.cols), fmt, df, value_bits, psum_bits)


def _traffic(m, n, k, s, rows, cols, fmt, df, value_bits, psum_bits) -> Traffic:
    """The traffic of ``(M, N, K)`` already shaped to broadcast against the sparsity ``s``."""
    sr, sc, t = df.spatiotemporal(m, n, k)
    row_folds, col_folds = _cdiv(sr, rows), _cdiv(sc, cols)
    ifmap, filt, ofmap = df.sram_accesses(sr, sc, t, row_folds, col_folds)
    weight_bits = _f(fmt.storage_bits(k, n, (1.0 - s) * k * n, value_bits))
    per_weight = weight_bits / (k * n)
    # ofmap writes beyond M N are partial sums that are read back once to be accumulated
    psum_rereads = ofmap - m * n
    return Traffic(
        dram_read_bits=weight_bits + m * k * value_bits,
        dram_write_bits=m * n * value_bits,
        sram_read_bits=ifmap * value_bits + filt * per_weight + psum_rereads * psum_bits,
        sram_write_bits=ofmap * psum_bits,
        weight_bits=weight_bits,
    )


_ENERGY = EnergyTable()  # Python floats only


class DesignReport(eqx.Module):
    """One design on one layer: what :func:`compare_designs` returns per design.

    Attributes:
        rows, cols: the array the area buys.
        pes: ``rows * cols``.
        compute_cycles: cycles of the array (plus decompressor stalls).
        memory_cycles: DRAM traffic / DRAM bandwidth.
        cycles: ``max(compute, memory)`` (DRAM transfers overlap computation: double buffering).
        throughput: dense-equivalent MACs per cycle, ``M N K / cycles``.
        throughput_per_area: ``throughput`` per mm² of the area budget.
        energy: total energy in pJ; ``energy_mac``, ``energy_sram``, ``energy_dram``,
            ``energy_decompress`` its parts.
        energy_efficiency: dense-equivalent MACs per pJ, ``M N K / energy``.
        traffic: the layer's :class:`Traffic`.
    """

    rows: Float[Array, "..."]
    cols: Float[Array, "..."]
    pes: Float[Array, "..."]
    compute_cycles: Float[Array, "..."]
    memory_cycles: Float[Array, "..."]
    cycles: Float[Array, "..."]
    throughput: Float[Array, "..."]
    throughput_per_area: Float[Array, "..."]
    energy: Float[Array, "..."]
    energy_mac: Float[Array, "..."]
    energy_sram: Float[Array, "..."]
    energy_dram: Float[Array, "..."]
    energy_decompress: Float[Array, "..."]
    energy_efficiency: Float[Array, "..."]
    traffic: Traffic


class AbstractDesign(eqx.Module):
    """An accelerator design that fits an area budget and runs a layer at a weight sparsity.

    Shared fields: ``pe_area`` (µm² of one dense int8 PE) and ``dram_bits_per_cycle``.
    """

    pe_area: eqx.AbstractVar[float | Array]
    dram_bits_per_cycle: eqx.AbstractVar[float | Array]

    @abc.abstractmethod
    def evaluate(self, m, n, k, sparsity, area_um2, energy: EnergyTable) -> DesignReport:
        """The :class:`DesignReport` of a ``(M, N, K)`` GEMM (float arrays) at ``sparsity``."""


def _square(pes):
    side = jnp.floor(jnp.sqrt(jnp.maximum(pes, 1.0)) + 1e-6)
    return side, side


def _report(m, n, k, rows, cols, compute, traffic, design, area_um2, energy, e_mac, e_dec):
    memory = jnp.ceil((traffic.dram_read_bits + traffic.dram_write_bits) / _f(design.dram_bits_per_cycle))
    cycles = jnp.maximum(compute, memory)
    macs = m * n * k
    wb = energy.word_bits
    e_sram = (traffic.sram_read_bits * _f(energy.sram_read)
              + traffic.sram_write_bits * _f(energy.sram_write)) / wb
    e_dram = (traffic.dram_read_bits + traffic.dram_write_bits) * _f(energy.dram) / wb
    total = e_mac + e_sram + e_dram + e_dec
    throughput = macs / cycles
    return DesignReport(rows=rows, cols=cols, pes=rows * cols, compute_cycles=compute, memory_cycles=memory,
                        cycles=cycles, throughput=throughput,
                        throughput_per_area=throughput / (_f(area_um2) * 1e-6),
                        energy=total, energy_mac=e_mac, energy_sram=e_sram, energy_dram=e_dram,
                        energy_decompress=e_dec, energy_efficiency=macs / total, traffic=traffic)


class DenseDecompressDesign(AbstractDesign):
    """Sparse-on-dense: a dense weight-stationary array fed by decompressors.

    The area budget minus the decompressors' share (none for :class:`Dense` storage) buys
    ``floor(area / pe_area)`` dense PEs, arranged as the largest square array. The array computes every
    MAC, zeros included (no zero gating: conservative for this design), with the weight-stationary fold
    timing of :mod:`hwsim.systolic._dataflow` plus the decompressor's stall per fold. The weights are
    stored in ``fmt`` in DRAM and SRAM.

    Attributes:
        fmt: the weight format (default :class:`CSC`, the paper's values + row indices + pointers).
        decompressor: the :class:`Decompressor`.
        pe_area: µm² per dense PE. Default 419: an 8-bit multiplier (282 µm²) and a 32-bit adder
            (137 µm²) at 45 nm (Horowitz, ISSCC 2014); registers and wiring are left out (assumption).
        dram_bits_per_cycle: DRAM bandwidth (default 512 bits per cycle, 64 GB/s at 1 GHz: an
            assumption). The activations are counted as the lowered GEMM's ``M K`` words, which for a
            convolution overcounts the DRAM reads of the input map (im2col repeats each pixel up to
            ``R S`` times), so convolutions look more memory-bound here than they are.
    """

    fmt: AbstractFormat = CSC()
    decompressor: Decompressor = Decompressor()
    pe_area: float | Array = 419.0
    dram_bits_per_cycle: float | Array = 512.0

    def evaluate(self, m, n, k, sparsity, area_um2, energy):
        share = _f(self.decompressor.area_fraction) if self.fmt.compressed else _f(0.0)
        rows, cols = _square(jnp.floor(_f(area_um2) * (1.0 - share) / _f(self.pe_area)))
        df = WeightStationary()
        sr, sc, t = df.spatiotemporal(m, n, k)
        folds = _cdiv(sr, rows) * _cdiv(sc, cols)
        stall = self.decompressor.stall_cycles(rows) if self.fmt.compressed else _f(0.0)
        compute = folds * (df.fold_cycles(rows, cols, t) + stall)
        traffic = _traffic(m, n, k, sparsity, rows, cols, self.fmt, df, 8, 32)
        e_mac = m * n * k * _f(energy.mac)
        # each weight is decompressed once per fold that loads it: once (weight stationary)
        e_dec = (k * n * _f(energy.decompress)) if self.fmt.compressed else 0.0 * k
        return _report(m, n, k, rows, cols, compute, traffic, self, area_um2, energy, e_mac, e_dec)


class SparsePEDesign(AbstractDesign):
    """A sparse-PE accelerator: fewer, larger PEs that skip zero weights by matching indices.

    Each PE takes ``area_factor`` times the area of a dense PE. The array is output stationary with
    the reduction in time (each PE streams the non-zero weights of its column with their indices and
    picks the matching activations), so a fold lasts ``T_eff + R + C - 2`` cycles with

    .. math::
        T_{\\text{eff}} = \\max\\big(1, \\lceil (1 - s) K (1 + o) \\rceil\\big),

    ``s`` the weight sparsity and ``o`` the index-matching overhead (extra cycles per effectual MAC:
    FIFO stalls, load imbalance). Energy: ``(1 - s) M N K`` effectual MACs at ``mac + index_match``
    each, weights stored in ``fmt``.

    Attributes:
        area_factor: sparse-PE area / dense-PE area. Default 4.0: an **assumption** (the paper says only
            that sparse PEs are "significantly larger"; sweep it, as ``experiments/sparse_on_dense.py``
            does).
        match_overhead: ``o`` above (default 0.1, an assumption).
        fmt: the weight storage format (default :class:`CSC`).
        pe_area, dram_bits_per_cycle: as in :class:`DenseDecompressDesign`.
    """

    area_factor: float | Array = 4.0
    match_overhead: float | Array = 0.1
    fmt: AbstractFormat = CSC()
    pe_area: float | Array = 419.0
    dram_bits_per_cycle: float | Array = 512.0

    def evaluate(self, m, n, k, sparsity, area_um2, energy):
        rows, cols = _square(jnp.floor(_f(area_um2) / (_f(self.pe_area) * _f(self.area_factor))))
        density = 1.0 - sparsity
        df = OutputStationary()
        t_eff = jnp.maximum(1.0, jnp.ceil(density * k * (1.0 + _f(self.match_overhead))))
        folds = _cdiv(m, rows) * _cdiv(n, cols)
        compute = folds * df.fold_cycles(rows, cols, t_eff)
        traffic = _traffic(m, n, k, sparsity, rows, cols, self.fmt, df, 8, 32)
        e_mac = density * m * n * k * (_f(energy.mac) + _f(energy.index_match))
        return _report(m, n, k, rows, cols, compute, traffic, self, area_um2, energy, e_mac, 0.0 * k)


def compare_designs(layer: Layer | Topology, sparsity, area_um2, *,
                    designs: dict[str, AbstractDesign] | None = None,
                    energy: EnergyTable = _ENERGY) -> dict[str, DesignReport]:
    """Throughput/area and energy of several designs at equal area on a layer at a weight sparsity.

    Args:
        layer: a :class:`Layer` or a :class:`Topology` (its layers along the leading axis).
        sparsity: fraction of zero weights in ``[0, 1)``: a scalar or an array (a sweep; it is
            broadcast after the layer axes).
        area_um2: the area budget in µm² for the PEs (and decompressors); buffers are the same in all
            designs and left out.
        designs: name -> design; default ``{"dense+decompressor": DenseDecompressDesign(),
            "sparse-PE": SparsePEDesign(), "dense": DenseDecompressDesign(fmt=Dense())}``.
        energy: the :class:`EnergyTable`.

    Returns:
        name -> :class:`DesignReport`, arrays of shape ``layer shape + sparsity shape``.

    Raises:
        TypeError/ValueError: a bad layer, a sparsity outside ``[0, 1)``, a non-positive area, a design
            that is not an :class:`AbstractDesign`.

    Example:
        >>> from hwsim import systolic
        >>> from hwsim.systolic._sparse import compare_designs
        >>> r = compare_designs(systolic.gemm(512, 512, 512), jnp.array([0.5, 0.95]), 1.0e6)
        >>> winner = r["dense+decompressor"].throughput_per_area > r["sparse-PE"].throughput_per_area
        >>> winner.tolist()      # dense wins at 50 % sparsity, the 4x larger sparse PEs at 95 %
        [True, False]
    """
    m, n, k = _layer_dims(layer)
    s = _check_sparsity(sparsity)
    area = _f(area_um2)
    if _is_concrete(area) and bool(jnp.any(area <= 0)):
        raise ValueError(f"`area_um2` must be positive, got {area_um2!r}")
    if not isinstance(energy, EnergyTable):
        raise TypeError(f"`energy` must be an EnergyTable, got {type(energy).__name__}")
    if designs is None:
        designs = {"dense+decompressor": DenseDecompressDesign(), "sparse-PE": SparsePEDesign(),
                   "dense": DenseDecompressDesign(fmt=Dense())}
    bad = [name for name, d in designs.items() if not isinstance(d, AbstractDesign)]
    if bad:
        raise TypeError(f"`designs` values must be AbstractDesign instances (DenseDecompressDesign(), "
                        f"SparsePEDesign()); not: {bad}")
    extra = jnp.ndim(s)
    m, n, k = (x.reshape(x.shape + (1,) * extra) for x in (m, n, k))
    return _evaluate(m, n, k, s, area, energy, designs)


@eqx.filter_jit
def _evaluate(m, n, k, s, area, energy, designs):
    return {name: d.evaluate(m, n, k, s, area, energy) for name, d in designs.items()}

