"""Workloads for the systolic-array model: GEMM layers, convolutions lowered to GEMM, topologies.

Every layer is a matrix product ``ofmap[M, N] = ifmap[M, K] @ filter[K, N]``. A convolution is lowered
the way SCALE-Sim v3 lowers it (``scalesim.topology_utils``), without padding: an ``H x W x C`` input
and ``N`` filters of ``R x S x C`` with stride ``s`` give ``M = H_o W_o``, ``N = filters``,
``K = R S C``, with SCALE-Sim's output size

.. math::
    H_o = \\lceil (H - R + s) / s \\rceil = \\lceil (H - R) / s \\rceil + 1

(likewise ``W_o``). That is one more than a convolution's ``floor((H - R) / s) + 1`` whenever ``s``
does not divide ``H - R``: SCALE-Sim counts a last, partial window (PyTorch's ``ceil_mode=True``).
``ceil_mode=False`` in :func:`conv` and the readers gives the true convolution's size.

Topology files are SCALE-Sim's CSVs (see :func:`read_topology`); a few classic networks ship with the
package (:func:`load_topology`, names in :data:`TOPOLOGIES`).
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

#: Names of the topologies shipped in ``hwsim/systolic/data`` (see its README.md for the sources).
TOPOLOGIES: tuple[str, ...] = ("alexnet", "vgg16", "resnet18", "mobilenet", "bert_base_encoder",
                                 "googlenet", "alphagozero")


def int_dtype() -> np.dtype:
    """The integer dtype of the cycle model: int64 when JAX's 64-bit mode is on, else int32."""
    return np.dtype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return int(value)


def _sparsity(value: Any, name: str = "sparsity") -> tuple[int, int]:
    """An N:M structured-sparsity ratio as ``(n, m)`` with ``1 <= n <= m``; also parses ``"2:4"``."""
    try:
        if isinstance(value, str):
            parts = value.strip().split(":")
            if len(parts) != 2:
                raise ValueError
            n, m = (int(p.strip()) for p in parts)
        else:
            n, m = value
            n, m = _positive_int(n, name), _positive_int(m, name)
        ok = 1 <= n <= m
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be an N:M ratio with 1 <= N <= M (e.g. \"2:4\" or (2, 4)), "
                         f"got {value!r}")
    return n, m


def _dims(value: Any, name: str) -> Int[Array, "..."]:
    """A GEMM dimension as an integer array leaf (Python ints, NumPy or JAX integer arrays)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    if isinstance(value, (int, np.integer)):
        _positive_int(value, name)
        check_int32_range({f"`{name}`": int(value)})
        return jnp.asarray(value, int_dtype())
    if isinstance(value, (list, tuple, np.ndarray)):
        # checked on the host: converting to int32 would raise deep in JAX or wrap around silently
        host = np.asarray(value)
        if np.issubdtype(host.dtype, np.integer):
            check_int32_range({f"`{name}`": host})
    try:
        arr = jnp.asarray(value)
    except TypeError as e:
        raise TypeError(f"`{name}` must be a positive int or an integer array, got "
                        f"{type(value).__name__}") from e
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"`{name}` must be an integer array, got dtype {arr.dtype}")
    if _is_concrete(arr) and arr.size and int(arr.min()) < 1:
        raise ValueError(f"`{name}` must be >= 1 everywhere, got min {int(arr.min())}")
    return arr.astype(int_dtype())


class ConvGeometry(eqx.Module):
    """The convolution a :class:`Layer` was lowered from (``layer.geometry``; ``None`` for a GEMM).

    The memory model reads it to count the distinct input words the overlapping windows of the im2col
    matrix touch and how far apart their re-uses are (SCALE-Sim lowers without padding, and its
    ceil-mode last window reads past the input: those words are not fetched).

    Attributes:
        ifmap_height, ifmap_width: input size ``H, W``.
        filter_height, filter_width: filter size ``R, S``.
        channels: input channels ``C``.
        stride_h, stride_w: strides.
        ofmap_height, ofmap_width: output size (``ofmap_height * ofmap_width = M``).
    """

    ifmap_height: Int[Array, "..."]
    ifmap_width: Int[Array, "..."]
    filter_height: Int[Array, "..."]
    filter_width: Int[Array, "..."]
    channels: Int[Array, "..."]
    stride_h: Int[Array, "..."]
    stride_w: Int[Array, "..."]
    ofmap_height: Int[Array, "..."]
    ofmap_width: Int[Array, "..."]

    @classmethod
    def _of_ints(cls, *values: int) -> ConvGeometry:
        return cls(*(jnp.asarray(v, int_dtype()) for v in values))

    @classmethod
    def _of_gemm(cls, m: Int[Array, ""], k: Int[Array, ""]) -> ConvGeometry:
        # SCALE-Sim's GEMM input: an M x K ifmap, one channel, a 1 x K filter (no window overlaps)
        one = jnp.ones_like(m)
        return cls(m, k, one, k, one, one, one, m, one)


class Layer(eqx.Module):
    """One GEMM ``ofmap[M, N] = ifmap[M, K] @ filter[K, N]``; build with :func:`gemm` or :func:`conv`.

    Attributes:
        m: rows of the ifmap and the ofmap (output pixels for a convolution).
        n: columns of the filter and the ofmap (number of filters).
        k: the reduction length (``R * S * C`` for a convolution).
        name: the layer's name (from the topology file).
        sparsity: the N:M ratio of the topology file's optional sparsity column, ``(1, 1)`` for dense.
            SCALE-Sim uses it only when sparsity support is switched on in its config; the dense
            model here records it and ignores it.
        geometry: the :class:`ConvGeometry` of a layer built by :func:`conv` (or a convolution row of a
            topology file), ``None`` for a GEMM.
    """

    m: Int[Array, "..."]
    n: Int[Array, "..."]
    k: Int[Array, "..."]
    name: str = eqx.field(default="layer", static=True)
    sparsity: tuple[int, int] = eqx.field(default=(1, 1), static=True)
    geometry: ConvGeometry | None = None

    @property
    def macs(self) -> Int[Array, "..."]:
        """Multiply-accumulates of the layer, ``M N K``."""
        return self.m * self.n * self.k


def gemm(m, n, k, *, name: str = "gemm", sparsity=(1, 1)) -> Layer:
    """A GEMM layer ``ofmap[M, N] = ifmap[M, K] @ filter[K, N]``.

    Args:
        m: ifmap/ofmap rows, a positive int (or an integer array of them, for batches of layers).
        n: filter/ofmap columns.
        k: the reduction length.
        name: the layer's name.
        sparsity: N:M structured sparsity of the filter, ``(n, m)`` or ``"n:m"`` (recorded only).

    Returns:
        A :class:`Layer`.

    Raises:
        ValueError: a dimension that is not a positive int (the message names it), a bad sparsity.

    Example:
        >>> from hwsim import systolic
        >>> layer = systolic.gemm(128, 768, 3072, name="ffn2")
        >>> int(layer.macs)
        301989888
    """
    return Layer(m=_dims(m, "m"), n=_dims(n, "n"), k=_dims(k, "k"), name=str(name),
                 sparsity=_sparsity(sparsity))


_gemm = gemm  # for parse_topology, whose `gemm` flag shadows the function


def conv_output_size(ifmap: int, filt: int, stride: int, *, ceil_mode: bool = True) -> int:
    """Output size of an unpadded convolution: SCALE-Sim's ``ceil((ifmap - filt) / stride) + 1``, or
    with ``ceil_mode=False`` the convolution's ``floor((ifmap - filt) / stride) + 1``."""
    return (ifmap - filt + (stride - 1 if ceil_mode else 0)) // stride + 1


def conv(ifmap_height: int, ifmap_width: int, filter_height: int, filter_width: int, channels: int,
         num_filters: int, stride: int | tuple[int, int] = 1, *, name: str = "conv",
         sparsity=(1, 1), ceil_mode: bool = True) -> Layer:
    """A 2D convolution lowered to GEMM exactly as SCALE-Sim v3 lowers it (no padding).

    ``M = H_o W_o`` with SCALE-Sim's ``H_o = ceil((H - R) / stride) + 1`` (likewise ``W_o``),
    ``N = num_filters``, ``K = R S C``. SCALE-Sim rounds up: when the stride does not divide ``H - R``
    it counts one more output row than the convolution has (``floor((H - R) / stride) + 1``); pass
    ``ceil_mode=False`` for the true size. Pad the ifmap sizes yourself (``H + 2p``) to model a padded
    convolution.

    Args:
        ifmap_height, ifmap_width: input feature map size ``H, W``.
        filter_height, filter_width: filter size ``R, S`` (at most the ifmap size).
        channels: input channels ``C``.
        num_filters: number of filters (output channels) ``N``.
        stride: one stride for both directions (SCALE-Sim's single ``Strides`` column) or
            ``(stride_h, stride_w)``.
        name: the layer's name.
        sparsity: N:M structured sparsity of the filter (recorded only).
        ceil_mode: round the output size up as SCALE-Sim does (default), or down as a convolution does.

    Returns:
        A :class:`Layer` with the lowered ``(M, N, K)`` and the convolution's :class:`ConvGeometry`.

    Raises:
        ValueError: a non-positive size (named), or a filter larger than the ifmap.

    Example:
        >>> from hwsim import systolic
        >>> layer = systolic.conv(224, 224, 11, 11, 3, 96, 4, name="alexnet_conv1")
        >>> int(layer.m), int(layer.n), int(layer.k)   # 55 x 55 outputs, as SCALE-Sim counts them
        (3025, 96, 363)
        >>> int(systolic.conv(224, 224, 11, 11, 3, 96, 4, ceil_mode=False).m)   # floor: 54 x 54
        2916
    """
    h = _positive_int(ifmap_height, "ifmap_height")
    w = _positive_int(ifmap_width, "ifmap_width")
    r = _positive_int(filter_height, "filter_height")
    s = _positive_int(filter_width, "filter_width")
    c = _positive_int(channels, "channels")
    n = _positive_int(num_filters, "num_filters")
    if isinstance(stride, (tuple, list)):
        if len(stride) != 2:
            raise ValueError(f"`stride` must be an int or a pair (stride_h, stride_w), got {stride!r}")
        sh, sw = _positive_int(stride[0], "stride"), _positive_int(stride[1], "stride")
    else:
        sh = sw = _positive_int(stride, "stride")
    if r > h:
        raise ValueError(f"`filter_height`={r} is larger than `ifmap_height`={h}; SCALE-Sim does not "
                         "pad, so pass the padded ifmap size (H + 2 * padding)")
    if s > w:
        raise ValueError(f"`filter_width`={s} is larger than `ifmap_width`={w}; SCALE-Sim does not "
                         "pad, so pass the padded ifmap size (W + 2 * padding)")
    if not isinstance(ceil_mode, bool):
        raise ValueError(f"`ceil_mode` must be True or False, got {ceil_mode!r}")
    ho = conv_output_size(h, r, sh, ceil_mode=ceil_mode)
    wo = conv_output_size(w, s, sw, ceil_mode=ceil_mode)
    layer = gemm(ho * wo, n, r * s * c, name=name, sparsity=sparsity)
    return Layer(m=layer.m, n=layer.n, k=layer.k, name=layer.name, sparsity=layer.sparsity,
                 geometry=ConvGeometry._of_ints(h, w, r, s, c, sh, sw, ho, wo))


class Topology(eqx.Module):
    """A network: its layers' GEMM dimensions stacked along a leading axis.

    Build from layers with ``Topology([layer, ...])``, from a SCALE-Sim CSV with
    :func:`read_topology`, or load a shipped network with :func:`load_topology`. Indexing gives a
    :class:`Layer`; ``len`` the number of layers.

    Attributes:
        m, n, k: shape ``(layers,)``, see :class:`Layer`.
        names: the layers' names.
        sparsity: the layers' N:M ratios.
        name: the network's name.
        geometry: the layers' :class:`ConvGeometry` stacked (shape ``(layers,)`` each), ``None`` when
            no layer is a convolution; GEMM layers among convolutions hold SCALE-Sim's GEMM input (an
            ``M x K`` ifmap with a ``1 x K`` filter), which lowers to the same ``M, N, K``.
        is_conv: per layer, whether it came from a convolution (its ``geometry`` when indexed).
    """

    m: Int[Array, " layers"]
    n: Int[Array, " layers"]
    k: Int[Array, " layers"]
    names: tuple[str, ...] = eqx.field(static=True)
    sparsity: tuple[tuple[int, int], ...] = eqx.field(static=True)
    name: str = eqx.field(static=True)
    geometry: ConvGeometry | None
    is_conv: tuple[bool, ...] = eqx.field(static=True)

    def __init__(self, layers: Sequence[Layer], *, name: str = "topology"):
        layers = list(layers)
        if not layers or not all(isinstance(x, Layer) for x in layers):
            raise TypeError("`layers` must be a non-empty sequence of hwsim.systolic.Layer (from gemm() "
                            f"or conv()), got {[type(x).__name__ for x in layers][:5]}")
        if any(jnp.ndim(x.m) or jnp.ndim(x.n) or jnp.ndim(x.k) for x in layers):
            raise ValueError("`layers` must be single (unbatched) layers to stack into a Topology")
        self.m = jnp.stack([x.m for x in layers])
        self.n = jnp.stack([x.n for x in layers])
        self.k = jnp.stack([x.k for x in layers])
        self.names = tuple(x.name for x in layers)
        self.sparsity = tuple(x.sparsity for x in layers)
        self.name = str(name)
        self.is_conv = tuple(x.geometry is not None for x in layers)
        if any(self.is_conv):
            geoms = [x.geometry if x.geometry is not None else ConvGeometry._of_gemm(x.m, x.k)
                     for x in layers]
            self.geometry = jax.tree.map(lambda *v: jnp.stack(v), *geoms)
        else:
            self.geometry = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Layer:
        geometry = (jax.tree.map(lambda v: v[i], self.geometry)
                    if self.geometry is not None and self.is_conv[i] else None)
        return Layer(m=self.m[i], n=self.n[i], k=self.k[i], name=self.names[i],
                     sparsity=self.sparsity[i], geometry=geometry)

    @property
    def layers(self) -> list[Layer]:
        return [self[i] for i in range(len(self))]

    @property
    def macs(self) -> Int[Array, " layers"]:
        return self.m * self.n * self.k


# --------------------------------------------------------------------------------------------------
# SCALE-Sim topology CSVs
# --------------------------------------------------------------------------------------------------

_CONV_COLUMNS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
                 "Num Filter", "Strides")
_GEMM_COLUMNS = ("M", "N", "K")


def _split_row(line: str) -> list[str]:
    # An inline '#' comment ends the row (SCALE-Sim's own mobilnet_paper.csv tags rows with '#dw'
    # after the trailing comma; SCALE-Sim drops that last field).
    fields = [f.strip() for f in line.split("#", 1)[0].split(",")]
    if fields and fields[-1] == "":
        fields.pop()  # the customary trailing comma
    return fields


def _looks_gemm(header: list[str]) -> bool:
    return [h.upper() for h in header[1:4]] == list(_GEMM_COLUMNS)


def _row_int(value: str, column: str, where: str) -> int:
    try:
        v = int(value)
    except ValueError:
        v = 0
    if v < 1:
        raise ValueError(f"{where}: column {column!r} must be a positive int, got {value!r}")
    return v


def parse_topology(text: str, *, gemm: bool | None = None, ceil_mode: bool = True,
                   name: str = "topology", source: str = "<string>") -> Topology:
    """Parse the text of a SCALE-Sim topology CSV; see :func:`read_topology` for the format."""
    lines = text.splitlines()
    if not lines:
        raise ValueError(f"{source}: the topology file is empty (it needs a header line and layers)")
    header = _split_row(lines[0])
    is_gemm = _looks_gemm(header) if gemm is None else bool(gemm)
    columns = _GEMM_COLUMNS if is_gemm else _CONV_COLUMNS
    layers: list[Layer] = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = _split_row(line)
        if not fields or fields == [""]:
            continue
        where = f"{source}, line {lineno}"
        if len(fields) not in (len(columns) + 1, len(columns) + 2):
            kind = "GEMM" if is_gemm else "convolution"
            raise ValueError(
                f"{where}: a {kind} row needs {len(columns) + 1} fields (Layer name, "
                f"{', '.join(columns)}) and optionally an N:M sparsity, got {len(fields)}: {line.strip()!r}"
            )
        lname = fields[0]
        values = [_row_int(v, c, where) for v, c in zip(fields[1:len(columns) + 1], columns)]
        sparsity = (1, 1)
        if len(fields) == len(columns) + 2:
            try:
                sparsity = _sparsity(fields[-1], "Sparsity")
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        if is_gemm:
            layers.append(_gemm(*values, name=lname, sparsity=sparsity))
            continue
        h, w, r, s, c, nf, stride = values
        try:
            if "DP" in lname:
                # SCALE-Sim's depthwise convention: a name containing "DP" becomes one single-channel
                # layer per channel, named <name>Channel_<i>.
                layers += [conv(h, w, r, s, 1, nf, stride, name=f"{lname}Channel_{i}",
                                sparsity=sparsity, ceil_mode=ceil_mode) for i in range(c)]
            else:
                layers.append(conv(h, w, r, s, c, nf, stride, name=lname, sparsity=sparsity,
                                   ceil_mode=ceil_mode))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    if not layers:
        raise ValueError(f"{source}: no layers found after the header line")
    return Topology(layers, name=name)


def read_topology(path: str | os.PathLike, *, gemm: bool | None = None, ceil_mode: bool = True
                  ) -> Topology:
    """Read a SCALE-Sim topology CSV.

    Two formats, each with one header line (skipped) and one row per layer:

    * convolutions: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
      Num Filter, Strides,`` (one stride for both directions);
    * GEMMs: ``Layer, M, N, K,`` (SCALE-Sim's ``-i gemm`` mode; it lowers them to an ``M x K`` ifmap
      with a ``1 x K`` filter, which gives back exactly ``M, N, K``).

    Either may end with an ``N:M`` sparsity column (``2:4``); without it a layer is dense (``1:1``).
    Fields are stripped of spaces and tabs, blank lines are skipped, and text after ``#`` is a comment.
    The customary trailing comma is optional here. (SCALE-Sim always drops the last field of a row,
    so it misreads rows that lack the trailing comma; this reader keeps them.) As in SCALE-Sim, a
    convolution whose name contains ``DP`` is depthwise: it becomes ``Channels`` single-channel
    layers named ``<name>Channel_<i>``.

    Args:
        path: the CSV file.
        gemm: ``True`` for the GEMM format, ``False`` for convolutions, ``None`` (default) to detect it
            from the header (``M, N, K`` as its 2nd to 4th columns means GEMM).
        ceil_mode: SCALE-Sim's rounding of convolution output sizes (default; see :func:`conv`).

    Returns:
        A :class:`Topology` named after the file's stem.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a malformed row (the message gives the file, line and column), a filter larger
            than its ifmap, or a file without layers.

    Example:
        >>> import pathlib, tempfile
        >>> from hwsim import systolic
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "net.csv"
        >>> _ = p.write_text("Layer, M, N, K,\\nfc1, 64, 32, 128,\\nfc2, 64, 10, 32, 2:4,\\n")
        >>> topo = systolic.read_topology(p)
        >>> topo.names, topo.sparsity
        (('fc1', 'fc2'), ((1, 1), (2, 4)))
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"`path`: topology file {p!r} does not exist")
    with open(p, encoding="utf-8") as f:
        text = f.read()
    stem = os.path.splitext(os.path.basename(p))[0]
    return parse_topology(text, gemm=gemm, ceil_mode=ceil_mode, name=stem, source=p)


def load_topology(name: str, *, ceil_mode: bool = True) -> Topology:
    """One of the topologies shipped with the package (``hwsim/systolic/data/<name>.csv``).

    Args:
        name: one of :data:`TOPOLOGIES`: ``"alexnet"``, ``"vgg16"``, ``"resnet18"``, ``"mobilenet"``,
            ``"googlenet"`` (from SCALE-Sim's topology files or the papers), ``"alphagozero"`` (Silver
            et al. 2017: 19 residual blocks and the two heads) or ``"bert_base_encoder"`` (one
            BERT-base encoder block at sequence length 128, as GEMMs). ``data/README.md`` gives the
            sources.
        ceil_mode: SCALE-Sim's rounding of convolution output sizes (default; see :func:`conv`).

    Returns:
        A :class:`Topology`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:
        >>> from hwsim import systolic
        >>> len(systolic.load_topology("alexnet"))
        5
    """
    if name not in TOPOLOGIES:
        raise ValueError(f"`name` must be one of {TOPOLOGIES}, got {name!r}")
    text = importlib.resources.files(__package__).joinpath("data", f"{name}.csv").read_text("utf-8")
    return parse_topology(text, ceil_mode=ceil_mode, name=name, source=f"hwsim/systolic/data/{name}.csv")


def check_int32_range(values: dict[str, Any]) -> None:
    """Raise if a count computed in 64 bits would overflow the int32 the model uses without x64."""
    if int_dtype() == np.int64:
        return
    limit = np.iinfo(np.int32).max
    for key, v in values.items():
        big = int(np.max(v)) if np.size(v) else 0
        if big > limit:
            raise ValueError(
                f"the {key} of this workload ({big}) overflow int32, the integer type of the model while "
                "JAX's 64-bit mode is off; call `sciml.backend.set_precision('float64')` (which turns "
                "on 64-bit mode) before building the workload"
            )


__all__ = ["TOPOLOGIES", "ConvGeometry", "Layer", "Topology", "conv", "conv_output_size", "gemm",
           "load_topology", "parse_topology", "read_topology"]
