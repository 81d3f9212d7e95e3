"""sciml.train: fit, data parallel (pmap, sharded), NaN guard, checkpoints and resume."""

import os
import pathlib
import socket
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
from sciml.train import Checkpoint, NonFiniteLossError, Pmap, Sharded, fit

from ..helpers import tree_equal_bits
from .distributed_problem import N_STEPS, loss_fn, make_data, make_model, optimizer

HERE = pathlib.Path(__file__).parent


def _params(model):
    return eqx.filter(model, eqx.is_array)


def _sample(key):
    x = jax.random.normal(key, (32, 3))
    return x, jnp.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]


def test_fit_reduces_loss_and_reports_history():
    model, hist = fit(
        make_model(), loss_fn, make_data(), optax.adam(1e-2), steps=300, key=jax.random.key(0),
        progress=False,
    )
    assert hist.loss.shape == (300,)
    assert hist.loss[-1] < 0.05 * hist.loss[0]
    assert hist.first_step == 0 and int(hist.state.step) == 300
    assert hist.compile_seconds > 0 and hist.steps_per_second > 0
    assert isinstance(model, type(make_model()))
    # The returned loss is the loss of the model *before* each update: re-evaluating the final
    # model gives something at most a little below the last recorded loss.
    final = float(loss_fn(model, make_data(), jax.random.key(0)))
    assert final <= hist.loss[-1] * 1.05


@pytest.mark.parametrize("parallel", ["pmap", "sharded", Pmap(n_devices=4), Sharded(n_devices=4)])
def test_data_parallel_matches_single_device(parallel):
    """Acceptance: single == pmap == sharded after 20 Adam steps on 4 CPU devices (float32, 1e-5)."""
    assert jax.device_count() == 4
    single, h1 = fit(make_model(), loss_fn, make_data(), optimizer(), steps=N_STEPS,
                     key=jax.random.key(0), progress=False)
    par, h2 = fit(make_model(), loss_fn, make_data(), optimizer(), steps=N_STEPS,
                  key=jax.random.key(0), parallel=parallel, progress=False)
    np.testing.assert_allclose(h2.loss, h1.loss, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(_params(par)), jax.tree_util.tree_leaves(_params(single))):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == np.float32
        # relative to the leaf's scale: entries near zero have no meaningful relative error
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b)), np.max(np.abs(a - b))


@pytest.mark.parametrize("parallel", ["pmap", "sharded"])
def test_fit_continues_from_a_parallel_fit(parallel):
    """A model a data-parallel fit returned (replicated over the devices), or one committed to a
    device by the caller, goes back into fit: 10 + 10 parallel steps equal the same two runs on one
    device (each with a fresh optimiser state); pmap used to reject the replicated leaves
    ("Sharding passed to jit does not match")."""
    a, _ = fit(make_model(), loss_fn, make_data(), optimizer(), steps=10, key=jax.random.key(0),
               progress=False)
    a, _ = fit(a, loss_fn, make_data(), optimizer(), steps=10, key=jax.random.key(1), progress=False)
    b, _ = fit(make_model(), loss_fn, make_data(), optimizer(), steps=10, key=jax.random.key(0),
               parallel=parallel, progress=False)
    b, _ = fit(b, loss_fn, make_data(), optimizer(), steps=10, key=jax.random.key(1),
               parallel=parallel, progress=False)
    params, static = eqx.partition(make_model(), eqx.is_array)
    committed = eqx.combine(jax.device_put(params, jax.devices()[1]), static)
    c, _ = fit(committed, loss_fn, make_data(), optimizer(), steps=2, key=jax.random.key(0),
               parallel=parallel, progress=False)
    for x, y in zip(jax.tree_util.tree_leaves(_params(b)), jax.tree_util.tree_leaves(_params(a))):
        x, y = np.asarray(x), np.asarray(y)
        assert np.max(np.abs(x - y)) <= 1e-5 * np.max(np.abs(y))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(_params(c)))


def test_data_parallel_with_on_device_sampling():
    """A sampler runs inside the step; with pmap each device samples its share with its own key."""
    losses = {}
    for parallel in (None, "pmap", "sharded"):
        _, h = fit(make_model(), loss_fn, _sample, optax.adam(1e-2), steps=200,
                   key=jax.random.key(3), parallel=parallel, progress=False)
        losses[parallel] = h.loss
        assert h.loss[-20:].mean() < 0.3 * h.loss[:20].mean()
    # sharded runs the single-device program: same samples, same numbers
    np.testing.assert_allclose(losses["sharded"], losses[None], rtol=1e-4)


def test_step_compiles_once_for_new_data():
    """Trace counting: 20 steps over 20 different batches trace the loss exactly once."""
    traces = []

    def counting_loss(model, batch, key):
        traces.append(1)
        return loss_fn(model, batch, key)

    stream = (_sample(jax.random.key(i)) for i in range(20))
    fit(make_model(), counting_loss, stream, optax.sgd(1e-2), steps=20, key=jax.random.key(0),
        progress=False)
    assert len(traces) == 1


def test_nan_guard_names_step_and_last_finite_loss():
    x, y = make_data()

    def stream():
        for i in range(100):
            yield (x, jnp.full_like(y, jnp.nan)) if i == 7 else (x, y)

    with pytest.raises(NonFiniteLossError, match=r"at step 7; last finite loss [0-9.e+-]+ at step 6") as e:
        fit(make_model(), loss_fn, stream(), optax.adam(1e-3), steps=50, key=jax.random.key(0),
            progress=False, log_every=5)
    assert e.value.step == 7 and np.isnan(e.value.loss)
    assert np.isfinite(e.value.last_finite_loss)


def test_nan_guard_on_divergence():
    with pytest.raises(NonFiniteLossError, match="loss became"):
        fit(make_model(), loss_fn, make_data(), optax.sgd(1e6), steps=200, key=jax.random.key(0),
            progress=False)


def test_resume_is_bit_identical(tmp_path):
    """Acceptance: resume from a checkpoint continues exactly as an uninterrupted run."""
    sources = {
        "on-device sampler": lambda: _sample,
        "host iterator": lambda: sciml.train.minibatches(make_data(), 16, key=jax.random.key(9)),
    }
    for name, source in sources.items():

        full, hfull = fit(make_model(), loss_fn, source(), optax.adam(1e-2), steps=30,
                          key=jax.random.key(5), progress=False)
        ckdir = tmp_path / name.replace(" ", "_")
        fit(make_model(), loss_fn, source(), optax.adam(1e-2), steps=12, key=jax.random.key(5),
            progress=False, callbacks=[Checkpoint(ckdir, every=4, keep=2)])
        assert sorted(p.name for p in ckdir.iterdir()) == ["step_000000008", "step_000000012"]
        resumed, hres = fit(make_model(), loss_fn, source(), optax.adam(1e-2), steps=30,
                            key=jax.random.key(5), progress=False, resume=ckdir)
        assert hres.first_step == 12 and len(hres.loss) == 18
        assert tree_equal_bits(_params(resumed), _params(full))
        assert tree_equal_bits(hres.state.opt_state, hfull.state.opt_state)
        assert np.array_equal(hres.loss, hfull.loss[12:])
        assert np.array_equal(jax.random.key_data(hres.state.key), jax.random.key_data(hfull.state.key))


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    _, hist = fit(make_model(), loss_fn, make_data(), optax.adam(1e-2), steps=3,
                  key=jax.random.key(0), progress=False)
    path = sciml.train.save_checkpoint(tmp_path / "ck", hist.state)
    like = sciml.train.init_state(make_model(), optax.adam(1e-2), key=jax.random.key(1))
    back = sciml.train.load_checkpoint(path, like)
    assert tree_equal_bits(_params(back), _params(hist.state))
    assert int(back.step) == 3
    # another model structure: the error names the leaf
    other = sciml.train.init_state(
        eqx.nn.MLP(3, 1, 8, 2, key=jax.random.key(2)), optax.adam(1e-2), key=jax.random.key(1)
    )
    with pytest.raises(ValueError, match=r"leaf #\d+ .*layers\[0\]\.weight.*\[8, 3\].*\[16, 3\]"):
        sciml.train.load_checkpoint(path, other)
    with pytest.raises(ValueError, match=r"does not match the model: leaf #\d+ \.step"):
        sciml.train.load_checkpoint(
            path, sciml.train.init_state(make_model(), optax.sgd(1e-2), key=jax.random.key(1))
        )
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        sciml.train.load_checkpoint(tmp_path / "missing", like)


def test_callbacks_can_stop_early():
    seen = []

    def cb(info):
        seen.append(info.step)
        return info.step >= 5

    _, hist = fit(make_model(), loss_fn, make_data(), optax.adam(1e-2), steps=50,
                  key=jax.random.key(0), progress=False, callbacks=[cb])
    assert seen == [1, 2, 3, 4, 5] and hist.stopped_early and len(hist.loss) == 5
    assert int(hist.state.step) == 5


def test_progress_bar_shows_step_loss_rate(capsys):
    fit(make_model(), loss_fn, make_data(), optax.adam(1e-2), steps=20, key=jax.random.key(0),
        progress=True, log_every=5)
    err = capsys.readouterr().err
    assert "20/20" in err and "step/s" in err and "loss=" in err
    fit(make_model(), loss_fn, make_data(), optax.adam(1e-2), steps=5, key=jax.random.key(0),
        progress=False)
    assert capsys.readouterr().err == ""


def test_bad_input_errors():
    data = make_data()
    opt = optax.adam(1e-2)
    wide = (jnp.ones((8, 5)), jnp.ones((8, 1)))
    with pytest.raises(ValueError, match=r"first batch \(shapes \[0\]: \(8, 5\), \[1\]: \(8, 1\)\)"):
        fit(make_model(), loss_fn, wide, opt, steps=2, key=jax.random.key(0), progress=False)
    net = sciml.nn.MLP(3, 1, 8, 1, "relu", key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"\(8, 5\).*MLP expected input of shape \(3,\).*got \(5,\)"):
        fit(net, loss_fn, wide, opt, steps=2, key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match=r"`parallel` must be None, one of \['single', 'pmap', 'sharded'\]"):
        fit(make_model(), loss_fn, data, opt, steps=2, key=jax.random.key(0), parallel="tpu")
    with pytest.raises(ValueError, match="asked for 64 devices but only 4"):
        fit(make_model(), loss_fn, data, opt, steps=2, key=jax.random.key(0), parallel=Pmap(64))
    with pytest.raises(ValueError, match="asked for 8 devices"):
        Sharded(n_devices=8)
    with pytest.raises(ValueError, match="divisible by the 4"):
        fit(make_model(), loss_fn, (data[0][:6], data[1][:6]), opt, steps=2,
            key=jax.random.key(0), parallel="pmap")
    with pytest.raises(ValueError, match="`steps` must be a non-negative int"):
        fit(make_model(), loss_fn, data, opt, steps=-1, key=jax.random.key(0))
    with pytest.raises(TypeError, match="`key` must be a JAX PRNG key"):
        fit(make_model(), loss_fn, data, opt, steps=2, key=0)
    # a batch of keys used to fail inside the traced step with JAX's own split/fold_in error
    with pytest.raises(ValueError, match=r"`key` must be a single PRNG key.*shape \(2,\)"):
        fit(make_model(), loss_fn, data, opt, steps=2, key=jax.random.split(jax.random.key(0)))
    with pytest.raises(ValueError, match=r"`key` must be a single PRNG key.*shape \(5,\)"):
        next(sciml.train.minibatches(data, 4, key=jnp.zeros(5, jnp.uint32)))
    with pytest.raises(TypeError, match="`optimizer` must be an optax.GradientTransformation"):
        fit(make_model(), loss_fn, data, "adam", steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="must return a scalar"):
        fit(make_model(), lambda m, b, k: jax.vmap(m)(b[0]), data, opt, steps=2,
            key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="ran out"):
        fit(make_model(), loss_fn, iter([data, data]), opt, steps=5, key=jax.random.key(0),
            progress=False)


def test_minibatches_are_deterministic_epochs():
    data = (np.arange(10.0), np.arange(10.0) * 2)
    a = sciml.train.minibatches(data, 4, key=jax.random.key(0))
    b = sciml.train.minibatches(data, 4, key=jax.random.key(0))
    first = [next(a) for _ in range(4)]
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(first, (next(b) for _ in range(4))))
    epoch = np.concatenate([f[0] for f in first[:2]])
    assert len(set(epoch.tolist())) == 8  # no repeats within an epoch
    assert all(np.array_equal(f[1], 2 * f[0]) for f in first)  # leaves stay aligned
    with pytest.raises(ValueError, match="share its leading dimension"):
        next(sciml.train.minibatches((np.ones(3), np.ones(4)), 2, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="`batch_size` must be an int in 1..10"):
        next(sciml.train.minibatches(data, 11, key=jax.random.key(0)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_distributed_matches_one_process(tmp_path):
    """Acceptance: 2 processes (2 CPU devices each, gloo) train data-parallel with jax.distributed
    and end with the parameters of a one-process run."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "distributed_worker.py"), str(port), str(i), "2",
             str(tmp_path / f"p{i}.npz")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=180)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("distributed workers timed out")
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    model, hist = fit(make_model(), loss_fn, make_data(), optimizer(), steps=N_STEPS,
                      key=jax.random.key(0), progress=False)
    ref = [np.asarray(v) for v in jax.tree_util.tree_leaves(_params(model))]
    for i in range(2):
        got = np.load(tmp_path / f"p{i}.npz")
        assert int(got["devices"]) == 4
        np.testing.assert_allclose(got["loss"], hist.loss, rtol=1e-5)
        for j, r in enumerate(ref):
            assert np.max(np.abs(got[f"arr_{j}"] - r)) <= 1e-5 * np.max(np.abs(r))


def test_fit_trains_a_flax_nnx_model():
    """The flax adapter gives a pytree that `fit` trains like any equinox model."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 16, rngs=rngs)
            self.l2 = nnx.Linear(16, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    model = sciml.nn.from_flax(Net(nnx.Rngs(0)))
    trained, hist = fit(model, loss_fn, make_data(), optax.adam(1e-2), steps=200,
                        key=jax.random.key(0), progress=False)
    assert hist.loss[-1] < 0.1 * hist.loss[0]
    back = sciml.nn.to_flax(trained)
    x, _ = make_data()
    np.testing.assert_allclose(back(x), jax.vmap(trained)(x), rtol=1e-6, atol=1e-6)


def test_zero_steps_and_finished_resume_return_the_state():
    model = make_model()
    same, hist = fit(model, loss_fn, make_data(), optax.adam(1e-2), steps=0, key=jax.random.key(0))
    assert same is model and len(hist.loss) == 0 and int(hist.state.step) == 0
    _, h3 = fit(model, loss_fn, make_data(), optax.adam(1e-2), steps=3, key=jax.random.key(0),
                progress=False)
    again, h = fit(model, loss_fn, make_data(), optax.adam(1e-2), steps=3, key=jax.random.key(0),
                   resume=h3.state)
    assert len(h.loss) == 0 and tree_equal_bits(_params(again), _params(h3.state.model))
    with pytest.raises(ValueError, match="smaller than the resumed state's step count 3"):
        fit(model, loss_fn, make_data(), optax.adam(1e-2), steps=2, key=jax.random.key(0),
            resume=h3.state)
