"""Checkpoints: save and restore a pytree (a ``TrainState``: model, optimiser state, step, key).

A checkpoint is a directory holding ``leaves.eqx`` (``equinox.tree_serialise_leaves``) and
``manifest.json`` (every leaf's path, shape and dtype). Restoring needs a ``like`` pytree of the same
structure; the manifest is compared with it first, so a checkpoint of another model fails with an
error that names the mismatched leaf instead of a shape error deep inside deserialisation.

Typed PRNG keys are stored as their raw key data and re-wrapped on load. Writes are atomic (written
to a temporary directory, then renamed), so an interrupted save never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

_LEAVES = "leaves.eqx"
_MANIFEST = "manifest.json"
_FORMAT = 1
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_storable(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _describe(tree: Any) -> list[dict]:
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        entry: dict[str, Any] = {"path": jax.tree_util.keystr(path)}
        if _is_key(leaf):
            entry.update(shape=list(leaf.shape), dtype=f"key<{jax.random.key_impl(leaf)}>")
        elif isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            entry.update(shape=list(np.shape(leaf)), dtype=str(np.asarray(leaf).dtype)
                         if not isinstance(leaf, jax.Array) else str(leaf.dtype))
        else:
            entry.update(shape=None, dtype=type(leaf).__name__)
        out.append(entry)
    return out


def save_checkpoint(path: str | os.PathLike, tree: Any, *, metadata: dict | None = None) -> pathlib.Path:
    """Write ``tree`` (e.g. ``history.state`` from ``fit``) to the checkpoint directory ``path``.

    An existing checkpoint at ``path`` is replaced atomically.

    Returns:
        The checkpoint path.
    """
    path = pathlib.Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = jax.device_get(tree) if jax.process_count() == 1 else tree
    manifest = {"format": _FORMAT, "leaves": _describe(tree), "metadata": metadata or {}}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        eqx.tree_serialise_leaves(tmp / _LEAVES, _to_storable(tree))
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def latest_checkpoint(directory: str | os.PathLike) -> pathlib.Path | None:
    """The ``step_N`` checkpoint with the largest N under ``directory`` (written by ``Checkpoint``),
    or None when there is none."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / _MANIFEST).exists()]
    return max(found)[1] if found else None


def load_checkpoint(path: str | os.PathLike, like: Any) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint` into a pytree shaped like ``like``.

    ``path`` may also be a directory of ``Checkpoint`` snapshots; the latest one is read.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: the checkpoint's structure differs from ``like``; the message names the first
            mismatched leaf (path, expected and stored shape/dtype).
    """
    path = pathlib.Path(path)
    if not (path / _MANIFEST).exists():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(
                f"no checkpoint at {str(path)!r} (expected a directory with {_MANIFEST} written by "
                "sciml.train.save_checkpoint, or a directory of step_N checkpoints)"
            )
        path = latest
    manifest = json.loads((path / _MANIFEST).read_text())
    stored = manifest.get("leaves", [])
    expected = _describe(like)
    for i, (want, got) in enumerate(zip(expected, stored)):
        if want != got:
            raise ValueError(
                f"checkpoint {str(path)!r} does not match the model: leaf #{i} {want['path']} is "
                f"expected with shape {want['shape']} and dtype {want['dtype']}, but the checkpoint "
                f"has {got['path']} with shape {got['shape']} and dtype {got['dtype']}"
            )
    if len(expected) != len(stored):
        extra = (stored if len(stored) > len(expected) else expected)[min(len(stored), len(expected))]
        raise ValueError(
            f"checkpoint {str(path)!r} does not match the model: it has {len(stored)} leaves where "
            f"{len(expected)} are expected (first unmatched leaf: {extra['path']})"
        )
    loaded = eqx.tree_deserialise_leaves(path / _LEAVES, _to_storable(like))
    return jax.tree_util.tree_map(
        lambda x, ref: jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x,
        loaded,
        like,
    )


class Checkpoint:
    """A ``fit`` callback that saves the training state every ``every`` steps to
    ``directory/step_N`` and keeps the newest ``keep`` of them.

    Resume with ``fit(..., resume=directory)``.
    """

    def __init__(self, directory: str | os.PathLike, every: int, *, keep: int = 3):
        for name, v in (("every", every), ("keep", keep)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int, got {v!r}")
        self.directory = pathlib.Path(directory).absolute()
        self.every = every
        self.keep = keep

    def __call__(self, info) -> None:
        if info.step % self.every:
            return None
        save_checkpoint(self.directory / f"step_{info.step:09d}", info.state)
        snaps = sorted(p for p in self.directory.iterdir() if _STEP_DIR.match(p.name))
        for old in snaps[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return None
