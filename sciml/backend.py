"""The one array backend of sciml.

Every package of the project (``sciml.nn``, ``sciml.train``, ``sciml.ct``, ``pde``, ``symbolic``,
``hwsim``) asks this module for dtypes, devices, meshes, PRNG keys, quantisation and matrix products;
none of them picks a dtype or a device on its own.

**Precision policy.** The default real dtype is ``float32``. Ask for ``float64`` either

* by a function, ``sciml.backend.set_precision("float64")`` (or the context manager
  ``with sciml.backend.precision("float64"): ...``), or
* by the environment, ``SCIML_PRECISION=float64`` set before ``sciml`` is imported.

Either way JAX's own 64-bit switch (``jax_enable_x64``) is turned on, since float64 arrays cannot exist
without it. ``bfloat16`` and ``float16`` are valid *requested* dtypes (the hardware simulators compute in
them) and ``complex64``/``complex128`` follow the real precision (:func:`complex_dtype`).

**Devices.** :func:`devices`, :func:`make_mesh` and :func:`shard_batch` wrap ``jax.devices``,
``jax.make_mesh`` and ``NamedSharding`` with errors that say what was asked and what exists.

**Matmul.** :func:`matmul` is the product the networks and the simulators share: shape-checked at the
boundary, float products at ``Precision.HIGHEST`` (no silent TF32/bf16 passes on accelerators), integer
products accumulated exactly in int32 (what a systolic array's MAC does).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._checks import check_float_array as check_float_array
from ._quantize import Quantized as Quantized
from ._quantize import dequantize as dequantize
from ._quantize import fake_quantize as fake_quantize
from ._quantize import quantize as quantize

__all__ = [
    "PRECISIONS",
    "Quantized",
    "as_array",
    "check_float_array",
    "complex_dtype",
    "default_dtype",
    "dequantize",
    "device_count",
    "devices",
    "fake_quantize",
    "float_dtype",
    "key",
    "make_mesh",
    "matmul",
    "precision",
    "quantize",
    "replicate",
    "set_precision",
    "shard_batch",
    "split_key",
    "split_like",
]

# --------------------------------------------------------------------------------------------------
# Precision policy
# --------------------------------------------------------------------------------------------------

#: Names accepted wherever a precision/dtype is requested.
PRECISIONS: dict[str, Any] = {
    "float32": jnp.float32,
    "float64": jnp.float64,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
}
_DEFAULT_CHOICES = ("float32", "float64")
_ENV_VAR = "SCIML_PRECISION"


class _Policy:
    """The process-wide default real dtype (like ``jax_enable_x64``, which it extends)."""

    name: str = "float32"


def _check_default_name(name: Any, arg: str) -> str:
    if not isinstance(name, str) or name not in _DEFAULT_CHOICES:
        raise ValueError(
            f"`{arg}` must be one of {list(_DEFAULT_CHOICES)} (the default real precision), got {name!r}"
        )
    return name


def set_precision(name: str) -> None:
    """Set the default real dtype of sciml to ``"float32"`` or ``"float64"``.

    ``"float64"`` also switches on ``jax_enable_x64``. Call it before building models or data.

    Raises:
        ValueError: for any other name.

    ``"float32"`` does not switch 64-bit mode off again (other code may rely on it); the
    :func:`precision` context manager restores both.

    Example (at the top of a script; inside a library prefer ``with precision("float64"):``)::

        import sciml.backend as B
        B.set_precision("float64")
    """
    name = _check_default_name(name, "name")
    if name == "float64":
        jax.config.update("jax_enable_x64", True)
    _Policy.name = name


@contextlib.contextmanager
def precision(name: str) -> Iterator[None]:
    """Context manager: the default precision is ``name`` inside the block, restored after it.

    Example:
        >>> import sciml.backend as B
        >>> with B.precision("float64"):
        ...     B.default_dtype()
        dtype('float64')
        >>> B.default_dtype()
        dtype('float32')
    """
    old_name, old_x64 = _Policy.name, jax.config.jax_enable_x64
    set_precision(name)
    try:
        yield
    finally:
        _Policy.name = old_name
        jax.config.update("jax_enable_x64", old_x64)


def default_dtype() -> np.dtype:
    """The default real dtype (float32 unless float64 was requested)."""
    if _Policy.name == "float64" and not jax.config.jax_enable_x64:
        # Somebody switched x64 off behind our back: follow JAX rather than hand out a dtype it
        # would silently truncate.
        return np.dtype(jnp.float32)
    return np.dtype(PRECISIONS[_Policy.name])


def float_dtype(dtype: Any = None) -> np.dtype:
    """Resolve a requested real dtype: ``None`` gives the default; names or dtypes are checked.

    Raises:
        ValueError: unknown name, a non-float dtype, or float64 while 64-bit mode is off.
    """
    if dtype is None:
        return default_dtype()
    if isinstance(dtype, str):
        if dtype not in PRECISIONS:
            raise ValueError(f"`dtype` must be one of {list(PRECISIONS)} or None, got {dtype!r}")
        resolved = np.dtype(PRECISIONS[dtype])
    else:
        try:
            resolved = np.dtype(dtype)
        except TypeError as e:
            raise ValueError(f"`dtype` must be a real floating dtype, got {dtype!r}") from e
        if not jnp.issubdtype(resolved, jnp.floating):
            raise ValueError(
                f"`dtype` must be a real floating dtype ({list(PRECISIONS)}), got {resolved}"
            )
    if resolved == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "float64 was requested but 64-bit mode is off; call "
            "`sciml.backend.set_precision('float64')` or set SCIML_PRECISION=float64 first"
        )
    return resolved


def complex_dtype(dtype: Any = None) -> np.dtype:
    """The complex dtype matching a real precision: complex64 for <=32-bit floats, else complex128."""
    if dtype is not None and not isinstance(dtype, str):
        d = np.dtype(dtype)
        if jnp.issubdtype(d, jnp.complexfloating):
            dtype = "float64" if d == np.complex128 else "float32"
    real = float_dtype(dtype)
    return np.dtype(jnp.complex128 if real == np.float64 else jnp.complex64)


def as_array(x: Any, dtype: Any = None, *, name: str = "x") -> jax.Array:
    """Convert ``x`` to a float array of the policy dtype, rejecting non-numeric input by name."""
    dt = float_dtype(dtype)
    try:
        arr = jnp.asarray(x)
    except TypeError as e:
        raise TypeError(f"`{name}` must be array-like, got {type(x).__name__}") from e
    if not (
        jnp.issubdtype(arr.dtype, jnp.number) or jnp.issubdtype(arr.dtype, jnp.bool_)
    ) or jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"`{name}` must be real numeric, got dtype {arr.dtype}")
    return arr.astype(dt)


# --------------------------------------------------------------------------------------------------
# Devices, meshes, sharding
# --------------------------------------------------------------------------------------------------


def devices(n: int | None = None, *, backend: str | None = None) -> list[jax.Device]:
    """The first ``n`` devices of ``backend`` (all of them when ``n`` is None), across all processes.

    Raises:
        ValueError: ``n`` is not a positive int, or more devices are asked for than exist.
    """
    available = jax.devices(backend)
    if n is None:
        return list(available)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` (number of devices) must be a positive int, got {n!r}")
    if n > len(available):
        raise ValueError(
            f"asked for {n} devices but only {len(available)} {available[0].platform} device(s) "
            f"exist; on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={n} before "
            "importing jax to simulate more"
        )
    return list(available[:n])


def device_count(backend: str | None = None) -> int:
    """Number of devices (over all processes)."""
    return jax.device_count(backend)


def make_mesh(
    n_devices: int | None = None, axis_name: str = "batch", *, backend: str | None = None
) -> Mesh:
    """A one-axis device mesh for data parallelism over ``n_devices`` devices (default: all).

    Example:
        >>> mesh = make_mesh(1)
        >>> mesh.axis_names
        ('batch',)
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise ValueError(f"`axis_name` must be a non-empty str, got {axis_name!r}")
    devs = devices(n_devices, backend=backend)
    return Mesh(np.asarray(devs), (axis_name,))


def _check_mesh_axis(mesh: Mesh, axis: str) -> int:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh (see make_mesh), got {type(mesh)}")
    if axis not in mesh.axis_names:
        raise ValueError(f"`axis` {axis!r} is not an axis of the mesh {mesh.axis_names}")
    return mesh.shape[axis]


def shard_batch(batch: Any, mesh: Mesh, axis: str = "batch") -> Any:
    """Place every array leaf of ``batch`` on ``mesh``, split along its leading dimension.

    In a multi-process run each process passes its *local* part and the global array is assembled
    with ``jax.make_array_from_process_local_data``.

    Raises:
        ValueError: a leaf is a scalar, or its leading dimension is not divisible by the number of
            devices along ``axis``.
    """
    n = _check_mesh_axis(mesh, axis)
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    multi = jax.process_count() > 1
    local_n = n // jax.process_count() if multi else n

    def place(path, leaf):
        leaf = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
        if leaf.ndim == 0 or leaf.shape[0] % local_n != 0:
            raise ValueError(
                f"batch leaf {jax.tree_util.keystr(path) or '<root>'} has shape {leaf.shape}; its "
                f"leading (batch) dimension must be divisible by the {local_n} device(s) along "
                f"mesh axis {axis!r}"
            )
        if multi:
            return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
        return jax.device_put(leaf, sharding)

    return jax.tree_util.tree_map_with_path(place, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array leaf of ``tree`` on all devices of ``mesh`` (fully replicated)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh, got {type(mesh)}")
    sharding = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            return leaf
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = place(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree_util.tree_map(place, tree)


# --------------------------------------------------------------------------------------------------
# PRNG
# --------------------------------------------------------------------------------------------------


def key(seed: int) -> jax.Array:
    """A typed PRNG key from an integer seed.

    Raises:
        TypeError: ``seed`` is not an int.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__} {seed!r}")
    return jax.random.key(int(seed))


def _check_key(k: Any, name: str = "key") -> jax.Array:
    if not isinstance(k, jax.Array):
        raise TypeError(f"`{name}` must be a JAX PRNG key (sciml.backend.key(seed)), got {type(k)}")
    if jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
        return k
    if k.dtype == jnp.uint32 and k.shape[-1:] == (2,):
        return k  # a raw (legacy) key
    raise TypeError(
        f"`{name}` must be a JAX PRNG key (sciml.backend.key(seed)), got an array of dtype "
        f"{k.dtype} and shape {k.shape}"
    )


def split_key(k: jax.Array, num: int = 2) -> jax.Array:
    """``jax.random.split`` with the key checked."""
    return jax.random.split(_check_key(k), num)


def split_like(k: jax.Array, tree: Any) -> Any:
    """One independent key per leaf of ``tree``, in a tree of the same structure."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(_check_key(k), max(len(leaves), 1))
    return jax.tree_util.tree_unflatten(treedef, list(keys[: len(leaves)]))


# --------------------------------------------------------------------------------------------------
# Matmul
# --------------------------------------------------------------------------------------------------


def _kind(dtype: np.dtype) -> str:
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return "complex"
    if jnp.issubdtype(dtype, jnp.floating):
        return "float"
    if jnp.issubdtype(dtype, jnp.integer):
        return "int"
    return "other"


def _common_float(da: np.dtype, db: np.dtype) -> np.dtype:
    def bits(d):  # precision of the real part
        return np.dtype(d).itemsize * 8 // (2 if jnp.issubdtype(d, jnp.complexfloating) else 1)

    wide = da if bits(da) >= bits(db) else db
    if jnp.issubdtype(da, jnp.complexfloating) or jnp.issubdtype(db, jnp.complexfloating):
        return np.dtype(jnp.complex128 if bits(wide) > 32 else jnp.complex64)
    if bits(da) == bits(db):  # float16 vs bfloat16: neither holds the other
        return np.dtype(jnp.float32)
    return np.dtype(wide)


def matmul(
    a: jax.Array,
    b: jax.Array,
    *,
    preferred_element_type: Any = None,
) -> jax.Array:
    """The matrix product shared by networks and simulators: ``a @ b`` with checked shapes.

    ``a`` is ``(..., m, k)`` or ``(k,)``; ``b`` is ``(k, n)`` or ``(k,)`` (batched ``b`` is a vmap away).
    Float and complex products run at ``lax.Precision.HIGHEST``; integer products accumulate in int32
    (or ``preferred_element_type``), exactly, as an int8 MAC array does.

    Raises:
        ValueError: inner dimensions differ, or a rank is unsupported.
        TypeError: ``a`` and ``b`` are of different kinds (int vs float) or not numeric.

    Example:
        >>> matmul(jnp.ones((2, 3)), jnp.ones((3, 4))).shape
        (2, 4)
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    ka, kb = _kind(a.dtype), _kind(b.dtype)
    if "other" in (ka, kb):
        raise TypeError(f"`a` and `b` must be numeric, got dtypes {a.dtype} and {b.dtype}")
    if ka != kb and not {ka, kb} == {"float", "complex"}:
        raise TypeError(
            f"`a` ({a.dtype}) and `b` ({b.dtype}) must both be integer or both be floating; "
            "quantize or dequantize one of them first"
        )
    if a.ndim == 0 or b.ndim == 0 or b.ndim > 2:
        raise ValueError(
            f"`a` must have shape (..., m, k) or (k,) and `b` (k, n) or (k,), got {a.shape} and "
            f"{b.shape}"
        )
    if a.shape[-1] != b.shape[0]:
        raise ValueError(
            f"matmul inner dimensions differ: `a` has shape {a.shape} (k={a.shape[-1]}) but `b` has "
            f"shape {b.shape} (k={b.shape[0]})"
        )
    if ka == "int" and kb == "int":
        out_t = jnp.int32 if preferred_element_type is None else preferred_element_type
        return jnp.matmul(a, b, preferred_element_type=out_t)
    if a.dtype != b.dtype:
        # An explicit, documented promotion (valid under strict dtype promotion too): the wider
        # precision wins, and a real operand joins a complex one as complex.
        common = _common_float(a.dtype, b.dtype)
        a, b = a.astype(common), b.astype(common)
    return jnp.matmul(
        a, b, precision=jax.lax.Precision.HIGHEST, preferred_element_type=preferred_element_type
    )


def _init_from_env() -> None:
    name = os.environ.get(_ENV_VAR)
    if name:
        set_precision(_check_default_name(name.strip().lower(), _ENV_VAR))


_init_from_env()
