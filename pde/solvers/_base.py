"""One entry point, ``pde.solve(problem, method, *, key, ...)``, and what every method shares."""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sciml import backend, nn
from sciml.train import History

from .._problem import AbstractProblem, Reference


@dataclasses.dataclass(frozen=True)
class Solution:
    """What a PDE solver returns.

    Attributes:
        value: the estimate of u(0, x0).
        reference: the problem's reference at x0 (None when the problem has none or it was not
            requested).
        rel_error: |value - reference| / |reference| at x0 (None without a reference; inf when
            the reference is 0 and the value is not).
        box_rel_l1: for methods that learn x -> u(0, x) on the problem's box, the relative L1
            error over the box, sum|u_hat - u| / sum|u| on uniformly drawn points (None otherwise,
            and when the reference is not a closed form or quadrature that is cheap at every point).
        model: the trained network(s) (``model(x)`` is u(0, x) for box methods).
        history: the training history (``sciml.train.History``); None for non-DNN methods.
        seconds: wall time of the solve, compilation included.
        n_params: number of scalars in the model's floating-point arrays: the trained weights
            plus fixed standardisation constants (0 for non-DNN methods).
        stats: method-specific diagnostics (e.g. deep BSDE's Z-collapse check).
    """

    value: float
    reference: Reference | None
    rel_error: float | None
    box_rel_l1: float | None
    model: Any
    history: History | None
    seconds: float
    n_params: int
    stats: dict[str, Any]


class AbstractMethod(eqx.Module):
    """A method for :func:`solve`. Subclasses implement :meth:`run`."""

    @abc.abstractmethod
    def run(
        self,
        problem: AbstractProblem,
        *,
        key: jax.Array,
        steps: int | None,
        parallel: Any,
        progress: bool | None,
        callbacks: Sequence[Callable],
    ) -> tuple[jax.Array, Any, History | None, dict[str, Any]]:
        """Return ``(value at x0, model, history, stats)``."""

    def box_error(self, problem: AbstractProblem, model: Any, *, key: jax.Array) -> float | None:
        """Relative L1 error of ``model`` over the problem's box, for methods that learn a
        function on it (default: not applicable)."""
        return None


def check_antithetic_paths(paths_per_point: int) -> None:
    """Paths per point come in antithetic pairs (``Z, -Z``): 1 (plain) or an even number."""
    if paths_per_point > 1 and paths_per_point % 2:
        raise ValueError(f"got paths_per_point={paths_per_point}; it must be 1 or even (antithetic pairs)")


def x0_in_box(problem: AbstractProblem) -> bool:
    """Whether the problem's x0 lies in its box, where box methods train the network that they then
    evaluate at x0 (outside it that is an extrapolation). True when the values are traced."""
    box = problem.box
    leaves = (problem.x0, box.lo, box.hi)
    if any(isinstance(v, jax.core.Tracer) for v in leaves):
        return True
    x0, lo, hi = (np.asarray(v) for v in leaves)
    return bool(np.all((lo <= x0) & (x0 <= hi)))


def box_rel_l1(problem: AbstractProblem, model: Any, *, key: jax.Array, n_points: int) -> float | None:
    """sum|model - u| / sum|u| over ``n_points`` uniform points of the problem's box, where u is
    the problem's reference; None when the reference is not a cheap pointwise one (closed form or
    quadrature): Monte Carlo, multilevel Picard or published values need a key or exist at x0 only,
    and are not evaluated at thousands of points."""
    try:
        probe = eqx.filter_eval_shape(problem.reference, problem.x0)
    except (TypeError, ValueError, NotImplementedError):
        return None
    if probe.method not in ("closed form", "quadrature"):
        return None
    x = problem.box.sample(key, n_points)
    ref = jax.jit(jax.vmap(lambda xi: problem.reference(xi).value))(x)
    pred = jax.jit(jax.vmap(model))(x)
    return float(jnp.sum(jnp.abs(pred - ref)) / jnp.sum(jnp.abs(ref)))


def count_params(model: Any) -> int:
    """Number of scalars in the inexact array leaves of ``model``."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))))


def check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"got {name}={value!r}; `{name}` must be a positive int")


def check_theta(value: Any) -> None:
    """``theta``, the weight of a time step's right end in a theta-scheme, must be a float in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(
            f"got theta={value!r}; `theta` must be a float in [0, 1] (0: the papers' explicit scheme, "
            "0.5: trapezoidal rule)"
        )


def make_network(problem: AbstractProblem, out_size, width: int, depth: int, activation, *, key,
                 in_size=None, network=None):
    """The solvers' network: ``network`` if the user gave one (an equinox Module or
    ``sciml.nn.from_flax(...)``), checked against the problem's dimensions; else a
    ``sciml.nn.MLP`` of the given width, depth and activation.

    Raises:
        ValueError: ``network`` does not map the expected input shape to the expected output shape.
    """
    n_in = problem.dim if in_size is None else in_size
    if network is None:
        return nn.MLP(n_in, out_size, width, depth, activation, key=key, dtype=problem.x0.dtype)
    want = () if out_size == "scalar" else (out_size,)
    try:
        out = jax.eval_shape(network, jax.ShapeDtypeStruct((n_in,), problem.x0.dtype))
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"`network` must accept inputs of shape ({n_in},) for this problem of dimension "
            f"{problem.dim}; calling it failed: {e}"
        ) from e
    if getattr(out, "shape", None) != want:
        raise ValueError(
            f"`network` must map shape ({n_in},) to shape {want} for this problem of dimension "
            f"{problem.dim}, but it returns {getattr(out, 'shape', type(out).__name__)}"
        )
    return network


def solve(
    problem: AbstractProblem,
    method: AbstractMethod,
    *,
    key: jax.Array,
    steps: int | None = None,
    parallel: Any = None,
    progress: bool | None = None,
    callbacks: Sequence[Callable] = (),
    reference: bool = True,
) -> Solution:
    """Solve a Kolmogorov / semilinear PDE for u(0, x0) (and on the box, for box methods).

    Args:
        problem: an :class:`~pde.AbstractProblem` (e.g. ``pde.make_problem("hjb", 100)``).
        method: ``DeepKolmogorov(...)``, ``DeepBSDE(...)``, ``DeepSplitting(...)`` or
            ``MultilevelPicard(...)``.
        key: PRNG key.
        steps: training steps (default: the method's own).
        parallel: ``None``, ``"pmap"``, ``"sharded"`` or a ``sciml.train`` strategy: Monte Carlo
            paths are sharded over devices.
        progress: show a progress bar (default: on a terminal).
        callbacks: ``sciml.train.fit`` callbacks.
        reference: also evaluate the problem's reference and the errors.

    Returns:
        A :class:`Solution`.

    Raises:
        TypeError: ``problem`` or ``method`` of the wrong type.
        ValueError: invalid configuration (e.g. a linear-only method on a semilinear problem).
    """
    if not isinstance(problem, AbstractProblem):
        raise TypeError(f"`problem` must be a pde.AbstractProblem, got {type(problem).__name__}")
    if not isinstance(method, AbstractMethod):
        raise TypeError(
            "`method` must be a pde method object (DeepKolmogorov(), DeepBSDE(), DeepSplitting(), "
            f"MultilevelPicard()), got {type(method).__name__}"
        )
    check_positive_int(steps, "steps", allow_none=True)
    k_run, k_ref, k_box = backend.split_key(key, 3)
    t0 = time.perf_counter()
    value, model, history, stats = method.run(
        problem, key=k_run, steps=steps, parallel=parallel, progress=progress, callbacks=callbacks
    )
    value = float(value)
    seconds = time.perf_counter() - t0
    ref = rel = box = None
    if reference:
        ref = problem.reference(key=k_ref)
        rel = _relative_error(value, float(ref.value))
        box = method.box_error(problem, model, key=k_box)
    return Solution(
        value=value,
        reference=ref,
        rel_error=rel,
        box_rel_l1=box,
        model=model,
        history=history,
        seconds=seconds,
        n_params=count_params(model),
        stats=stats,
    )


def _relative_error(value: float, reference: float) -> float:
    """|value - reference| / |reference|; for a zero reference, 0 if the value is 0 too, else inf."""
    if reference == 0:
        return 0.0 if value == 0 else float("inf")
    return abs(value - reference) / abs(reference)


def adam_schedule(steps: int, lr: float, decay_to: float = 1e-2) -> optax.GradientTransformation:
    """Adam with a cosine decay from ``lr`` to ``lr * decay_to`` over ``steps``."""
    return optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=decay_to))


def as_scalar(x: jax.Array) -> jax.Array:
    return jnp.reshape(x, ())
