"""One process of the 2-process data-parallel test (started by test_distributed.py).

Usage: python distributed_worker.py PORT PROCESS_ID NUM_PROCESSES OUT.npz
Each process holds 2 CPU devices and its half of every batch; they train with
``fit(..., parallel="sharded")`` over the 4-device global mesh and save the final parameters.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    port, pid, nproc, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    import sciml

    sciml.train.initialize_distributed(f"127.0.0.1:{port}", nproc, pid)
    assert jax.process_count() == nproc, jax.process_count()
    sys.path.insert(0, os.path.dirname(__file__))
    from distributed_problem import N_STEPS, loss_fn, make_data, make_model, optimizer

    x, y = make_data()
    per = x.shape[0] // nproc
    local = (x[pid * per : (pid + 1) * per], y[pid * per : (pid + 1) * per])
    model, history = sciml.train.fit(
        make_model(), loss_fn, local, optimizer(), steps=N_STEPS, key=jax.random.key(0),
        parallel="sharded", progress=False,
    )
    leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]
    np.savez(out, *leaves, loss=history.loss, devices=jax.device_count())
    sciml.train.shutdown_distributed()


if __name__ == "__main__":
    main()
