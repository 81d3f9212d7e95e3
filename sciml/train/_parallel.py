"""Where a training step runs: one device, ``jax.pmap`` over devices, or ``jit`` over a sharded mesh.

A strategy is an object (diffrax-style: the method is an argument, not a string switch inside ``fit``).
It places the training state and the batches, reduces gradients across devices when it has to, and
compiles the step. ``fit`` accepts the objects or the names ``None``/``"single"``, ``"pmap"`` and
``"sharded"``.

Both data-parallel strategies compute the *same* numbers as one device up to float rounding when the
loss is a mean over examples: ``Pmap`` averages per-device means of equal-sized shards (``lax.pmean``),
``Sharded`` runs the single-device program on a batch split over a mesh and lets XLA insert the
all-reduce.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .. import backend


class AbstractParallel(eqx.Module):
    """How ``fit`` distributes a training step. Subclasses implement every method below."""

    @abc.abstractmethod
    def place_state(self, state: Any) -> Any:
        """Put the (array-only) training state where the compiled step expects it."""

    @abc.abstractmethod
    def place_batch(self, batch: Any) -> Any:
        """Put one host batch where the compiled step expects it (split over devices if parallel)."""

    @abc.abstractmethod
    def compile(self, step: Callable, state: Any, batch: Any) -> Callable:
        """Wrap ``step(state, batch) -> (state, loss)`` in its transformation and trace it once
        for these arguments (errors in the user's code surface here); XLA compiles on first call."""

    @abc.abstractmethod
    def local_state(self, state: Any) -> Any:
        """The state as ordinary single-copy arrays (the first replica)."""

    @abc.abstractmethod
    def local_loss(self, loss: jax.Array) -> jax.Array:
        """The scalar loss of a step."""

    @abc.abstractmethod
    def device_key(self, key: jax.Array) -> jax.Array:
        """Inside the step: the key this device uses to sample its share of data."""

    @abc.abstractmethod
    def mean(self, tree: Any) -> Any:
        """Inside the step: average a per-device pytree (loss, gradients) over devices."""

    @abc.abstractmethod
    def constrain_sample(self, batch: Any) -> Any:
        """Inside the step: layout of a batch sampled on-device."""


def _aot(jitted, *args):
    # Lowering traces now and caches the trace, so the first call only compiles. (An AOT
    # ``.compile()`` executable would be called through a slower Python path on every step.)
    jitted.lower(*args)
    return jitted


class SingleDevice(AbstractParallel):
    """Everything on the default device (``parallel=None``)."""

    def place_state(self, state):
        return jax.device_put(state)

    def place_batch(self, batch):
        return batch

    def compile(self, step, state, batch):
        return _aot(jax.jit(step), state, batch)

    def local_state(self, state):
        return state

    def local_loss(self, loss):
        return loss

    def device_key(self, key):
        return key

    def mean(self, tree):
        return tree

    def constrain_sample(self, batch):
        return batch


def _check_n_devices(n_devices: Any) -> None:
    if n_devices is not None:
        # Validates positivity and that enough devices exist, with the backend's own message.
        backend.devices(n_devices)


class Pmap(AbstractParallel):
    """Data parallel with ``jax.pmap``: the state is replicated, each device takes an equal slice of
    the batch, gradients and loss are averaged with ``lax.pmean``.

    A batch sampled on-device (``batches`` a function of a key) is sampled *per device* with the key
    folded with the device index, so its size is the per-device batch.

    Args:
        n_devices: how many local devices to use (default: all local devices).
        axis_name: the name of the pmapped axis.
    """

    n_devices: int | None = eqx.field(default=None, static=True)
    axis_name: str = eqx.field(default="devices", static=True)

    def __check_init__(self):
        _check_n_devices(self.n_devices)

    def _devices(self) -> list:
        local = jax.local_devices()
        n = len(local) if self.n_devices is None else self.n_devices
        if n > len(local):
            raise ValueError(
                f"Pmap(n_devices={n}) asks for more than the {len(local)} local device(s)"
            )
        return local[:n]

    def place_state(self, state):
        n = len(self._devices())

        def stack(x):
            # A leaf committed to devices (one a previous pmapped fit returned, which is replicated
            # over them, or one the caller put on a device) keeps its layout when stacked, and the
            # compiled pmap rejects that ("Sharding passed to jit does not match"): uncommit it.
            if isinstance(x, jax.Array) and x.committed:
                x = jnp.asarray(np.asarray(x))
            return jnp.broadcast_to(x[None], (n,) + x.shape)

        # A stacked copy per device; the compiled pmap distributes it on the first call and keeps
        # its outputs on the devices after that.
        return jax.tree_util.tree_map(stack, state)

    def place_batch(self, batch):
        n = len(self._devices())

        def split(path, x):
            x = np.asarray(x) if not isinstance(x, jax.Array) else x
            if x.ndim == 0 or x.shape[0] % n:
                raise ValueError(
                    f"batch leaf {jax.tree_util.keystr(path) or '<root>'} has shape {x.shape}; "
                    f"its leading dimension must be divisible by the {n} pmap devices"
                )
            return x.reshape((n, x.shape[0] // n) + x.shape[1:])

        return jax.tree_util.tree_map_with_path(split, batch)

    def compile(self, step, state, batch):
        return _aot(jax.pmap(step, axis_name=self.axis_name, devices=self._devices()), state, batch)

    def local_state(self, state):
        return jax.tree_util.tree_map(lambda x: x[0], state)

    def local_loss(self, loss):
        return loss[0]

    def device_key(self, key):
        return jax.random.fold_in(key, jax.lax.axis_index(self.axis_name))

    def mean(self, tree):
        return jax.lax.pmean(tree, self.axis_name)

    def constrain_sample(self, batch):
        return batch


class Sharded(AbstractParallel):
    """Data parallel with ``jax.jit`` over a one-axis device mesh (``NamedSharding``).

    The state is replicated, batches are split along their leading axis, the step is the
    single-device program and XLA inserts the collectives. In a multi-process run
    (``sciml.train.initialize_distributed``) the mesh spans every process's devices and each process
    passes its local part of the batch.

    Args:
        n_devices: devices in the mesh (default: all, over all processes).
        axis_name: the mesh axis the batch is split along.
    """

    n_devices: int | None = eqx.field(default=None, static=True)
    axis_name: str = eqx.field(default="batch", static=True)

    def __check_init__(self):
        _check_n_devices(self.n_devices)

    def _mesh(self) -> Mesh:
        return backend.make_mesh(self.n_devices, self.axis_name)

    def place_state(self, state):
        return backend.replicate(state, self._mesh())

    def place_batch(self, batch):
        return backend.shard_batch(batch, self._mesh(), self.axis_name)

    def compile(self, step, state, batch):
        mesh = self._mesh()
        replicated = NamedSharding(mesh, PartitionSpec())
        state_sh = jax.tree_util.tree_map(lambda _: replicated, state)
        batch_sh = jax.tree_util.tree_map(
            lambda _: NamedSharding(mesh, PartitionSpec(self.axis_name)), batch
        )
        jitted = jax.jit(
            step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, replicated)
        )
        return _aot(jitted, state, batch)

    def local_state(self, state):
        if jax.process_count() == 1:
            return state
        # Replicated global arrays: every process holds a full copy on its own devices.
        return jax.tree_util.tree_map(lambda x: x.addressable_shards[0].data, state)

    def local_loss(self, loss):
        return loss.addressable_shards[0].data if jax.process_count() > 1 else loss

    def device_key(self, key):
        return key

    def mean(self, tree):
        return tree

    def constrain_sample(self, batch):
        mesh = self._mesh()
        return jax.lax.with_sharding_constraint(
            batch,
            jax.tree_util.tree_map(
                lambda x: NamedSharding(mesh, PartitionSpec(self.axis_name))
                if jnp.ndim(x) > 0
                else NamedSharding(mesh, PartitionSpec()),
                batch,
            ),
        )


_NAMED: dict[Any, Callable[[], AbstractParallel]] = {
    None: SingleDevice,
    "single": SingleDevice,
    "pmap": Pmap,
    "sharded": Sharded,
}


def resolve_parallel(parallel: Any) -> AbstractParallel:
    """Turn ``parallel`` (a strategy object or one of its names) into a strategy object.

    Raises:
        ValueError: an unknown name, listing the valid ones.
    """
    if isinstance(parallel, AbstractParallel):
        return parallel
    if isinstance(parallel, str) or parallel is None:
        try:
            return _NAMED[parallel]()
        except KeyError:
            pass
    choices = [k for k in _NAMED if k is not None]
    raise ValueError(
        f"`parallel` must be None, one of {choices}, or an AbstractParallel "
        f"(SingleDevice(), Pmap(...), Sharded(...)); got {parallel!r}"
    )
