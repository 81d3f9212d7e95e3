r"""KLUE's Differentiable Knowledge Unit (DKU): concept heads, two-way fuzzy rules, logit modulation,
distinctness axioms, and the read-out / hand edit of the learned rules.

A DKU sits on top of a classifier's features ``h`` and base class logits ``z``. Concept heads give
concept truths :math:`c = \sigma(W_c h + b_c) \in [0, 1]^K` (trained without concept labels); the class
probabilities are :math:`p = \mathrm{softmax}(z)` (``mode="softmax"``) or :math:`\sigma(z)`
(``mode="multilabel"``). Two rule matrices of strengths in [0, 1] link them:

* forward rules :math:`c_j \to y_k` with strength :math:`R_{jk}` (``forward``, shape ``(K, C)``): the
  evidence for class :math:`k` is :math:`f_k = S_j\, T(R_{jk}, c_j)` (modus ponens, the t-conorm
  :math:`S` folded over the concepts, :math:`T` the product t-norm);
* backward rules :math:`y_k \to c_j` with strength :math:`Q_{kj}` (``backward``, shape ``(C, K)``):
  class :math:`k` requires its concepts to the degree :math:`\rho_k = S_j Q_{kj}`, they are met to the
  degree :math:`g_k = S_j\, T(Q_{kj}, c_j)`, and the rule holds for this input with truth
  :math:`b_k = I(T(p_k, \rho_k),\, g_k)` (:math:`I` the implication: a confident class whose required
  concepts are absent is contradicted, modus tollens).

The result shifts the logits, :math:`z'_k = z_k + \lambda\, (f_k + b_k - 1)`, the shift lies in
:math:`[-\lambda, \lambda]`. With every rule strength 0 (or :math:`\lambda = 0`) the shift is exactly
zero, for every t-conorm and implication of :mod:`symbolic.fuzzy`. The ordinary classification loss on
:math:`z'` trains the concepts through the rules; :func:`distinctness_axioms` keeps them apart from
each other and from the classes.

Reference: S. Srinivas, J. Niemeijer, R. Koester, "Learning to Reason: Targeted Knowledge Discovery and
Fuzzy Logic Update for Robust Image Recognition" (KLUE), CVPR 2026 Findings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from sciml.nn import Linear

from ._ops import and_prod, equiv, implies_goguen, implies_reichenbach, not_std
from ._quantifiers import Labelled, connective, exists, forall, sat_agg
from ._registry import resolve

__all__ = [
    "DKU",
    "DKUOutput",
    "RuleTable",
    "concept_classes",
    "distinctness_axioms",
    "distinctness_loss",
    "dku_loss",
    "edit_rules",
    "lambda_warmup",
    "rule_table",
]

_MODES = ("softmax", "multilabel")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"got {name}={value!r}; `{name}` must be a positive int")
    return int(value)


def _fold(op: Callable[..., Any], x: jax.Array, axis: int) -> jax.Array:
    """A binary t-conorm folded over one axis (S(x_1, S(x_2, ...))); the axis is small (the concepts)."""
    parts = jnp.moveaxis(x, axis, 0)
    return functools.reduce(lambda a, b: op(a, b), list(parts))


class DKUOutput(eqx.Module):
    """What a :class:`DKU` returns for one input.

    Attributes:
        logits: the modulated class logits :math:`z' = z + \\lambda \\Delta`, shape ``(C,)``.
        base_logits: the classifier's own logits :math:`z`, shape ``(C,)``.
        concepts: the concept truths :math:`c`, shape ``(K,)``.
        class_probs: :math:`p` (softmax or sigmoid of ``base_logits``), shape ``(C,)``.
        shift: :math:`\\Delta = f + b - 1 \\in [-1, 1]`, shape ``(C,)``.
    """

    logits: Float[Array, " C"]
    base_logits: Float[Array, " C"]
    concepts: Float[Array, " K"]
    class_probs: Float[Array, " C"]
    shift: Float[Array, " C"]


class DKU(eqx.Module):
    r"""Differentiable Knowledge Unit: concept heads and two-way fuzzy rules that shift class logits.

    Written for one example (``dku(h, z)``); batch with ``jax.vmap``. Rule strengths are stored as
    arrays and clipped to [0, 1] where they are used; entries marked in ``forward_frozen`` /
    ``backward_frozen`` (see :func:`edit_rules`) receive no gradient.

    Args:
        in_features: size of the feature vector ``h`` the concept heads read.
        num_concepts: ``K``, the number of concepts.
        num_classes: ``C``, the number of classes.
        key: PRNG key of the concept heads (keyword-only).
        concept_class: the class each concept is first linked to, ``K`` ints in ``[0, C)`` (default:
            round robin, concept ``j`` to class ``j % C``). Both rules :math:`c_j \to y_k` and
            :math:`y_k \to c_j` of a linked pair start at ``init_strength``, all others at 0.
        init_strength: starting strength of the linked rules, in [0, 1].
        lam: the modulation weight :math:`\lambda \ge 0` (an array leaf; warm it up by passing
            ``lam=`` at call time, see :func:`lambda_warmup`).
        tconorm: the t-conorm :math:`S` (a function of :mod:`symbolic.fuzzy` or its name).
        implication: the implication :math:`I`, given the same way.
        mode: ``"softmax"`` (one class per input) or ``"multilabel"`` (independent sigmoids).

    Raises:
        ValueError: a size that is not a positive int, a bad ``concept_class``, ``init_strength``
            outside [0, 1], ``lam < 0``, an unknown operator name or ``mode``.

    Example:
        >>> from symbolic import fuzzy
        >>> dku = fuzzy.DKU(8, 4, 2, key=jax.random.key(0))
        >>> out = dku(jnp.ones(8), jnp.array([1.0, -1.0]))
        >>> out.logits.shape, out.concepts.shape
        ((2,), (4,))
    """

    concept_head: Linear
    forward: Float[Array, "K C"]
    backward: Float[Array, "C K"]
    forward_frozen: Bool[Array, "K C"]
    backward_frozen: Bool[Array, "C K"]
    lam: Float[Array, ""]
    tconorm: Callable[..., Any] = eqx.field(static=True)
    implication: Callable[..., Any] = eqx.field(static=True)
    mode: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        num_concepts: int,
        num_classes: int,
        *,
        key: PRNGKeyArray,
        concept_class: Sequence[int] | None = None,
        init_strength: float = 0.5,
        lam: float = 1.0,
        tconorm: Callable[..., Any] | str = "or_prob_sum",
        implication: Callable[..., Any] | str = "implies_reichenbach",
        mode: Literal["softmax", "multilabel"] = "softmax",
    ):
        in_features = _positive_int(in_features, "in_features")
        k = _positive_int(num_concepts, "num_concepts")
        c = _positive_int(num_classes, "num_classes")
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {list(_MODES)}, got {mode!r}")
        if isinstance(init_strength, bool) or not isinstance(init_strength, (int, float)) or not (
            0 <= init_strength <= 1
        ):
            raise ValueError(f"got init_strength={init_strength!r}; `init_strength` must be in [0, 1]")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise ValueError(f"got lam={lam!r}; `lam` must be a number >= 0 (e.g. lam=2.0)")
        if concept_class is None:
            links = np.arange(k) % c
        else:
            links = np.asarray(concept_class)
            if links.shape != (k,) or not np.issubdtype(links.dtype, np.integer) or not (
                np.all((links >= 0) & (links < c))
            ):
                raise ValueError(
                    f"`concept_class` must hold num_concepts={k} ints in [0, {c}), got {concept_class!r}"
                )
        fwd = np.zeros((k, c), np.float32)
        fwd[np.arange(k), links] = init_strength
        self.concept_head = Linear(in_features, k, key=key)
        dtype = self.concept_head.weight.dtype
        self.forward = jnp.asarray(fwd, dtype)
        self.backward = jnp.asarray(fwd.T, dtype)
        self.forward_frozen = jnp.zeros((k, c), bool)
        self.backward_frozen = jnp.zeros((c, k), bool)
        self.lam = jnp.asarray(lam, dtype)
        self.tconorm = resolve(tconorm, "tconorm")
        self.implication = resolve(implication, "implication")
        self.mode = mode

    @property
    def num_concepts(self) -> int:
        return self.forward.shape[0]

    @property
    def num_classes(self) -> int:
        return self.forward.shape[1]

    def rules(self) -> tuple[Float[Array, "K C"], Float[Array, "C K"]]:
        """The rule strengths in use: ``forward`` and ``backward`` clipped to [0, 1], frozen entries
        cut out of the gradient."""
        fwd = jnp.where(self.forward_frozen, jax.lax.stop_gradient(self.forward), self.forward)
        bwd = jnp.where(self.backward_frozen, jax.lax.stop_gradient(self.backward), self.backward)
        return jnp.clip(fwd, 0, 1), jnp.clip(bwd, 0, 1)

    def class_probs(self, logits: Float[Array, " C"]) -> Float[Array, " C"]:
        """:math:`p`: softmax (``mode="softmax"``) or elementwise sigmoid (``"multilabel"``)."""
        return jax.nn.softmax(logits) if self.mode == "softmax" else jax.nn.sigmoid(logits)

    def __call__(
        self,
        features: Float[Array, " F"],
        logits: Float[Array, " C"],
        *,
        lam: Any = None,
    ) -> DKUOutput:
        """Modulate one example's logits.

        Args:
            features: the feature vector ``h`` the concept heads read, shape ``(in_features,)``.
            logits: the classifier's logits ``z``, shape ``(C,)``.
            lam: overrides the stored :math:`\\lambda` (e.g. a warm-up value; may be traced).

        Returns:
            A :class:`DKUOutput`.

        Raises:
            ValueError: ``logits`` of the wrong shape (``features`` is checked by the concept head).
        """
        if jnp.shape(logits) != (self.num_classes,):
            raise ValueError(
                f"`logits` must have shape ({self.num_classes},), got {jnp.shape(logits)}; for a batch "
                f"use jax.vmap(dku)"
            )
        concepts = jax.nn.sigmoid(self.concept_head(features))
        p = self.class_probs(logits).astype(concepts.dtype)
        r, q = self.rules()
        r, q = r.astype(concepts.dtype), q.astype(concepts.dtype)
        # forward: f_k = S_j T(R_jk, c_j)
        f = _fold(self.tconorm, and_prod(r, concepts[:, None]), axis=0)
        # backward: b_k = I(T(p_k, rho_k), S_j T(Q_kj, c_j))
        rho = _fold(self.tconorm, q, axis=1)
        met = _fold(self.tconorm, and_prod(q, concepts[None, :]), axis=1)
        b = self.implication(and_prod(p, rho), met)
        shift = f + b - 1
        weight = self.lam if lam is None else jnp.asarray(lam, concepts.dtype)
        return DKUOutput(logits + weight * shift, logits, concepts, p, shift)


def lambda_warmup(step: Any, lam: Any, warmup_steps: int) -> Float[Array, ""]:
    r"""Linear warm-up of the modulation weight, :math:`\lambda_t = \lambda \min(1, t / T)`.

    The rules start to act only once the classifier and concepts carry signal (KLUE warms up
    :math:`\lambda`). ``step`` and ``lam`` may be traced.

    Args:
        step: the optimiser step ``t``.
        lam: the final weight :math:`\lambda`.
        warmup_steps: ``T``, an int >= 0 (0: no warm-up).

    Returns:
        A float32 scalar.

    Example:
        >>> from symbolic import fuzzy
        >>> float(fuzzy.lambda_warmup(50, 2.0, 100))
        1.0
    """
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
        raise ValueError(f"got warmup_steps={warmup_steps!r}; `warmup_steps` must be an int >= 0")
    lam = jnp.asarray(lam, jnp.float32)
    if warmup_steps == 0:
        return lam
    return lam * jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0, 1)


def dku_loss(output: DKUOutput, labels: Any, *, mode: str = "softmax") -> Float[Array, ""]:
    """The classification loss on the modulated logits of a batch (``jax.vmap(dku)`` output).

    Args:
        output: a batched :class:`DKUOutput` (``logits`` of shape ``(B, C)``).
        labels: ``(B,)`` int class indices (``mode="softmax"``: cross-entropy) or ``(B, C)`` multi-hot
            targets in [0, 1] (``mode="multilabel"``: binary cross-entropy averaged over classes).
        mode: as the DKU's.

    Returns:
        The mean loss, a scalar.

    Raises:
        ValueError: labels of the wrong shape for the mode, or an unknown mode.

    Example:
        >>> from symbolic import fuzzy
        >>> dku = fuzzy.DKU(3, 2, 2, key=jax.random.key(0), lam=0.0)  # no modulation
        >>> out = jax.vmap(dku)(jnp.ones((4, 3)), jnp.zeros((4, 2)))
        >>> round(float(fuzzy.dku_loss(out, jnp.array([0, 1, 0, 1]))), 4)
        0.6931
    """
    logits = output.logits
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {list(_MODES)}, got {mode!r}")
    if mode == "softmax":
        labels = jnp.asarray(labels)
        if labels.shape != logits.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                f"`labels` must be {logits.shape[:1]} int class indices for mode='softmax', got shape "
                f"{labels.shape} and dtype {labels.dtype}"
            )
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
    labels = jnp.asarray(labels)
    if labels.shape != logits.shape:
        raise ValueError(
            f"`labels` must be multi-hot of shape {logits.shape} for mode='multilabel', got {labels.shape}"
        )
    t = labels.astype(logits.dtype)
    return jnp.mean(jax.nn.softplus(logits) - t * logits)


def concept_classes(dku: DKU, *, min_strength: Any = 0.0) -> Int[Array, " K"]:
    """The class each concept points to most strongly (argmax of its forward rules), no gradient;
    ``-1`` for a dead concept, one whose forward rules are all ``<= min_strength``.

    A dead concept (e.g. a row of rules that decayed to 0) points to no class; an argmax over its
    all-zero row would silently report class 0. :func:`distinctness_axioms` leaves ``-1`` concepts out.

    Args:
        dku: the DKU.
        min_strength: the strength a concept's strongest forward rule must exceed, in [0, 1).

    Example:
        >>> from symbolic import fuzzy
        >>> dku = fuzzy.DKU(3, 6, 3, key=jax.random.key(0))
        >>> fuzzy.concept_classes(dku)
        Array([0, 1, 2, 0, 1, 2], dtype=int32)
        >>> fuzzy.concept_classes(fuzzy.edit_rules(dku, forward={(4, 1): 0.0}))
        Array([ 0,  1,  2,  0, -1,  2], dtype=int32)
    """
    if not isinstance(dku, DKU):
        raise TypeError(f"`dku` must be a symbolic.fuzzy.DKU, got {type(dku).__name__}")
    if isinstance(min_strength, bool) or not isinstance(min_strength, (int, float)) or not (
        0 <= min_strength < 1
    ):
        raise ValueError(f"got min_strength={min_strength!r}; `min_strength` must be a number in [0, 1)")
    fwd = jax.lax.stop_gradient(dku.rules()[0])
    alive = jnp.max(fwd, axis=1) > min_strength
    return jnp.where(alive, jnp.argmax(fwd, axis=1), -1).astype(jnp.int32)


def _multi_hot(labels: Any, num_classes: int, batch: int) -> jax.Array:
    labels = jnp.asarray(labels)
    if labels.shape == (batch,) and jnp.issubdtype(labels.dtype, jnp.integer):
        return labels[:, None] == jnp.arange(num_classes)[None, :]
    if labels.shape == (batch, num_classes):
        return labels.astype(jnp.float32) > 0.5
    raise ValueError(
        f"`labels` must be ({batch},) int class indices or ({batch}, {num_classes}) multi-hot targets, "
        f"got shape {labels.shape} and dtype {labels.dtype}"
    )


def distinctness_axioms(
    concepts: Float[Array, "B K"],
    class_probs: Float[Array, "B C"],
    labels: Any,
    concept_class: Int[Array, " K"],
    *,
    concepts_aug: Float[Array, "B K"] | None = None,
    p_exists: Any = 2.0,
    p_forall: Any = 2.0,
) -> dict[str, Float[Array, ""]]:
    r"""Truth values of KLUE's distinctness axioms on a batch, written with :mod:`symbolic.fuzzy`'s
    quantifiers (``forall`` = stable :func:`pmean_error`, ``exists`` = stable :func:`pmean`).

    :math:`k(j)` is ``concept_class[j]`` and :math:`m_k` the number of concepts of class :math:`k`;
    ":math:`x \in k`" reads :math:`y(x) = k` (a guard on the labelled batch).

    * ``exclusive``: :math:`\forall x\, \forall j < l,\ k(j) = k(l):\ \neg(c_j(x) \wedge c_l(x))` (one
      concept of a class per input);
    * ``cover``: :math:`\forall x\, \forall k \ni x:\ S_{j: k(j) = k}\, c_j(x)` (the backward rule
      :math:`y_k \to \bigvee_j c_j` holds on the labelled data: an input of a class shows one of its
      concepts);
    * ``faithful``: :math:`\forall x\, \forall j:\ c_j(x) \to [x \in k(j)]` (the forward rules hold
      on the labelled data: a concept fires only inside its class);
    * ``used``: :math:`\forall j\, \exists x \in k(j):\ c_j(x)` (every concept is shown by some
      input of its class; the stable pMean with ``p_exists`` asks for more than one such input when ``p``
      is small);
    * ``balanced``: :math:`\forall j:\ \mathrm{Mean}_{x \in k(j)}\, c_j(x) \to 1/m_{k(j)}` with the
      Goguen implication (the truth of ":math:`u \le t`" is :math:`\min(1, t/u)`): no concept takes more
      than its share of its class. With ``cover`` and ``exclusive`` this splits every class evenly;
      without it one concept can take the whole class and copy the class head;
    * ``distinct``: :math:`\forall j:\ \neg \forall x \in k(j):\ (c_j(x) \leftrightarrow p_{k(j)}(x))`,
      the concept head is decorrelated from its class head inside the class (it must not just copy the
      class);
    * ``consistent`` (only with ``concepts_aug``, the concepts of a second augmented view of the same
      inputs): :math:`\forall x\, \forall j{:}\ x \in k(j):\ c_j(x) \leftrightarrow c_j(x')`. A concept
      is a property of the object, not of the view; of all the splits of a class that the other axioms
      allow, this picks those that do not change under a small translation (on the hidden-pair digits:
      the digits).

    A concept with ``concept_class[j] == -1`` (dead, see :func:`concept_classes`) is left out of every
    axiom; a concept whose class has no input in the batch is left out of ``used`` and ``balanced``
    (guarded quantifiers).

    Args:
        concepts: ``(B, K)`` concept truths.
        class_probs: ``(B, C)`` class probabilities (the classifier's head).
        labels: ``(B,)`` int labels or ``(B, C)`` multi-hot targets.
        concept_class: ``(K,)`` ints in ``[-1, C)``.
        concepts_aug: ``(B, K)`` concept truths of another augmentation of the same inputs, or None.
        p_exists: the exponent of the existential pMean.
        p_forall: the exponent of the universal pMean of errors.

    Returns:
        ``{"exclusive": t, "cover": t, "faithful": t, "used": t, "balanced": t, "distinct": t}``, scalar
        truth values, and ``"consistent"`` when ``concepts_aug`` is given.

    Raises:
        ValueError: shapes that do not agree.

    Example:
        >>> from symbolic import fuzzy
        >>> c = jnp.array([[1.0, 0.0], [0.0, 1.0]]); p = jnp.array([[1.0], [1.0]])
        >>> t = fuzzy.distinctness_axioms(c, p, jnp.array([0, 0]), jnp.array([0, 0]))
        >>> {k: round(float(v), 3) for k, v in t.items()}
        {'exclusive': 1.0, 'cover': 1.0, 'faithful': 1.0, 'used': 0.707, 'balanced': 1.0, 'distinct': 0.707}
    """
    concepts = jnp.asarray(concepts)
    class_probs = jnp.asarray(class_probs)
    if concepts.ndim != 2 or class_probs.ndim != 2 or class_probs.shape[0] != concepts.shape[0]:
        raise ValueError(
            f"`concepts` must be (B, K) and `class_probs` (B, C) with the same B, got {concepts.shape} "
            f"and {class_probs.shape}"
        )
    b, k = concepts.shape
    c = class_probs.shape[1]
    concept_class = jnp.asarray(concept_class)
    if concept_class.shape != (k,):
        raise ValueError(f"`concept_class` must have shape ({k},), got {concept_class.shape}")
    if concepts_aug is not None and jnp.shape(concepts_aug) != concepts.shape:
        raise ValueError(
            f"`concepts_aug` must have the shape of `concepts` {concepts.shape}, got "
            f"{jnp.shape(concepts_aug)}"
        )
    member = _multi_hot(labels, c, b)  # (B, C) bool
    class_probs = class_probs.astype(concepts.dtype)
    alive = concept_class >= 0
    link = jnp.where(alive, concept_class, 0)
    of_class = alive[:, None] & (link[:, None] == jnp.arange(c)[None, :])  # (K, C): concept j of class k
    share = 1 / jnp.maximum(jnp.sum(of_class, axis=0), 1).astype(concepts.dtype)  # 1 / m_k

    cj = Labelled(concepts, ("x", "j"))
    cl = Labelled(concepts, ("x", "l"))
    both = connective(and_prod, cj, cl, stable=True)
    # pairs of concepts of different classes are kept apart by `faithful`; counting them here too would
    # dilute the pMean with trivially true terms
    same = alive[:, None] & alive[None, :] & (link[:, None] == link[None, :])
    pairs = Labelled((jnp.arange(k)[:, None] < jnp.arange(k)[None, :]) & same, ("j", "l"))
    exclusive = forall(["x", "j", "l"], connective(not_std, both), mask=pairs, p=p_forall)

    # cover: S_j over the concepts of class k, the t-conorm folded as 1 - prod(1 - c) (probabilistic sum)
    shown = 1 - jnp.prod(jnp.where(of_class[None, :, :], 1 - concepts[:, :, None], 1), axis=1)  # (B, C)
    has_concepts = member & jnp.any(of_class, axis=0)[None, :]
    cover = forall(["x", "k"], Labelled(shown, ("x", "k")), mask=Labelled(has_concepts, ("x", "k")),
                   p=p_forall)

    member_j = member[:, link] & alive[None, :]  # (B, K): x in k(j)
    in_class = Labelled(member_j, ("x", "j"))
    some = exists("x", cj, mask=in_class, p=p_exists)
    has_class = Labelled(jnp.any(member_j, axis=0), ("j",))
    used = forall("j", some, mask=has_class, p=p_forall)

    usage = exists("x", cj, mask=in_class, p=1.0, stable=False)  # the share of its class c_j takes
    at_most = Labelled(implies_goguen(usage.value, share[link]), ("j",))
    balanced = forall("j", at_most, mask=has_class, p=p_forall)

    # concepts fire only inside their class: forall x, j: c_j(x) -> [y(x) = k(j)]
    target = Labelled(member_j.astype(concepts.dtype), ("x", "j"))
    fires = connective(implies_reichenbach, cj, target, stable=True)
    faithful = forall(["x", "j"], fires, mask=Labelled(alive, ("j",)), p=p_forall)

    own = Labelled(class_probs[:, link], ("x", "j"))
    # guarded by the class: outside it, c_j and p_k(j) are both ~0, and "not equivalent" there would
    # reward a concept for firing on other classes
    copies = forall("x", connective(equiv, cj, own, stable=True), mask=in_class, p=p_forall)
    distinct = forall("j", connective(not_std, copies), mask=Labelled(alive, ("j",)), p=p_forall)
    out = {
        "exclusive": exclusive.value,
        "cover": cover.value,
        "faithful": faithful.value,
        "used": used.value,
        "balanced": balanced.value,
        "distinct": distinct.value,
    }
    if concepts_aug is not None:
        other = Labelled(jnp.asarray(concepts_aug).astype(concepts.dtype), ("x", "j"))
        agree = connective(equiv, cj, other, stable=True)
        out["consistent"] = forall(["x", "j"], agree, mask=in_class, p=p_forall).value
    return out


def distinctness_loss(
    concepts: Float[Array, "B K"],
    class_probs: Float[Array, "B C"],
    labels: Any,
    concept_class: Int[Array, " K"],
    *,
    concepts_aug: Float[Array, "B K"] | None = None,
    p_exists: Any = 2.0,
    p_forall: Any = 2.0,
) -> Float[Array, ""]:
    """``1 - sat_agg`` of :func:`distinctness_axioms` (LTN's knowledge-base loss); same arguments.

    Example:
        >>> from symbolic import fuzzy
        >>> c = jnp.array([[1.0, 0.0], [0.0, 1.0]]); p = jnp.array([[1.0], [1.0]])
        >>> round(float(fuzzy.distinctness_loss(c, p, jnp.array([0, 0]), jnp.array([0, 0]))), 3)
        0.169
    """
    truths = distinctness_axioms(
        concepts, class_probs, labels, concept_class, concepts_aug=concepts_aug, p_exists=p_exists,
        p_forall=p_forall,
    )
    return 1 - sat_agg(list(truths.values()))


# --------------------------------------------------------------------------------------------------
# Knowledge update: read the rules out, edit them by hand
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RuleTable:
    """The learned rules of a DKU as a table (host numpy arrays).

    Attributes:
        forward: ``(K, C)`` strengths of :math:`c_j \\to y_k` in [0, 1].
        backward: ``(C, K)`` strengths of :math:`y_k \\to c_j` in [0, 1].
        forward_frozen, backward_frozen: which entries were fixed by hand.
        concepts, classes: row and column names.
    """

    forward: np.ndarray
    backward: np.ndarray
    forward_frozen: np.ndarray
    backward_frozen: np.ndarray
    concepts: tuple[str, ...]
    classes: tuple[str, ...]

    def rows(self, threshold: float = 0.1) -> list[tuple[str, str, float, float]]:
        """``(concept, class, forward, backward)`` for every pair with a rule above ``threshold``."""
        out = []
        for j, cn in enumerate(self.concepts):
            for k, kn in enumerate(self.classes):
                f, b = float(self.forward[j, k]), float(self.backward[k, j])
                if max(f, b) > threshold:
                    out.append((cn, kn, f, b))
        return out

    def __str__(self) -> str:
        width = max(8, *(len(n) + 1 for n in self.classes))
        head = "concept".ljust(12) + "".join(n.rjust(width) for n in self.classes)
        lines = [head]
        for j, cn in enumerate(self.concepts):
            cells = []
            for k in range(len(self.classes)):
                mark = "*" if self.forward_frozen[j, k] else " "
                cells.append(f"{self.forward[j, k]:.2f}{mark}".rjust(width))
            lines.append(cn.ljust(12) + "".join(cells))
        return "\n".join(lines)


def _names(names: Sequence[str] | None, n: int, prefix: str, arg: str) -> tuple[str, ...]:
    if names is None:
        return tuple(f"{prefix}{i}" for i in range(n))
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise ValueError(f"`{arg}` must name {n} items, got {len(names)}")
    return names


def rule_table(
    dku: DKU, *, concepts: Sequence[str] | None = None, classes: Sequence[str] | None = None
) -> RuleTable:
    """Read the rules of a (trained) DKU out as a :class:`RuleTable` (concept -> class weights).

    Args:
        dku: the DKU.
        concepts: ``K`` concept names (default ``c0, c1, ...``).
        classes: ``C`` class names (default ``y0, y1, ...``).

    Raises:
        ValueError: a name list of the wrong length.

    Example:
        >>> from symbolic import fuzzy
        >>> table = fuzzy.rule_table(fuzzy.DKU(4, 2, 2, key=jax.random.key(0)))
        >>> table.rows()
        [('c0', 'y0', 0.5, 0.5), ('c1', 'y1', 0.5, 0.5)]
    """
    if not isinstance(dku, DKU):
        raise TypeError(f"`dku` must be a symbolic.fuzzy.DKU, got {type(dku).__name__}")
    fwd, bwd = (np.asarray(a, np.float64) for a in dku.rules())
    return RuleTable(
        forward=fwd,
        backward=bwd,
        forward_frozen=np.asarray(dku.forward_frozen),
        backward_frozen=np.asarray(dku.backward_frozen),
        concepts=_names(concepts, dku.num_concepts, "c", "concepts"),
        classes=_names(classes, dku.num_classes, "y", "classes"),
    )


def _edits(edits: Mapping[tuple[int, int], float] | None, shape: tuple[int, int], arg: str, what: str):
    if edits is None:
        return [], []
    if not isinstance(edits, Mapping):
        raise TypeError(f"`{arg}` must be a mapping {{({what}): strength}}, got {type(edits).__name__}")
    idx, vals = [], []
    for key, value in edits.items():
        ok = isinstance(key, tuple) and len(key) == 2 and all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in key
        )
        if not ok or not (0 <= key[0] < shape[0] and 0 <= key[1] < shape[1]):
            raise ValueError(
                f"`{arg}` keys must be ({what}) index pairs within {shape}, got {key!r}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
            raise ValueError(f"`{arg}[{key}]` must be a rule strength in [0, 1], got {value!r}")
        idx.append(key)
        vals.append(float(value))
    return idx, vals


def edit_rules(
    dku: DKU,
    *,
    forward: Mapping[tuple[int, int], float] | None = None,
    backward: Mapping[tuple[int, int], float] | None = None,
    freeze: bool = True,
) -> DKU:
    """Fix or add rules by hand (KLUE's knowledge update) before fine-tuning.

    Args:
        dku: the DKU to edit (not changed; a new one is returned).
        forward: ``{(concept, class): strength}`` for rules :math:`c_j \\to y_k`; a strength of 0
            removes a rule, a new non-zero entry adds one.
        backward: ``{(class, concept): strength}`` for rules :math:`y_k \\to c_j`.
        freeze: mark the edited entries frozen (no gradient in later training); ``False`` sets them as
            starting values only.

    Returns:
        The edited DKU.

    Raises:
        ValueError: an index pair out of range or a strength outside [0, 1].

    Example:
        >>> from symbolic import fuzzy
        >>> dku = fuzzy.edit_rules(fuzzy.DKU(4, 2, 2, key=jax.random.key(0)), forward={(1, 0): 1.0})
        >>> fuzzy.rule_table(dku).forward[1].tolist(), bool(dku.forward_frozen[1, 0])
        ([1.0, 0.5], True)
    """
    if not isinstance(dku, DKU):
        raise TypeError(f"`dku` must be a symbolic.fuzzy.DKU, got {type(dku).__name__}")
    if not isinstance(freeze, bool):
        raise TypeError(f"`freeze` must be a bool, got {freeze!r}")
    k, c = dku.num_concepts, dku.num_classes
    f_idx, f_val = _edits(forward, (k, c), "forward", "concept, class")
    b_idx, b_val = _edits(backward, (c, k), "backward", "class, concept")
    fwd, bwd = np.array(dku.forward), np.array(dku.backward)
    f_frozen, b_frozen = np.array(dku.forward_frozen), np.array(dku.backward_frozen)
    for (j, kk), v in zip(f_idx, f_val):
        fwd[j, kk] = v
        f_frozen[j, kk] |= freeze
    for (kk, j), v in zip(b_idx, b_val):
        bwd[kk, j] = v
        b_frozen[kk, j] |= freeze
    return eqx.tree_at(
        lambda d: (d.forward, d.backward, d.forward_frozen, d.backward_frozen),
        dku,
        (
            jnp.asarray(fwd, dku.forward.dtype),
            jnp.asarray(bwd, dku.backward.dtype),
            jnp.asarray(f_frozen),
            jnp.asarray(b_frozen),
        ),
    )

