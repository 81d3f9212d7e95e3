"""symbolic.fuzzy KLUE (DKU, distinctness axioms, rule read-out and edits) and the digit benchmarks."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symbolic import fuzzy as F

K, C, FEAT = 6, 3, 5


def _dku(**kw):
    return F.DKU(FEAT, K, C, key=jax.random.key(0), **kw)


def test_dku_shapes_and_modes():
    for mode in ("softmax", "multilabel"):
        dku = _dku(mode=mode)
        out = jax.vmap(dku)(jnp.ones((4, FEAT)), jnp.zeros((4, C)))
        assert out.logits.shape == (4, C) and out.concepts.shape == (4, K) and out.shift.shape == (4, C)
        assert bool(jnp.all((out.shift >= -1) & (out.shift <= 1)))
        assert bool(jnp.all((out.concepts >= 0) & (out.concepts <= 1)))


@pytest.mark.parametrize(
    "tconorm,implication",
    list(itertools.product(["or_max", "or_prob_sum", "or_luk"],
                           ["implies_reichenbach", "implies_kleene_dienes", "implies_godel",
                            "implies_goguen", "implies_luk"])),
)
def test_zero_rules_or_zero_lambda_leave_logits(tconorm, implication):
    h = jax.random.normal(jax.random.key(1), (FEAT,))
    z = jnp.array([0.3, -1.2, 2.0])
    dku = _dku(tconorm=tconorm, implication=implication, init_strength=0.0, lam=3.0)
    np.testing.assert_array_equal(dku(h, z).logits, z)
    dku = _dku(tconorm=tconorm, implication=implication, lam=0.0)
    np.testing.assert_array_equal(dku(h, z).logits, z)
    np.testing.assert_array_equal(_dku()(h, z, lam=0.0).logits, z)


def test_dku_jit_grad_and_frozen_rules():
    dku = F.edit_rules(_dku(), forward={(0, 0): 1.0})
    h = jax.random.normal(jax.random.key(2), (8, FEAT))
    z = jax.random.normal(jax.random.key(3), (8, C))
    y = jnp.arange(8) % C

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(d):
        return F.dku_loss(jax.vmap(d)(h, z), y)

    g = grad(dku)
    assert bool(jnp.all(jnp.isfinite(g.concept_head.weight)))
    assert float(g.forward[0, 0]) == 0.0  # frozen
    assert float(jnp.abs(g.forward[1, 1])) > 0  # a linked rule learns
    # a rule pushes its class: concept 0 -> class 0 with strength 1 raises class 0's logit
    out = dku(h[0], z[0])
    assert float(out.shift[0]) > float(_dku(init_strength=0.0)(h[0], z[0]).shift[0])


def test_forward_rule_raises_its_class():
    dku = F.DKU(2, 2, 2, key=jax.random.key(0), init_strength=0.0, lam=2.0)
    dku = F.edit_rules(dku, forward={(1, 0): 1.0})
    # drive concept 1 on via the head's bias
    dku = eqx.tree_at(lambda d: d.concept_head.bias, dku, jnp.array([-20.0, 20.0]))
    out = dku(jnp.zeros(2), jnp.zeros(2))
    np.testing.assert_allclose(out.logits, [2.0, 0.0], atol=1e-5)


def test_rule_table_reflects_hand_set_rule():
    dku = F.edit_rules(_dku(), forward={(4, 2): 0.9, (0, 0): 0.0}, backward={(1, 5): 0.7})
    table = F.rule_table(dku, classes=["a", "b", "c"])
    assert table.forward[4, 2] == pytest.approx(0.9) and table.forward[0, 0] == 0.0
    assert table.backward[1, 5] == pytest.approx(0.7)
    assert table.forward_frozen[4, 2] and not table.forward_frozen[1, 1]
    assert ("c4", "c", pytest.approx(0.9), pytest.approx(0.0)) in table.rows()
    assert "0.90*" in str(table)
    # an unfrozen edit is only a starting value
    assert not F.edit_rules(_dku(), forward={(0, 1): 0.3}, freeze=False).forward_frozen[0, 1]
    np.testing.assert_array_equal(F.concept_classes(dku), [0, 1, 2, 0, 2, 2])  # row 0 all zero: argmax 0


def test_distinctness_axioms():
    # two concepts of class 0 that split its inputs, faithful and exclusive
    c = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    p = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = F.distinctness_axioms(c, p, jnp.array([0, 0, 1]), jnp.array([0, 0]))
    assert float(t["exclusive"]) == pytest.approx(1.0, abs=1e-3)
    assert float(t["faithful"]) == pytest.approx(1.0, abs=1e-3)
    # both concepts on for every input of the class: not exclusive, not distinct from the class
    c2 = jnp.array([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    t2 = F.distinctness_axioms(c2, p, jnp.array([0, 0, 1]), jnp.array([0, 0]))
    assert float(t2["exclusive"]) < 0.2 and float(t2["distinct"]) < float(t["distinct"])
    g = jax.grad(lambda c: F.distinctness_loss(c, p, jnp.array([0, 0, 1]), jnp.array([0, 0])))(c2 * 0.5)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_exact_sum_probs_against_numpy_convolution():
    rng = np.random.default_rng(0)
    p1 = rng.dirichlet(np.ones(10), size=7).astype(np.float32)
    p2 = rng.dirichlet(np.ones(10), size=7).astype(np.float32)
    got = np.asarray(jax.jit(F.exact_sum_probs)(p1, p2))
    want = np.stack([np.convolve(a, b) for a, b in zip(p1, p2)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1, atol=1e-5)


def test_concept_purity_constructed():
    digits = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    assign = np.array([5, 5, 3, 1, 1, 1, 3, 3])  # concept 5 = digit 0, 1 = 1, 3 = 2 (one miss)
    assert F.concept_purity(np.eye(6)[assign], digits) == pytest.approx(7 / 8)
    perm = np.eye(3)[(digits + 1) % 3]  # a relabelling is perfect
    assert F.concept_purity(perm, digits) == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="mode"):
        _dku(mode="soft")
    with pytest.raises(ValueError, match="tconorm"):
        _dku(tconorm="or_nope")
    with pytest.raises(ValueError, match="concept_class"):
        _dku(concept_class=[0, 1, 2, 3, 0, 0])
    with pytest.raises(ValueError, match="lam"):
        _dku(lam=-1.0)
    with pytest.raises(ValueError, match="logits"):
        _dku()(jnp.ones(FEAT), jnp.ones(C + 1))
    with pytest.raises(ValueError, match="forward"):
        F.edit_rules(_dku(), forward={(K, 0): 1.0})
    with pytest.raises(ValueError, match=r"forward\["):
        F.edit_rules(_dku(), forward={(0, 0): 1.5})
    with pytest.raises(ValueError, match="labels"):
        F.dku_loss(jax.vmap(_dku())(jnp.ones((2, FEAT)), jnp.ones((2, C))), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="x"):
        F.digit_data(np.full((10, 64), 16.0), np.arange(10), seed=0)
    with pytest.raises(TypeError, match="method"):
        F.train_digit_sum(F.digit_data(np.zeros((10, 64)), np.arange(10), seed=0), "exact", n_pairs=5,
                          key=jax.random.key(0))


def _synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    proto = (rng.random((10, 64)) > 0.6).astype(np.float32)
    y = np.arange(n) % 10
    x = np.clip(proto[y] + 0.25 * rng.normal(size=(n, 64)), 0, 1)
    return F.digit_data(x, y, seed=seed)


def test_digit_sum_exact_end_to_end():
    data = _synthetic()
    r = F.train_digit_sum(data, F.ExactSum(width=64, augment=0), n_pairs=300, steps=800,
                          key=jax.random.key(0), n_test_pairs=500)
    assert r.digit_accuracy > 0.8 and r.sum_accuracy > 0.6  # chance: 0.1 and < 0.1
    assert np.all(np.isfinite(r.losses))


@pytest.mark.slow
def test_digit_sum_exact_real_digits():
    pytest.importorskip("sklearn")
    data = F.load_digit_data(0)
    r = F.train_digit_sum(data, F.ExactSum(), n_pairs=300, steps=1500, key=jax.random.key(0))
    assert r.sum_accuracy > 0.6 and r.digit_accuracy > 0.8


@pytest.mark.slow  # ~20 s: two trainings (baseline and DKU)
def test_klue_concepts_end_to_end():
    task = F.hidden_pair_task(_synthetic(), seed=0)
    m = F.KLUE(width=32, augment=0, warmup_steps=100)
    net = F.train_concepts(task, m, steps=200, batch_size=64, key=jax.random.key(0))
    r = F.evaluate_concepts(net, m, task)
    assert r["clean"] > 0.6 and 0 <= r["purity"] <= 1
    assert F.rule_table(net.dku).forward.shape == (10, 5)
