r"""Topology-aware photonic accelerators: utilisation and memory traffic of every grid of PTCs.

Jahannia, Amirany and Dalir ("Towards topology-aware very large-scale photonic AI accelerators",
arXiv:2604.26966, 2026) tile ``k x k`` photonic tensor cores (k = 4) in ``Rg x Cg`` grids and find
that, at a fixed PE budget, the grid's shape rather than its size governs utilisation (square grids
beat linear ``1 x N`` ones). This script measures that with :func:`hwsim.photonic.sweep` (SCALE-Sim's
GEMM lowering and weight-stationary folding, see ``hwsim/photonic/_grid.py``): for PE budgets
{64, 256, 1024} and every factorisation of each, on GoogleNet, ResNet-18, MobileNet and AlphaGo Zero,
utilisation (whole network, its convolutions, its M = 1 fully connected layers) and SRAM accesses,
for thermal (1 us) and electro-optic (1 ns) weight reprogramming. The sweep is timed after
compilation. With ``--noise`` (default on) it also trains a small MLP on sklearn's digits, runs its
matmuls through SVD-mapped MZI meshes and reports accuracy against phase-noise sigma.

Usage::

    python experiments/photonic_topology.py            # about a minute
    python experiments/photonic_topology.py --no-noise # the topology sweep only (seconds)

Writes ``results.json``, ``photonic_topology.png`` (and ``noise_accuracy.png``) into ``--out``
(default ``experiments/out/photonic_topology``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from hwsim import photonic

NETWORKS = ("googlenet", "resnet18", "mobilenet", "alphagozero")
BUDGETS = (64, 256, 1024)


def _part(s, mask):
    macs = np.asarray(s.layers.macs, np.float64)[mask]
    cyc = np.asarray(s.layers.cycles, np.float64)[mask]
    return macs.sum(0) / (np.asarray(s.pes, np.float64) * cyc.sum(0))


def topology_study(reprogram_ns: float) -> tuple[dict, float]:
    ptc = photonic.PTC(4, reprogram_ns=reprogram_ns)
    for name in NETWORKS:  # compile
        jax.block_until_ready(photonic.sweep(name, BUDGETS, ptc=ptc))
    t0 = time.perf_counter()
    sweeps = {name: jax.block_until_ready(photonic.sweep(name, BUDGETS, ptc=ptc)) for name in NETWORKS}
    seconds = time.perf_counter() - t0
    out = {}
    for name, s in sweeps.items():
        g = np.asarray(s.is_gemv)
        rows, cols, pes = (np.asarray(x).tolist() for x in (s.grid_rows, s.grid_cols, s.pes))
        util, mem = np.asarray(s.utilization), np.asarray(s.memory_accesses)
        conv_u, gemv_u = _part(s, ~g), _part(s, g)
        per_budget = {}
        for p in BUDGETS:
            idx = [j for j in range(len(pes)) if pes[j] == p]
            lin = idx[0]  # 1 x N
            best = max(idx, key=lambda j: util[j])
            sq = min(idx, key=lambda j: (abs(np.log(rows[j] / cols[j])), -rows[j]))
            layer_u = np.asarray(s.layers.utilization)[:, idx]
            ratios = layer_u.max(1) / layer_u[:, 0]
            per_budget[p] = dict(
                grids=[f"{rows[j]}x{cols[j]}" for j in idx],
                utilization=[float(util[j]) for j in idx],
                conv_utilization=[float(conv_u[j]) for j in idx],
                gemv_utilization=[float(gemv_u[j]) for j in idx],
                memory_accesses=[float(mem[j]) for j in idx],
                best_grid=f"{rows[best]}x{cols[best]}",
                best_conv_grid=f"{rows[max(idx, key=lambda j: conv_u[j])]}x"
                               f"{cols[max(idx, key=lambda j: conv_u[j])]}",
                best_gemv_grid=f"{rows[max(idx, key=lambda j: gemv_u[j])]}x"
                               f"{cols[max(idx, key=lambda j: gemv_u[j])]}",
                square_grid=f"{rows[sq]}x{cols[sq]}",
                square_over_linear_util=float(util[sq] / util[lin]),
                square_over_linear_conv_util=float(conv_u[sq] / conv_u[lin]),
                memory_reduction_square_vs_linear=float(1 - mem[sq] / mem[lin]),
                max_layer_best_over_linear=float(ratios.max()),
                max_layer=s.layers.names[int(ratios.argmax())],
            )
        out[name] = dict(gemv_layers=[s.layers.names[i] for i in np.where(g)[0]], budgets=per_budget)
    return out, seconds


def plot_topology(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(NETWORKS), figsize=(4.2 * len(NETWORKS), 7), squeeze=False)
    res = results["electro_optic"]
    for c, name in enumerate(NETWORKS):
        for p in BUDGETS:
            b = res[name]["budgets"][p]
            x = np.arange(len(b["grids"]))
            axes[0, c].plot(x, b["utilization"], "o-", label=f"{p} PEs")
            axes[1, c].plot(x, np.asarray(b["memory_accesses"]) / 1e6, "o-", label=f"{p} PEs")
            if p == BUDGETS[-1]:
                for ax in axes[:, c]:
                    ax.set_xticks(x, b["grids"], rotation=45, fontsize=7)
        axes[0, c].set_title(f"{name} (electro-optic)")
        axes[0, c].set_ylabel("utilisation")
        axes[1, c].set_ylabel("SRAM accesses (M)")
        axes[1, c].set_xlabel("grid Rg x Cg (index within budget; labels for 1024)")
        axes[0, c].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def noise_study(seed: int, trials: int) -> dict:
    import optax
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed)
    key = jax.random.key(seed)
    k1, k2 = jax.random.split(key)
    params = {"w1": jax.random.normal(k1, (64, 32)) / 8.0, "b1": jnp.zeros(32),
              "w2": jax.random.normal(k2, (32, 10)) / np.sqrt(32.0), "b2": jnp.zeros(10)}

    def forward(p, xb, w1, w2):
        return jax.nn.relu(xb @ w1 + p["b1"]) @ w2 + p["b2"]

    def loss(p, xb, yb):
        logits = forward(p, xb, p["w1"], p["w2"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(loss)(p, jnp.asarray(xtr), jnp.asarray(ytr))
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s

    for _ in range(300):
        params, state = step(params, state)
    xte_j, yte_j = jnp.asarray(xte), jnp.asarray(yte)
    digital = forward(params, xte_j, params["w1"], params["w2"])
    acc_digital = float((digital.argmax(-1) == yte_j).mean())
    meshes = [photonic.svd_mesh(np.asarray(params[w]), real=True) for w in ("w1", "w2")]

    @jax.jit
    def photonic_logits(m1, m2):
        w1 = photonic.reconstruct_matrix(m1).real
        w2 = photonic.reconstruct_matrix(m2).real
        return forward(params, xte_j, w1, w2)

    ideal = photonic_logits(*meshes)
    rel = float(jnp.linalg.norm(ideal - digital) / jnp.linalg.norm(digital))

    @jax.jit
    def accuracy(sigma, key):
        noise = photonic.Noise(phase_std=sigma)
        ka, kb = jax.random.split(key)
        logits = photonic_logits(photonic.perturb(meshes[0], noise, key=ka),
                                 photonic.perturb(meshes[1], noise, key=kb))
        return (logits.argmax(-1) == yte_j).mean()

    sigmas = np.concatenate([[0.0], np.geomspace(1e-3, 0.3, 16)])
    keys = jax.random.split(jax.random.key(seed + 1), trials)
    accs = [float(jax.vmap(lambda kk, s=s: accuracy(jnp.float32(s), kk))(keys).mean()) for s in sigmas]
    target = acc_digital - 0.01
    below = [i for i, a in enumerate(accs) if a < target]
    sigma_1pct = None
    if below:
        i = below[0]
        a0, a1 = accs[i - 1], accs[i]
        s0, s1 = np.log(max(sigmas[i - 1], 1e-4)), np.log(sigmas[i])
        sigma_1pct = float(np.exp(s0 + (a0 - target) / (a0 - a1) * (s1 - s0)))
    return dict(digital_accuracy=acc_digital, noiseless_rel_error=rel, sigmas=sigmas.tolist(),
                accuracy=accs, trials=trials,
                monotone_nonincreasing=bool(all(b <= a + 1.0 / len(yte) for a, b in zip(accs, accs[1:]))),
                sigma_at_1pct_loss=sigma_1pct)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/out/photonic_topology"))
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--trials", type=int, default=16, help="noise draws per sigma")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"ptc": "4x4 coherent MZI (SVD) core, 10 GHz; defaults of hwsim.photonic.PTC",
                     "budgets": list(BUDGETS)}
    timings = {}
    for label, ns in (("thermal", photonic.THERMO_OPTIC_NS), ("electro_optic", photonic.ELECTRO_OPTIC_NS)):
        results[label], timings[label] = topology_study(ns)
    results["sweep_seconds_after_compile"] = timings
    plot_topology(results, args.out / "photonic_topology.png")
    for label in ("thermal", "electro_optic"):
        print(f"\n{label} reprogramming: square / 1xN utilisation (whole net, convs), memory reduction")
        for name in NETWORKS:
            for b in BUDGETS:
                r = results[label][name]["budgets"][b]
                red = 100 * r["memory_reduction_square_vs_linear"]
                print(f"  {name:12s} {b:5d} PEs  sq {r['square_grid']:>5s}: "
                      f"util x{r['square_over_linear_util']:.2f} "
                      f"conv x{r['square_over_linear_conv_util']:.2f}"
                      f"  mem -{red:.0f}%  best {r['best_grid']}, best conv {r['best_conv_grid']}, "
                      f"best GEMV {r['best_gemv_grid']}  max layer x{r['max_layer_best_over_linear']:.1f} "
                      f"({r['max_layer']})")
    print(f"\nsweep time after compile (4 networks x 15 grids): {timings}")
    if args.noise:
        results["noise"] = n = noise_study(args.seed, args.trials)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.semilogx(np.maximum(n["sigmas"], 5e-4), n["accuracy"], "o-", label="photonic (SVD meshes)")
        ax.axhline(n["digital_accuracy"], color="k", ls="--", label="digital float32")
        ax.set_xlabel("phase noise sigma (rad)")
        ax.set_ylabel("test accuracy")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "noise_accuracy.png", dpi=120)
        plt.close(fig)
        print(f"\nnoise: digital {n['digital_accuracy']:.4f}, "
              f"noiseless rel. error {n['noiseless_rel_error']:.2e}, "
              f"sigma at 1% loss {n['sigma_at_1pct_loss']}, monotone {n['monotone_nonincreasing']}")
        print("  " + ", ".join(f"{s:.3g}:{a:.3f}" for s, a in zip(n["sigmas"], n["accuracy"])))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
