r"""Digit benchmarks for neuro-symbolic learning on scikit-learn's ``load_digits`` (8x8 images, offline).

* **digit-sum**: only the sum :math:`a + b` of two digit images is labelled. Three methods, one entry
  point :func:`train_digit_sum`: :class:`PlainSum` (a network on the concatenated pair, 19-way),
  :class:`ExactSum` (a digit classifier under exact probabilistic semantics,
  :math:`p(s) = \sum_{a + b = s} p(a)\, p(b)`) and :class:`LTNSum` (the same classifier trained on the
  LTN axiom :math:`\forall (x, y, s)\, \exists a, b{:}\ a + b = s:\ D(x, a) \wedge D(y, b)` with
  :mod:`symbolic.fuzzy`'s quantifiers). The digit classifier is never supervised on digits.
* **concept discovery**: five classes, each the union of a hidden pair of digits; only class labels are
  given. :class:`Baseline` (a plain classifier) and :class:`KLUE` (the same classifier with a
  :class:`~symbolic.fuzzy.DKU` and its distinctness axioms), trained by :func:`train_concepts`, compared
  by :func:`evaluate_concepts` (clean, noise, shift, occlusion, hardest 20 %, and the purity of the
  concepts against the hidden digits, :func:`concept_purity`).

Training is one compiled ``lax.scan`` over optax steps per run (:func:`train_steps`), minibatches drawn
on the device from arrays passed as arguments; :func:`train_digit_sum` runs the same scan in chunks, so
that it can pick among restarts early and go on with the best. ``sciml.train.fit`` is not used: its
step loop is driven from Python and its ``loss_fn(model, batch, key)`` does not see the step index,
which the :math:`\lambda` warm-up of the DKU and the LTN exponent schedule need.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from sciml.nn import MLP, Linear

from ._klue import DKU, DKUOutput, distinctness_loss, dku_loss, lambda_warmup
from ._ops import and_prod
from ._quantifiers import Labelled, connective, exists, forall

__all__ = [
    "AbstractConceptMethod",
    "DigitSumResult",
    "AbstractSumMethod",
    "Baseline",
    "ConceptTask",
    "DigitData",
    "ExactSum",
    "KLUE",
    "KLUENet",
    "LTNSum",
    "PlainSum",
    "add_noise",
    "concept_purity",
    "digit_data",
    "evaluate_concepts",
    "exact_sum_probs",
    "flip_labels",
    "hardest_fraction",
    "hidden_pair_task",
    "load_digit_data",
    "occlude",
    "shift_images",
    "sum_pairs",
    "train_concepts",
    "train_digit_sum",
    "train_steps",
]

NUM_DIGITS = 10
NUM_SUMS = 19


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _seed(seed: Any, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"got {name}={seed!r}; `{name}` must be an int >= 0")
    return int(seed)


@dataclasses.dataclass(frozen=True)
class DigitData:
    """A train/test split of digit images (host numpy arrays).

    Attributes:
        x_train, x_test: ``(n, 64)`` float32 images in [0, 1] (8x8, row-major).
        y_train, y_test: ``(n,)`` int32 digits 0..9.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digit_data(x: Any, y: Any, *, seed: int, test_fraction: float = 1 / 3) -> DigitData:
    """Split images and digit labels into a :class:`DigitData`, deterministically by ``seed``.

    Args:
        x: ``(n, 64)`` images with values in [0, 1].
        y: ``(n,)`` int digits in 0..9.
        seed: the split's seed, an int >= 0.
        test_fraction: the share of test images, in (0, 1).

    Raises:
        ValueError: shapes, values or arguments out of range.

    Example:
        >>> from symbolic import fuzzy
        >>> d = fuzzy.digit_data(np.zeros((30, 64)), np.arange(30) % 10, seed=0)
        >>> d.x_train.shape, d.x_test.shape
        ((20, 64), (10, 64))
    """
    seed = _seed(seed)
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 64 or y.shape != x.shape[:1]:
        raise ValueError(f"`x` must be (n, 64) and `y` (n,), got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_DIGITS:
        raise ValueError("`y` must hold int digits in 0..9")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"`x` must hold values in [0, 1], got [{x.min()}, {x.max()}]; divide by 16")
    if not 0 < test_fraction < 1:
        raise ValueError(f"got test_fraction={test_fraction!r}; `test_fraction` must be in (0, 1)")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = perm[:n_test], perm[n_test:]
    y = y.astype(np.int32)
    return DigitData(x[train], y[train], x[test], y[test])


def load_digit_data(seed: int = 0, *, test_fraction: float = 1 / 3) -> DigitData:
    """scikit-learn's ``load_digits`` (1797 images, shipped with the package; no download), scaled to
    [0, 1] and split by ``seed`` (see :func:`digit_data`).

    Raises:
        ImportError: scikit-learn is not installed.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.load_digit_data(0).x_train.shape  # doctest: +SKIP
        (1198, 64)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digit_data needs scikit-learn (`pip install scikit-learn`); or build a DigitData "
            "from your own arrays with symbolic.fuzzy.digit_data"
        ) from e
    d = load_digits()
    return digit_data(d.data / 16.0, d.target, seed=seed, test_fraction=test_fraction)


def sum_pairs(x: Any, y: Any, n_pairs: int, *, seed: int) -> tuple[np.ndarray, ...]:
    """``n_pairs`` random pairs of images (drawn with replacement) and their digit sums.

    Returns:
        ``(x1, x2, s, a, b)``: images ``(n, 64)`` twice, sums ``(n,)`` in 0..18, and the two digits
        (for evaluation only).

    Example:
        >>> from symbolic import fuzzy
        >>> x1, x2, s, a, b = fuzzy.sum_pairs(np.zeros((5, 64)), np.arange(5), 3, seed=0)
        >>> bool(np.all(s == a + b))
        True
    """
    seed = _seed(seed)
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
        raise ValueError(f"got n_pairs={n_pairs!r}; `n_pairs` must be a positive int")
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    i, j = np.random.default_rng(seed).integers(0, len(x), size=(2, n_pairs))
    return x[i], x[j], (y[i] + y[j]).astype(np.int32), y[i], y[j]


def exact_sum_probs(p1: Float[Array, "*B 10"], p2: Float[Array, "*B 10"]) -> Float[Array, "*B 19"]:
    r"""The exact distribution of the sum of two independent digits,
    :math:`p(s) = \sum_{a + b = s} p_1(a)\, p_2(b)` (a discrete convolution).

    Example:
        >>> from symbolic import fuzzy
        >>> p = jnp.full(10, 0.1)
        >>> fuzzy.exact_sum_probs(p, p)[jnp.array([0, 9, 18])]
        Array([0.01, 0.1 , 0.01], dtype=float32)
    """
    p1, p2 = jnp.asarray(p1), jnp.asarray(p2)
    if p1.shape[-1:] != (NUM_DIGITS,) or p2.shape[-1:] != (NUM_DIGITS,):
        raise ValueError(f"`p1` and `p2` must end in an axis of 10 digits, got {p1.shape} and {p2.shape}")
    joint = p1[..., :, None] * p2[..., None, :]
    digits = jnp.arange(NUM_DIGITS)
    table = (digits[:, None, None] + digits[None, :, None] == jnp.arange(NUM_SUMS)).astype(joint.dtype)
    return jnp.einsum("...ab,abs->...s", joint, table)


def add_noise(x: Any, std: float, *, seed: int) -> np.ndarray:
    """Images with Gaussian pixel noise of standard deviation ``std``, clipped to [0, 1]."""
    x = np.asarray(x, np.float32)
    noise = np.random.default_rng(_seed(seed)).normal(0, std, x.shape).astype(np.float32)
    return np.clip(x + noise, 0, 1)


def shift_images(x: Any, pixels: int = 1, *, seed: int) -> np.ndarray:
    """Images translated by ``pixels`` in a random direction (per image; zero fill)."""
    x = np.asarray(x, np.float32).reshape(-1, 8, 8)
    rng = np.random.default_rng(_seed(seed))
    moves = rng.choice(np.array([[1, 0], [-1, 0], [0, 1], [0, -1]]) * pixels, size=len(x))
    out = np.zeros_like(x)
    for i, (dy, dx) in enumerate(moves):
        out[i] = np.roll(x[i], (dy, dx), axis=(0, 1))
        if dy > 0:
            out[i, :dy] = 0
        elif dy < 0:
            out[i, dy:] = 0
        if dx > 0:
            out[i, :, :dx] = 0
        elif dx < 0:
            out[i, :, dx:] = 0
    return out.reshape(-1, 64)


def occlude(x: Any, size: int = 3, *, seed: int) -> np.ndarray:
    """Images with a ``size`` x ``size`` square set to 0 at a random place (per image)."""
    x = np.asarray(x, np.float32).reshape(-1, 8, 8).copy()
    rng = np.random.default_rng(_seed(seed))
    corners = rng.integers(0, 8 - size + 1, size=(len(x), 2))
    for i, (r, c) in enumerate(corners):
        x[i, r : r + size, c : c + size] = 0
    return x.reshape(-1, 64)


def flip_labels(y: Any, rate: float, num_classes: int, *, seed: int) -> np.ndarray:
    """Labels with a share ``rate`` replaced by a different class drawn uniformly."""
    y = np.asarray(y, np.int32).copy()
    rng = np.random.default_rng(_seed(seed))
    flip = rng.random(len(y)) < rate
    y[flip] = (y[flip] + rng.integers(1, num_classes, size=int(flip.sum()))) % num_classes
    return y


# --------------------------------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------------------------------


@eqx.filter_jit
def _run(params, opt_state, static, data, key, step_ids, loss_fn, batch_size, learning_rate, weight_decay):
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
    n = jax.tree_util.tree_leaves(data)[0].shape[0]

    def body(carry, step):
        params, opt_state, key = carry
        key, sub, aug = jax.random.split(key, 3)
        idx = jax.random.randint(sub, (batch_size,), 0, n)
        batch = jax.tree_util.tree_map(lambda a: a[idx], data)
        loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), batch, step, aug))(params)
        # optax mixes Python floats with int32 counts; allow it whatever promotion mode the caller uses
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), loss

    (params, opt_state, key), losses = jax.lax.scan(body, (params, opt_state, key), step_ids)
    return params, opt_state, key, losses


class _Run(eqx.Module):
    """One AdamW run of :func:`train_steps` as a value, so that it can stop and go on: ``a`` steps and
    then ``b`` more equal ``a + b`` steps at once (the keys, the step index seen by the loss and the
    optimiser's moments carry over)."""

    model: Any
    opt_state: Any
    key: PRNGKeyArray
    step: Any  # int32 scalar: the index of the next step

    @staticmethod
    def start(model: Any, key: PRNGKeyArray, learning_rate: float, weight_decay: float) -> _Run:
        params = eqx.filter(model, eqx.is_inexact_array)
        with jax.numpy_dtype_promotion("standard"):
            opt_state = optax.adamw(learning_rate, weight_decay=weight_decay).init(params)
        return _Run(model, opt_state, key, jnp.zeros((), jnp.int32))

    def advance(self, loss_fn, data, steps, batch_size, learning_rate, weight_decay) -> tuple[_Run, Any]:
        """``steps`` more steps: the new run and their ``(steps,)`` losses."""
        params, static = eqx.partition(self.model, eqx.is_inexact_array)
        step_ids = self.step + jnp.arange(steps, dtype=jnp.int32)  # an array: a new start does not recompile
        params, opt_state, key, losses = _run(
            params, self.opt_state, static, data, self.key, step_ids, loss_fn, int(batch_size),
            float(learning_rate), float(weight_decay),
        )
        return _Run(eqx.combine(params, static), opt_state, key, self.step + steps), losses


def _check_positive(**named: Any) -> None:
    for name, v in named.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"got {name}={v!r}; `{name}` must be a positive int")


def train_steps(
    model: Any,
    loss_fn: Any,
    data: Any,
    *,
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
) -> tuple[Any, jax.Array]:
    """Minimise ``loss_fn(model, batch, step, key)`` with AdamW in one compiled ``lax.scan``.

    Each step draws ``batch_size`` rows (with replacement) of every leaf of ``data`` on the device.
    ``loss_fn`` must be hashable (a function or an equinox Module bound method); a new one recompiles.

    Returns:
        ``(model, losses)``, the trained model and the ``(steps,)`` losses.

    Example:
        >>> from symbolic import fuzzy
        >>> x = jnp.linspace(-1, 1, 32)[:, None]
        >>> net = sciml.nn.MLP(1, 1, 8, 1, "tanh", key=jax.random.key(0))
        >>> loss = lambda m, b, t, k: jnp.mean((jax.vmap(m)(b[0]) - b[1]) ** 2)
        >>> net, losses = fuzzy.train_steps(net, loss, (x, x**2), steps=200, batch_size=16,
        ...                                 key=jax.random.key(1), learning_rate=1e-2)
        >>> bool(losses[-1] < losses[0])
        True
    """
    _check_positive(steps=steps, batch_size=batch_size)
    data = jax.tree_util.tree_map(jnp.asarray, data)
    run = _Run.start(model, key, learning_rate, weight_decay)
    run, losses = run.advance(loss_fn, data, int(steps), batch_size, learning_rate, weight_decay)
    return run.model, losses


def jitter(x: Float[Array, "B 64"], key: PRNGKeyArray, pixels: int = 1) -> Float[Array, "B 64"]:
    """Random translations by up to ``pixels`` in each direction (zero fill), one per image: the data
    augmentation of the digit classifiers (jit-able)."""
    b = x.shape[0]
    shifts = jax.random.randint(key, (b, 2), 0, 2 * pixels + 1)
    padded = jnp.pad(x.reshape(b, 8, 8), ((0, 0), (pixels, pixels), (pixels, pixels)))
    crop = jax.vmap(lambda img, s: jax.lax.dynamic_slice(img, (s[0], s[1]), (8, 8)))
    return crop(padded, shifts).reshape(b, 64)


def _jitter_pair(batch, key, pixels):
    x1, x2, s = batch
    if not pixels:
        return x1, x2, s
    k1, k2 = jax.random.split(key)
    return jitter(x1, k1, pixels), jitter(x2, k2, pixels), s


# --------------------------------------------------------------------------------------------------
# Digit-sum methods
# --------------------------------------------------------------------------------------------------


class AbstractSumMethod(eqx.Module):
    """A way to learn from pairs labelled only by their digit sum."""

    @abc.abstractmethod
    def init(self, *, key: PRNGKeyArray) -> Any:
        """The untrained model."""

    @abc.abstractmethod
    def loss(self, model: Any, batch: tuple, step: Any, key: PRNGKeyArray) -> Float[Array, ""]:
        """The training loss on a batch ``(x1, x2, s)``."""

    @abc.abstractmethod
    def sum_probs(self, model: Any, x1: Any, x2: Any) -> Float[Array, "B 19"]:
        """A distribution (or scores) over the 19 sums of each pair."""

    @abc.abstractmethod
    def digit_probs(self, model: Any, x: Any) -> Float[Array, "B 10"] | None:
        """The latent digit classifier's probabilities, or None when the method has none."""


class PlainSum(AbstractSumMethod):
    """A plain network on the concatenated pair, trained with cross-entropy on the 19 sums.

    Example:
        >>> from symbolic import fuzzy
        >>> m = fuzzy.PlainSum(); net = m.init(key=jax.random.key(0))
        >>> m.sum_probs(net, jnp.zeros((2, 64)), jnp.zeros((2, 64))).shape
        (2, 19)
    """

    width: int = 256
    depth: int = 2
    augment: int = 1

    def init(self, *, key):
        return MLP(128, NUM_SUMS, self.width, self.depth, "relu", key=key)

    def loss(self, model, batch, step, key):
        x1, x2, s = _jitter_pair(batch, key, self.augment)
        logp = jax.nn.log_softmax(jax.vmap(model)(jnp.concatenate([x1, x2], axis=1)))
        return -jnp.mean(jnp.take_along_axis(logp, s[:, None], axis=1))

    def sum_probs(self, model, x1, x2):
        return jax.nn.softmax(jax.vmap(model)(jnp.concatenate([x1, x2], axis=1)))

    def digit_probs(self, model, x):
        return None


class ExactSum(AbstractSumMethod):
    r"""A digit classifier trained by the exact likelihood of the sum,
    :math:`-\log \sum_{a + b = s} p(a \mid x_1)\, p(b \mid x_2)` (DeepProbLog's semantics for addition).

    Example:
        >>> from symbolic import fuzzy
        >>> m = fuzzy.ExactSum(); net = m.init(key=jax.random.key(0))
        >>> m.digit_probs(net, jnp.zeros((2, 64))).shape
        (2, 10)
    """

    width: int = 256
    depth: int = 2
    augment: int = 1

    def init(self, *, key):
        return MLP(64, NUM_DIGITS, self.width, self.depth, "relu", key=key)

    def loss(self, model, batch, step, key):
        x1, x2, s = _jitter_pair(batch, key, self.augment)
        l1 = jax.nn.log_softmax(jax.vmap(model)(x1))
        l2 = jax.nn.log_softmax(jax.vmap(model)(x2))
        digits = jnp.arange(NUM_DIGITS)
        allowed = digits[None, :, None] + digits[None, None, :] == s[:, None, None]
        joint = l1[:, :, None] + l2[:, None, :]
        return -jnp.mean(jax.nn.logsumexp(jnp.where(allowed, joint, -jnp.inf), axis=(1, 2)))

    def sum_probs(self, model, x1, x2):
        return exact_sum_probs(self.digit_probs(model, x1), self.digit_probs(model, x2))

    def digit_probs(self, model, x):
        return jax.nn.softmax(jax.vmap(model)(x))


class LTNSum(AbstractSumMethod):
    r"""A digit classifier trained on the LTN axiom of addition (Badreddine et al. 2022, sec. 6):

    .. math::
        \forall\, \mathrm{Diag}(x, y, s)\ \exists a, b{:}\ a + b = s:\ D(x, a) \wedge D(y, b)

    with :math:`D(x, a) = \mathrm{softmax}(f(x))_a`, the stable product t-norm, ``exists`` the stable
    pMean guarded by :math:`a + b = s` with an exponent that rises linearly from ``p_start`` to
    ``p_end`` over the first half of training (LTN's schedule), ``forall`` the stable pMean of errors
    with ``p_forall``. Loss: :math:`1 - \mathrm{sat}`.

    Example:
        >>> from symbolic import fuzzy
        >>> m = fuzzy.LTNSum(); net = m.init(key=jax.random.key(0))
        >>> b = (jnp.zeros((3, 64)), jnp.zeros((3, 64)), jnp.array([0, 5, 18]))
        >>> bool(0 < m.loss(net, b, 0, jax.random.key(1)) < 1)
        True
    """

    width: int = 256
    depth: int = 2
    augment: int = 1
    p_start: float = 1.0
    p_end: float = 1.0
    p_forall: float = 2.0
    schedule_steps: int = 1500

    def init(self, *, key):
        return MLP(64, NUM_DIGITS, self.width, self.depth, "relu", key=key)

    def __check_init__(self):
        for name in ("p_start", "p_end", "p_forall"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not v > 0:
                raise ValueError(f"got {name}={v!r}; `{name}` must be a number > 0 (e.g. {name}=2.0)")
        _check_positive(schedule_steps=self.schedule_steps)

    def loss(self, model, batch, step, key):
        x1, x2, s = _jitter_pair(batch, key, self.augment)
        if self.p_start == self.p_end:
            # a constant exponent stays a Python number, and XLA folds the aggregators' check p > 0
            # (eqx.error_if, a host callback) away; on a p computed from the step it runs at every
            # training step: +20 % time per step (1.6 vs 1.33 ms CPU)
            p: Any = float(self.p_start)
        else:
            frac = jnp.clip(jnp.asarray(step, jnp.float32) / self.schedule_steps, 0, 1)
            p = self.p_start + (self.p_end - self.p_start) * frac
        d1 = Labelled(self.digit_probs(model, x1), ("pair", "a"))
        d2 = Labelled(self.digit_probs(model, x2), ("pair", "b"))
        digits = jnp.arange(NUM_DIGITS)
        allowed = digits[None, :, None] + digits[None, None, :] == s[:, None, None]
        guard = Labelled(allowed, ("pair", "a", "b"))
        both = connective(and_prod, d1, d2, stable=True)
        some = exists(["a", "b"], both, mask=guard, p=p)
        return 1 - forall("pair", some, p=self.p_forall).value

    def sum_probs(self, model, x1, x2):
        return exact_sum_probs(self.digit_probs(model, x1), self.digit_probs(model, x2))

    def digit_probs(self, model, x):
        return jax.nn.softmax(jax.vmap(model)(x))


@eqx.filter_jit
def _start(method, init_key, train_key, learning_rate, weight_decay):
    # one compiled program rather than op-by-op initialisation (the vmapped eager one it replaces
    # took 14 s under load for 4 restarts)
    return _Run.start(method.init(key=init_key), train_key, learning_rate, weight_decay)


@eqx.filter_jit
def _evaluate(method, model, x1, x2, x):
    return method.sum_probs(model, x1, x2), method.digit_probs(model, x)


@dataclasses.dataclass(frozen=True)
class DigitSumResult:
    """The outcome of :func:`train_digit_sum`.

    Attributes:
        model: the trained model.
        sum_accuracy: accuracy of the predicted sum (argmax) on test pairs.
        digit_accuracy: accuracy of the latent digit classifier on the test images (NaN if none).
        losses: the training losses of the kept run, one per step.
        restart_losses: the selection score of every restart (its mean training loss over the last
            10 % of its steps before the selection); the kept run is the lowest.
    """

    model: Any
    sum_accuracy: float
    digit_accuracy: float
    losses: np.ndarray
    restart_losses: np.ndarray


def train_digit_sum(
    data: DigitData,
    method: AbstractSumMethod,
    *,
    n_pairs: int,
    key: PRNGKeyArray,
    steps: int = 3000,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-4,
    n_test_pairs: int = 2000,
    seed: int = 0,
    restarts: int = 1,
    select_after: int | None = None,
) -> DigitSumResult:
    """Train ``method`` on ``n_pairs`` training pairs labelled only by their sum; evaluate it.

    With ``restarts > 1``, that many runs from independent initialisations and minibatch streams are
    trained and the one with the lowest training loss (mean over the last 10 % of its steps) is kept:
    model selection on the training data only. The sum label is symmetric under some relabellings of
    the digits, and a run can settle in such a wrong labelling (a local optimum of the likelihood with
    a higher training loss); with few pairs this happens to some seeds, and a restart gets out of it.

    With ``select_after=k``, the restarts are trained for ``k`` steps only, and the kept one goes on
    alone for the remaining ``steps - k`` (its optimiser state, keys and step count carried over: the
    result equals that restart trained for ``steps`` at once). This costs ``restarts * k + steps - k``
    steps instead of ``restarts * steps``; it pays where a bad run shows early. Measured for
    :class:`LTNSum` (seeds 0-4, 4 restarts each, 3000 steps): 16 of 40 runs at 1000 and 3000 pairs
    stalled in a partial relabelling (sum accuracy 0.40-0.80), and in each of the 10 settings the
    restart with the lowest training loss at step 600 was not one of them; ``restarts=4,
    select_after=600`` costs 4800 steps instead of 12000. A run that starts slowly and would have
    ended best is lost (seed 1, 1000 pairs: sum accuracy 0.922 instead of 0.960).

    Args:
        data: a :class:`DigitData`; training pairs come from its training images, test pairs from its
            test images.
        method: :class:`PlainSum`, :class:`ExactSum`, :class:`LTNSum` or another
            :class:`AbstractSumMethod`.
        n_pairs: number of training pairs.
        key: PRNG key (initialisation and minibatches).
        steps, batch_size, learning_rate, weight_decay: of the AdamW loop (:func:`train_steps`).
        n_test_pairs: number of test pairs.
        seed: seed of the pair sampling.
        restarts: number of independent runs to pick from, a positive int (1: one run).
        select_after: pick the restart after this many steps (an int in ``[1, steps]``) and train
            only it from there; None: after all ``steps``.

    Returns:
        A :class:`DigitSumResult`.

    Raises:
        TypeError: ``data`` or ``method`` of the wrong type.
        ValueError: a non-positive ``n_pairs``, ``steps``, ``batch_size`` or ``restarts``, or
            ``select_after`` outside ``[1, steps]``.

    Example:
        >>> from symbolic import fuzzy
        >>> rng = np.random.default_rng(0); proto = rng.random((10, 64))
        >>> y = np.arange(200) % 10; x = np.clip(proto[y] + 0.1 * rng.normal(size=(200, 64)), 0, 1)
        >>> r = fuzzy.train_digit_sum(fuzzy.digit_data(x, y, seed=0), fuzzy.ExactSum(), n_pairs=100,
        ...                           steps=300, key=jax.random.key(0))  # doctest: +SKIP
        >>> r.digit_accuracy > 0.5  # doctest: +SKIP
        True
    """
    if not isinstance(data, DigitData):
        raise TypeError(f"`data` must be a DigitData (symbolic.fuzzy.load_digit_data), got {type(data)}")
    if not isinstance(method, AbstractSumMethod):
        raise TypeError(
            f"`method` must be an AbstractSumMethod (PlainSum(), ExactSum(), LTNSum()), got {type(method)}"
        )
    seed = _seed(seed)
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        raise ValueError(f"got restarts={restarts!r}; `restarts` must be a positive int (e.g. restarts=3)")
    _check_positive(steps=steps, batch_size=batch_size)
    select = steps if select_after is None else select_after
    if isinstance(select, bool) or not isinstance(select, (int, np.integer)) or not 1 <= select <= steps:
        raise ValueError(
            f"got select_after={select_after!r}; `select_after` must be None or an int in [1, steps={steps}]"
        )
    x1, x2, s, _, _ = sum_pairs(data.x_train, data.y_train, n_pairs, seed=seed)
    pairs = (jnp.asarray(x1), jnp.asarray(x2), jnp.asarray(s))
    opt = dict(batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay)
    # restarts=1 keeps the single run's keys (init, train) = split(key)
    keys = key[None] if restarts == 1 else jax.random.split(key, int(restarts))
    # The candidates run one after the other through one compiled chunk of `select` steps, and the kept
    # one goes on through the same chunk: one compilation when `select` divides `steps`. On CPU,
    # vmapping the candidates saved no time per step (3.75 vs 3.4 ms per candidate step, LTNSum) and
    # would need a second, unbatched program for the kept run.
    candidates, losses = [], []
    for k in keys:
        init_key, train_key = jax.random.split(k)
        run, loss = _start(method, init_key, train_key, learning_rate, weight_decay).advance(
            method.loss, pairs, int(select), **opt)
        candidates.append(run)
        losses.append(np.asarray(loss))
    score = np.array([loss[-max(1, int(select) // 10):].mean() for loss in losses])
    best = int(np.argmin(score))
    run, kept = candidates[best], [losses[best]]
    for start in range(int(select), int(steps), int(select)):
        run, loss = run.advance(method.loss, pairs, min(int(select), int(steps) - start), **opt)
        kept.append(np.asarray(loss))
    model = run.model
    t1, t2, ts, _, _ = sum_pairs(data.x_test, data.y_test, n_test_pairs, seed=seed + 1_000_003)
    sum_probs, probs = _evaluate(method, model, jnp.asarray(t1), jnp.asarray(t2), jnp.asarray(data.x_test))
    sum_acc = float(np.mean(np.argmax(np.asarray(sum_probs), axis=-1) == ts))
    digit_acc = float("nan") if probs is None else float(np.mean(np.argmax(probs, -1) == data.y_test))
    return DigitSumResult(model, sum_acc, digit_acc, np.concatenate(kept), score)


# --------------------------------------------------------------------------------------------------
# Concept discovery
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConceptTask:
    """Classes that are unions of hidden digit pairs.

    Attributes:
        data: the digits (their labels are the hidden concepts, used for evaluation only).
        pairs: ``(C, 2)`` the hidden digits of each class.
        y_train, y_test: class labels ``(n,)``.
    """

    data: DigitData
    pairs: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.pairs)


def hidden_pair_task(data: DigitData, *, seed: int) -> ConceptTask:
    """Five classes, each the union of two digits paired at random by ``seed``.

    Example:
        >>> from symbolic import fuzzy
        >>> d = fuzzy.digit_data(np.zeros((30, 64)), np.arange(30) % 10, seed=0)
        >>> sorted(fuzzy.hidden_pair_task(d, seed=0).pairs.ravel().tolist()) == list(range(10))
        True
    """
    pairs = np.random.default_rng(_seed(seed)).permutation(NUM_DIGITS).reshape(NUM_DIGITS // 2, 2)
    cls = np.zeros(NUM_DIGITS, np.int32)
    cls[pairs[:, 0]] = cls[pairs[:, 1]] = np.arange(NUM_DIGITS // 2)
    return ConceptTask(data, pairs, cls[data.y_train], cls[data.y_test])


class _Net(eqx.Module):
    trunk: MLP
    head: Linear

    def __call__(self, x):
        return self.head(self.trunk(x))


class KLUENet(eqx.Module):
    """A classifier (trunk + class head) with a :class:`~symbolic.fuzzy.DKU` on top."""

    trunk: MLP
    head: Linear
    dku: DKU

    def __call__(self, x, *, lam: Any = None) -> DKUOutput:
        h = self.trunk(x)
        return self.dku(h, self.head(h), lam=lam)


class AbstractConceptMethod(eqx.Module):
    """A classifier for the hidden-pair task."""

    width: eqx.AbstractVar[int]
    depth: eqx.AbstractVar[int]

    @abc.abstractmethod
    def init(self, num_classes: int, *, key: PRNGKeyArray) -> Any:
        """The untrained model."""

    @abc.abstractmethod
    def loss(self, model: Any, batch: tuple, step: Any, key: PRNGKeyArray) -> Float[Array, ""]:
        """The training loss on a batch ``(x, y)``."""

    @abc.abstractmethod
    def logits(self, model: Any, x: Any) -> Float[Array, "B C"]:
        """The class logits used for prediction."""

    @abc.abstractmethod
    def concepts(self, model: Any, x: Any) -> Float[Array, "B K"] | None:
        """The concept truths, or None when the method has no concepts."""

    def trunk(self, key):
        return MLP(64, self.width, self.width, self.depth, "relu", final_activation="relu", key=key)


class Baseline(AbstractConceptMethod):
    """A plain classifier: an MLP trunk and a linear head, cross-entropy on the class labels.

    Example:
        >>> from symbolic import fuzzy
        >>> m = fuzzy.Baseline(); net = m.init(5, key=jax.random.key(0))
        >>> m.logits(net, jnp.zeros((2, 64))).shape
        (2, 5)
    """

    width: int = 128
    depth: int = 1
    augment: int = 1

    def init(self, num_classes, *, key):
        k1, k2 = jax.random.split(key)
        return _Net(self.trunk(k1), Linear(self.width, num_classes, key=k2))

    def loss(self, model, batch, step, key):
        x, y = batch
        x = jitter(x, key, self.augment) if self.augment else x
        logp = jax.nn.log_softmax(jax.vmap(model)(x))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def logits(self, model, x):
        return jax.vmap(model)(x)

    def concepts(self, model, x):
        return None


class KLUE(AbstractConceptMethod):
    r"""The baseline's trunk and head with a DKU: ``concepts_per_class`` concepts per class, linked
    to it by rules of strength ``init_strength``; loss = cross-entropy on the modulated logits
    (:func:`~symbolic.fuzzy.dku_loss`, :math:`\lambda` warmed up over ``warmup_steps``) +
    ``beta`` times the distinctness loss (:func:`~symbolic.fuzzy.distinctness_loss`).

    The distinctness axioms are stated for the targeted links (concept :math:`j` belongs to class
    :math:`\lfloor j / m \rfloor`, the knowledge the discovery is aimed at), not for the rule read-out
    :func:`~symbolic.fuzzy.concept_classes`: the learned rule strengths may move or decay (a dead
    concept) without changing which class a concept is asked to split. With ``consistent=True`` the
    concepts of a second random translation of each input enter the ``consistent`` axiom
    (:math:`c_j(x) \leftrightarrow c_j(x')`); it is what makes the discovered split follow the hidden
    digits rather than any even split of the class (see ``experiments/klue_digits.py``).

    Example:
        >>> from symbolic import fuzzy
        >>> m = fuzzy.KLUE(); net = m.init(5, key=jax.random.key(0))
        >>> m.concepts(net, jnp.zeros((2, 64))).shape
        (2, 10)
    """

    width: int = 128
    depth: int = 1
    augment: int = 1
    concepts_per_class: int = 2
    lam: float = 2.0
    warmup_steps: int = 500
    beta: float = 5.0
    p_exists: float = 1.0
    init_strength: float = 0.5
    consistent: bool = True
    tconorm: str = "or_prob_sum"
    implication: str = "implies_reichenbach"

    def init(self, num_classes, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        k = self.concepts_per_class * num_classes
        dku = DKU(
            self.width, k, num_classes, key=k3, concept_class=np.arange(k) // self.concepts_per_class,
            init_strength=self.init_strength, lam=self.lam, tconorm=self.tconorm,
            implication=self.implication,
        )
        return KLUENet(self.trunk(k1), Linear(self.width, num_classes, key=k2), dku)

    def loss(self, model, batch, step, key):
        x, y = batch
        k_view, k_other = jax.random.split(key)
        view = jitter(x, k_view, self.augment) if self.augment else x
        lam = lambda_warmup(step, self.lam, self.warmup_steps)
        out = jax.vmap(lambda xi: model(xi, lam=lam))(view)
        other = None
        if self.consistent and self.augment:
            other = jax.vmap(lambda xi: model(xi, lam=lam))(jitter(x, k_other, self.augment)).concepts
        links = jnp.arange(model.dku.num_concepts) // self.concepts_per_class
        distinct = distinctness_loss(
            out.concepts, out.class_probs, y, links, concepts_aug=other, p_exists=self.p_exists
        )
        return dku_loss(out, y) + self.beta * distinct

    def logits(self, model, x):
        return jax.vmap(model)(x).logits

    def concepts(self, model, x):
        return jax.vmap(model)(x).concepts


def train_concepts(
    task: ConceptTask,
    method: AbstractConceptMethod,
    *,
    key: PRNGKeyArray,
    steps: int = 3000,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Any:
    """Train ``method`` on the class labels of ``task`` (flipping a share ``label_noise`` of them).

    Returns:
        The trained model.

    Example:
        >>> from symbolic import fuzzy
        >>> d = fuzzy.digit_data(np.random.default_rng(0).random((60, 64)), np.arange(60) % 10, seed=0)
        >>> task = fuzzy.hidden_pair_task(d, seed=0)
        >>> net = fuzzy.train_concepts(task, fuzzy.Baseline(width=16), steps=5, key=jax.random.key(0))
    """
    if not isinstance(task, ConceptTask):
        raise TypeError(f"`task` must be a ConceptTask (symbolic.fuzzy.hidden_pair_task), got {type(task)}")
    if not isinstance(method, AbstractConceptMethod):
        raise TypeError(f"`method` must be an AbstractConceptMethod (Baseline(), KLUE()), got {type(method)}")
    if not 0 <= label_noise < 1:
        raise ValueError(f"got label_noise={label_noise!r}; `label_noise` must be in [0, 1)")
    y = task.y_train
    if label_noise > 0:
        y = flip_labels(y, label_noise, task.num_classes, seed=_seed(seed) + 7)
    init_key, train_key = jax.random.split(key)
    model, _ = train_steps(
        method.init(task.num_classes, key=init_key), method.loss, (task.data.x_train, y), steps=steps,
        batch_size=batch_size, key=train_key, learning_rate=learning_rate, weight_decay=weight_decay,
    )
    return model


def concept_purity(concepts: Any, digits: Any) -> float:
    """How well concepts recover hidden digits: each input takes its strongest concept, concepts are
    matched one-to-one to digits to maximise agreement (``scipy.optimize.linear_sum_assignment``), and
    the share of inputs whose concept is matched to their digit is returned.

    Args:
        concepts: ``(N, K)`` concept truths (or scores).
        digits: ``(N,)`` int hidden labels.

    Example:
        >>> from symbolic import fuzzy
        >>> c = np.eye(3)[[2, 2, 0, 1]]
        >>> fuzzy.concept_purity(c, np.array([0, 0, 1, 1]))
        0.75
    """
    from scipy.optimize import linear_sum_assignment

    concepts = np.asarray(concepts)
    digits = np.asarray(digits)
    if concepts.ndim != 2 or digits.shape != concepts.shape[:1]:
        raise ValueError(
            f"`concepts` must be (N, K) and `digits` (N,), got {concepts.shape} and {digits.shape}"
        )
    if not np.issubdtype(digits.dtype, np.integer) or (digits.size and digits.min() < 0):
        raise ValueError("`digits` must hold ints >= 0")
    assign = np.argmax(concepts, axis=1)
    n_digits = int(digits.max()) + 1 if digits.size else 1
    counts = np.zeros((concepts.shape[1], n_digits))
    np.add.at(counts, (assign, digits), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / max(len(digits), 1))


def hardest_fraction(data: DigitData, fraction: float = 0.2) -> np.ndarray:
    """Indices of the test images farthest from the mean training image of their digit (the least
    typical ``fraction``); model-independent, so every method is scored on the same subset."""
    means = np.stack([data.x_train[data.y_train == d].mean(0) for d in range(NUM_DIGITS)])
    dist = np.linalg.norm(data.x_test - means[data.y_test], axis=1)
    n = max(1, int(round(fraction * len(dist))))
    return np.argsort(-dist)[:n]


def evaluate_concepts(
    model: Any,
    method: AbstractConceptMethod,
    task: ConceptTask,
    *,
    seed: int = 0,
    noise_std: float = 0.3,
    shift_pixels: int = 1,
    occlusion_size: int = 3,
) -> dict[str, float]:
    """Test accuracies of a trained model: ``clean``, ``noise`` (Gaussian pixels), ``shift``
    (translation), ``occlusion`` (a zeroed square), ``hardest20`` (:func:`hardest_fraction`), and for
    methods with concepts ``purity`` (:func:`concept_purity` against the hidden digits)."""
    data, y = task.data, task.y_test
    seed = _seed(seed)

    def acc(x):
        return float(np.mean(np.argmax(np.asarray(method.logits(model, jnp.asarray(x))), -1) == y))

    out = {
        "clean": acc(data.x_test),
        "noise": acc(add_noise(data.x_test, noise_std, seed=seed)),
        "shift": acc(shift_images(data.x_test, shift_pixels, seed=seed)),
        "occlusion": acc(occlude(data.x_test, occlusion_size, seed=seed)),
    }
    hard = hardest_fraction(data)
    pred = np.argmax(np.asarray(method.logits(model, jnp.asarray(data.x_test[hard]))), -1)
    out["hardest20"] = float(np.mean(pred == y[hard]))
    concepts = method.concepts(model, jnp.asarray(data.x_test))
    if concepts is not None:
        out["purity"] = concept_purity(np.asarray(concepts), data.y_test)
    return out

