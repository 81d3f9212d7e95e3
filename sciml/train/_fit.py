"""``fit``: the one training loop of sciml (optax optimiser, one compiled step, progress, NaN guard)."""

from __future__ import annotations

import collections.abc
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checkpoint import load_checkpoint
from ._parallel import AbstractParallel, resolve_parallel
from ._progress import Progress


class TrainState(eqx.Module):
    """Everything a training run needs to continue: model, optimiser state, step count and key.

    ``step`` is the number of optimiser steps taken; ``key`` is the key the *next* step splits.
    """

    model: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss. Carries the step and the last finite loss."""

    def __init__(self, step: int, loss: float, last_finite_step: int | None, last_finite: float | None):
        self.step = step
        self.loss = loss
        self.last_finite_step = last_finite_step
        self.last_finite_loss = last_finite
        if last_finite is None:
            tail = "no step before it had a finite loss"
        else:
            tail = f"last finite loss {last_finite:.6g} at step {last_finite_step}"
        super().__init__(
            f"loss became {loss} at step {step}; {tail}. Lower the learning rate, check the data for "
            "NaN/inf, or add gradient clipping (optax.clip_by_global_norm)."
        )


@dataclasses.dataclass(frozen=True)
class History:
    """What ``fit`` measured.

    Attributes:
        loss: the loss of every step taken in this call, in order (``loss[i]`` is step
            ``first_step + i``, evaluated at the parameters *before* that step's update).
        first_step: the step count the call started from (non-zero after a resume).
        compile_seconds: time to trace, lower and compile the step, plus the first step that
            triggers the compilation (paid once per call).
        run_seconds: wall time of the other steps.
        state: the final :class:`TrainState` (save it with ``save_checkpoint`` to resume later).
        stopped_early: a callback asked to stop.
    """

    loss: np.ndarray
    first_step: int
    compile_seconds: float
    run_seconds: float
    state: TrainState
    stopped_early: bool = False

    @property
    def steps_per_second(self) -> float:
        """Steady-state rate: the steps after the first (compiling) one over ``run_seconds``."""
        timed = max(len(self.loss) - 1, 0)
        return timed / self.run_seconds if self.run_seconds > 0 else math.nan


class StepInfo:
    """What a callback sees after a step. ``loss`` and ``state`` are fetched lazily: a callback that
    does not look at them costs no device-to-host synchronisation."""

    def __init__(self, step: int, loss: jax.Array, state_fn: Callable[[], TrainState]):
        self.step = step
        self._loss = loss
        self._state_fn = state_fn
        self._state: TrainState | None = None

    @property
    def loss(self) -> float:
        return float(self._loss)

    @property
    def state(self) -> TrainState:
        if self._state is None:
            self._state = self._state_fn()
        return self._state


class _LossFnError(Exception):
    """Marks an error raised while tracing the user's ``loss_fn`` (not our own code)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


# --- batch sources ----------------------------------------------------------------------------------


class _Fixed:
    """The same batch every step (full-batch training)."""

    argument = True

    def __init__(self, batch):
        self.batch = batch

    def skip(self, n):
        pass

    def next(self):
        return self.batch


class _Stream:
    """Host batches from an iterator, one per step."""

    argument = True

    def __init__(self, it):
        self.it = it

    def skip(self, n):
        for _ in itertools.islice(self.it, n):
            pass

    def next(self):
        try:
            return next(self.it)
        except StopIteration:
            raise ValueError(
                "`batches` ran out before `steps` were taken; pass a longer (or infinite) iterator"
            ) from None


class _Sampler:
    """Batches drawn on-device inside the compiled step: ``batches(key) -> batch``."""

    argument = False

    def __init__(self, fn):
        self.fn = fn

    def skip(self, n):
        pass

    def next(self):
        return None


def _batch_source(batches: Any):
    if isinstance(batches, collections.abc.Iterator):
        return _Stream(batches)
    if callable(batches) and not isinstance(batches, (eqx.Module, jax.Array)):
        return _Sampler(batches)
    if callable(batches):  # an equinox Module with __call__: a sampler too
        return _Sampler(batches)
    if isinstance(batches, Iterable) and not isinstance(
        batches, (tuple, list, dict, np.ndarray, jax.Array)
    ):
        return _Stream(iter(batches))
    return _Fixed(batches)


def _shapes(tree) -> str:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return ", ".join(
        f"{jax.tree_util.keystr(p) or 'batch'}: {tuple(np.shape(x))}" for p, x in leaves
    ) or "<no arrays>"


def _check_key(key):
    if not isinstance(key, jax.Array) or not (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == jnp.uint32
    ):
        raise TypeError(
            f"`key` must be a JAX PRNG key (jax.random.key(seed) or sciml.backend.key(seed)), "
            f"got {type(key).__name__}"
        )
    # One key, not a batch of them (which would fail later inside the traced step). A raw uint32
    # key is checked against the default PRNG implementation's key shape ((2,) for threefry).
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    try:
        shape = key.shape if typed else jax.random.wrap_key_data(key).shape
    except (TypeError, ValueError):
        shape = None
    if shape != ():
        raise ValueError(
            f"`key` must be a single PRNG key (jax.random.key(seed), or one raw key of the default "
            f"implementation), got dtype {key.dtype} and shape {key.shape}; pass one key, e.g. "
            "`jax.random.split(key)[0]`"
        )


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative int, got {steps!r}")


def init_state(model: Any, optimizer: optax.GradientTransformation, *, key: jax.Array) -> TrainState:
    """The :class:`TrainState` of a run that has not taken a step yet."""
    _check_key(key)
    params = eqx.filter(model, eqx.is_inexact_array)
    return TrainState(model, optimizer.init(params), jnp.zeros((), jnp.int32), key)


def fit(
    model: Any,
    loss_fn: Callable[[Any, Any, jax.Array], jax.Array],
    batches: Any,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    key: jax.Array,
    parallel: Any = None,
    callbacks: Sequence[Callable[[StepInfo], Any]] = (),
    progress: bool | None = None,
    resume: Any = None,
    log_every: int | None = None,
) -> tuple[Any, History]:
    """Train ``model`` by minimising ``loss_fn`` with an optax optimiser.

    Each step draws ``key, sub = split(key)``, computes ``loss_fn(model, batch, sub)`` and its gradient
    with respect to the model's floating-point array leaves, and applies ``optimizer``. The step is
    traced once per call (errors in ``loss_fn`` surface before training starts), compiled on the first
    step (``History.compile_seconds``), then reused for every batch: batches must keep their shapes.

    Args:
        model: an equinox Module (e.g. ``sciml.nn.MLP``) or ``sciml.nn.from_flax(nnx_model)``; any
            pytree whose inexact array leaves are the parameters.
        loss_fn: ``loss_fn(model, batch, key) -> scalar``. Write it for the whole batch (vmap the
            model inside); for data-parallel runs it must be a mean over examples.
        batches: one of
            * a pytree of arrays: the same (full) batch every step;
            * an iterator (or other non-container iterable) of batches: one per step, from the host
              (``sciml.train.minibatches`` makes shuffled epochs);
            * a function ``batches(key) -> batch``: sampled on the device inside the compiled step
              (fresh Monte Carlo samples every step, as the PDE solvers do).
        optimizer: an ``optax.GradientTransformation``.
        steps: total number of steps; with ``resume``, training continues up to this count.
        key: PRNG key of the run.
        parallel: ``None`` (one device), ``"pmap"``, ``"sharded"``, or an
            :class:`AbstractParallel` such as ``Pmap(n_devices=4)``.
        callbacks: functions called after every step with a :class:`StepInfo`; one that returns
            ``True`` stops training (e.g. early stopping). ``Checkpoint(dir, every=n)`` saves state.
        progress: show a progress bar (step, loss, steps/s). Default: only when stderr is a terminal.
        resume: a checkpoint path (from ``save_checkpoint`` or ``Checkpoint``) or a
            :class:`TrainState` to continue from. Model, optimiser state, step count and key are taken
            from it; the result is bit-identical to an uninterrupted run. An iterator of batches is
            advanced past the batches already consumed, so pass a fresh iterator of the same data.
        log_every: how many steps between loss reads (NaN check, progress bar). Default: about 100
            reads per run. Each read synchronises host and device.

    Returns:
        ``(model, history)``: the trained model (same type as ``model``) and a :class:`History`.

    Raises:
        ValueError: ``loss_fn`` cannot be evaluated on the first batch (the message names the batch
            shapes and the error, e.g. the model's expected input shape); unknown ``parallel``; a
            batch not divisible over devices; ``steps`` negative.
        NonFiniteLossError: the loss became NaN or infinite (names the step and the last finite loss).

    Example:
        >>> import jax, jax.numpy as jnp, optax, sciml
        >>> x = jnp.linspace(-1, 1, 64)[:, None]; y = x**2
        >>> net = sciml.nn.MLP(1, 1, 16, 2, "tanh", key=jax.random.key(0))
        >>> loss = lambda m, b, k: jnp.mean((jax.vmap(m)(b[0]) - b[1]) ** 2)
        >>> net, hist = sciml.train.fit(net, loss, (x, y), optax.adam(1e-2), steps=200,
        ...                             key=jax.random.key(1), progress=False)
        >>> bool(hist.loss[-1] < hist.loss[0])
        True
    """
    _check_steps(steps)
    _check_key(key)
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable as loss_fn(model, batch, key), got {loss_fn!r}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"`optimizer` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
            f"got {type(optimizer).__name__}"
        )
    strategy: AbstractParallel = resolve_parallel(parallel)
    source = _batch_source(batches)

    state = init_state(model, optimizer, key=key)
    if resume is not None:
        state = resume if isinstance(resume, TrainState) else load_checkpoint(resume, like=state)
        if not isinstance(state, TrainState):
            raise TypeError(f"`resume` must be a checkpoint path or a TrainState, got {type(resume)}")
    start = int(state.step)
    if start > steps:
        raise ValueError(f"`steps`={steps} is smaller than the resumed state's step count {start}")

    dynamic, static = eqx.partition(state, eqx.is_array)

    def step_fn(dyn, batch):
        st = eqx.combine(dyn, static)
        next_key, sub = jax.random.split(st.key)
        sub = strategy.device_key(sub)
        if not source.argument:
            batch = strategy.constrain_sample(source.fn(jax.random.fold_in(sub, 1)))
            sub = jax.random.fold_in(sub, 0)
        params, frozen = eqx.partition(st.model, eqx.is_inexact_array)

        def loss_of(p):
            try:
                loss = jnp.asarray(loss_fn(eqx.combine(p, frozen), batch, sub))
            except (ValueError, TypeError) as e:
                raise _LossFnError(e) from e
            if loss.shape != ():
                raise _LossFnError(
                    ValueError(f"`loss_fn` must return a scalar, got an array of shape {loss.shape}")
                )
            return loss

        loss, grads = jax.value_and_grad(loss_of)(params)
        loss, grads = strategy.mean((loss, grads))
        # optax mixes Python floats with int32 step counts; let it, whatever promotion mode the
        # caller runs under (the loss itself stays under the caller's mode).
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, st.opt_state, params)
        params = optax.apply_updates(params, updates)
        new = TrainState(eqx.combine(params, frozen), opt_state, st.step + 1, next_key)
        return eqx.filter(new, eqx.is_array), loss

    if start == steps:  # nothing left to do (e.g. resuming a finished run)
        return state.model, History(np.zeros((0,)), start, 0.0, 0.0, state)
    source.skip(start)
    t0 = time.perf_counter()
    placed = strategy.place_state(dynamic)
    first = source.next() if source.argument else None
    first_placed = strategy.place_batch(first) if first is not None else None
    try:
        compiled = strategy.compile(step_fn, placed, first_placed)
    except _LossFnError as e:
        what = f"the first batch (shapes {_shapes(first)})" if source.argument else "a sampled batch"
        raise ValueError(f"`loss_fn` could not be evaluated on {what}: {e.error}") from e.error
    compile_seconds = time.perf_counter() - t0

    if log_every is None:
        log_every = max(1, (steps - start) // 100)
    bar = Progress(total=steps, initial=start, enabled=progress)
    losses: list[float] = []
    pending: list[jax.Array] = []
    stopped = False

    def local():
        return eqx.combine(strategy.local_state(placed), static)

    def drain():
        values = [float(v) for v in jax.device_get(pending)]
        pending.clear()
        for v in values:
            if not math.isfinite(v):
                n = start + len(losses)
                last = next((x for x in reversed(losses) if math.isfinite(x)), None)
                bar.close()
                raise NonFiniteLossError(n, v, None if last is None else n - 1, last)
            losses.append(v)
        if values:
            bar.update(start + len(losses), values[-1])

    t1 = time.perf_counter()
    batch_placed = first_placed
    try:
        for i in range(start, steps):
            if i > start and source.argument:
                batch_placed = strategy.place_batch(source.next())
            placed, loss = compiled(placed, batch_placed)
            if i == start:  # XLA compiles on the first call: count it as compile time
                jax.block_until_ready(loss)
                t_first = time.perf_counter()
                compile_seconds += t_first - t1
                t1 = t_first
            pending.append(strategy.local_loss(loss))
            if len(pending) >= log_every:
                drain()
            if callbacks:
                info = StepInfo(i + 1, pending[-1] if pending else jnp.asarray(losses[-1]), local)
                if any([bool(cb(info)) for cb in callbacks]):
                    stopped = True
                    break
        drain()
    finally:
        bar.close()
    jax.block_until_ready(placed)
    run_seconds = time.perf_counter() - t1

    final = local()
    history = History(
        loss=np.asarray(losses, dtype=np.float64),
        first_step=start,
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
        state=final,
        stopped_early=stopped,
    )
    return final.model, history


def minibatches(data: Any, batch_size: int, *, key: jax.Array, drop_last: bool = True):
    """An endless iterator of shuffled minibatches over epochs of ``data`` (a pytree of arrays that
    share their leading dimension). Deterministic given ``key``, so a fresh iterator with the same
    key replays the same stream (what ``fit(..., resume=...)`` needs).

    Raises:
        ValueError: leaves disagree on their leading dimension, or ``batch_size`` is not in
            ``1..n``.
    """
    _check_key(key)
    leaves = jax.tree_util.tree_leaves(data)
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"every leaf of `data` must share its leading dimension; got shapes {_shapes(data)}"
        )
    (n,) = sizes
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not (
        1 <= batch_size <= n
    ):
        raise ValueError(f"`batch_size` must be an int in 1..{n}, got {batch_size!r}")
    host = jax.tree_util.tree_map(np.asarray, data)
    per_epoch = n // batch_size if drop_last else -(-n // batch_size)
    epoch = 0
    while True:
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        for b in range(per_epoch):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            yield jax.tree_util.tree_map(lambda x, idx=idx: x[idx], host)
        epoch += 1
