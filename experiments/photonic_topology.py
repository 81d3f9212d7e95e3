r"""Topology-aware photonic accelerators: utilisation and memory traffic of every grid of PTCs.

Jahannia, Amirany and Dalir ("Towards topology-aware very large-scale photonic AI accelerators",
arXiv:2604.26966, 2026) tile ``k x k`` photonic tensor cores (k = 4) in ``Rg x Cg`` grids and find
that, at a fixed PE budget, the grid's shape rather than its size governs utilisation (square grids
beat linear ``1 x N`` ones on convolutions, and the ranking changes on fully connected layers). This
script measures that with :func:`hwsim.photonic.sweep` (SCALE-Sim's GEMM lowering and folding, see
``hwsim/photonic/_grid.py``): for PE budgets {64, 256, 1024} and every factorisation of each, on
GoogleNet, ResNet-18, MobileNet and AlphaGo Zero, for thermal (1 us) and electro-optic (1 ns)
reprogramming, and for two dataflows: weight stationary (``ws``, weights programmed into the meshes)
and the per-layer faster of weight and input stationary (``best``; input stationary programs the
ifmap and streams the filter columns). Per network x budget it reports the whole-network utilisation
of the square grid over the ``1 x N`` and ``N x 1`` grids, the SRAM-access reduction of the square
grid, the best grid for the convolutions and for the M = 1 (GEMV) layers, the per-layer maximum and
median square-vs-linear utilisation ratio over the convolutions, and whether the GEMV ranking is
reversed (its best grid is not the square one; by how much). The sweeps are timed after compilation.

By default the SRAM keeps up with the grid (SCALE-Sim's assumption). ``--sram-bandwidth 128,64,32``
(the default list) repeats the electro-optic study with SRAM buffers that move at most that many words
per modulation cycle (``sram_bandwidth`` of :func:`hwsim.photonic.sweep`): a fold moves about
``R + C`` words per cycle, so at a fixed budget ``R C`` the grids stall in proportion to their
perimeter. For reference, a square 32 x 32 array (1024 PEs) moves 64 words per cycle, a 4 x 256
(1 x 64 grid) 260.
With ``--noise`` (default on) it also trains a small MLP on sklearn's digits, runs its matmuls through
SVD-mapped MZI meshes and reports accuracy against phase-noise sigma.

Usage::

    python experiments/photonic_topology.py            # about a minute
    python experiments/photonic_topology.py --no-noise # the topology sweep only (seconds)

Writes ``results.json``, ``photonic_topology.png``, ``photonic_bandwidth.png`` (and
``noise_accuracy.png``) into ``--out``
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
DATAFLOWS = ("ws", "best")
BANDWIDTHS = (128, 64, 32)
REPROGRAMMING = (("thermal", photonic.THERMO_OPTIC_NS), ("electro_optic", photonic.ELECTRO_OPTIC_NS))


def _part(s, mask):
    macs = np.asarray(s.layers.macs, np.float64)[mask]
    cyc = np.asarray(s.layers.cycles, np.float64)[mask]
    return macs.sum(0) / (np.asarray(s.pes, np.float64) * cyc.sum(0))


def _budget_summary(s, p: int) -> dict:
    """The study's numbers for one network on the grids of one PE budget."""
    g = np.asarray(s.is_gemv)
    rows, cols, pes = (np.asarray(x).tolist() for x in (s.grid_rows, s.grid_cols, s.pes))
    idx = [j for j in range(len(pes)) if pes[j] == p]
    name = lambda j: f"{rows[j]}x{cols[j]}"  # noqa: E731
    lin, tall = idx[0], idx[-1]  # 1 x N, N x 1
    sq = min(idx, key=lambda j: (abs(np.log(rows[j] / cols[j])), -rows[j]))
    util, mem = np.asarray(s.utilization, np.float64), np.asarray(s.memory_accesses, np.float64)
    conv_u, gemv_u = _part(s, ~g), _part(s, g)
    argmax = lambda u: max(idx, key=lambda j: u[j])  # noqa: E731  (ties: the first, 1 x N side)
    best, best_conv, best_gemv = argmax(util), argmax(conv_u), argmax(gemv_u)
    layer_u = np.asarray(s.layers.utilization, np.float64)
    conv = np.where(~g)[0]
    vs_lin, vs_tall = layer_u[conv, sq] / layer_u[conv, lin], layer_u[conv, sq] / layer_u[conv, tall]
    conv_macs = np.asarray(s.layers.macs, np.float64)[conv, sq]
    chose_is = np.asarray(s.layers.input_stationary)
    stall_share = np.asarray(s.stall_cycles, np.float64) / np.asarray(s.cycles, np.float64)
    return dict(
        grids=[name(j) for j in idx],
        utilization=[float(util[j]) for j in idx],
        conv_utilization=[float(conv_u[j]) for j in idx],
        gemv_utilization=[float(gemv_u[j]) for j in idx],
        memory_accesses=[float(mem[j]) for j in idx],
        input_stationary_layers=[int(chose_is[:, j].sum()) for j in idx],
        square_grid=name(sq), best_grid=name(best), best_conv_grid=name(best_conv),
        best_gemv_grid=name(best_gemv),
        square_over_1xN_util=float(util[sq] / util[lin]),
        square_over_Nx1_util=float(util[sq] / util[tall]),
        square_over_1xN_conv_util=float(conv_u[sq] / conv_u[lin]),
        square_over_Nx1_conv_util=float(conv_u[sq] / conv_u[tall]),
        memory_reduction_square_vs_1xN=float(1 - mem[sq] / mem[lin]),
        memory_reduction_square_vs_Nx1=float(1 - mem[sq] / mem[tall]),
        conv_layer_square_over_1xN_max=float(vs_lin.max()),
        conv_layer_square_over_1xN_median=float(np.median(vs_lin)),
        conv_layer_square_over_1xN_max_layer=s.layers.names[int(conv[vs_lin.argmax()])],
        conv_layers_square_over_1xN_at_least_6x=int((vs_lin >= 6).sum()),
        conv_layers=int(len(conv)),
        conv_mac_share_square_over_1xN_at_least_6x=float(conv_macs[vs_lin >= 6].sum() / conv_macs.sum()),
        stall_fraction=[float(stall_share[j]) for j in idx],
        conv_layer_square_over_Nx1_max=float(vs_tall.max()),
        conv_layer_square_over_Nx1_median=float(np.median(vs_tall)),
        conv_layer_square_over_Nx1_max_layer=s.layers.names[int(conv[vs_tall.argmax()])],
        gemv_reversed=bool(best_gemv != sq and gemv_u[best_gemv] > gemv_u[sq]),
        gemv_best_over_square=float(gemv_u[best_gemv] / gemv_u[sq]),
        gemv_spread=float(np.ptp(gemv_u[idx]) / gemv_u[idx].max()),
    )


def topology_study(reprogram_ns: float, dataflow: str, sram_bandwidth: int | None = None
                   ) -> tuple[dict, float]:
    ptc = photonic.PTC(4, reprogram_ns=reprogram_ns)
    run = lambda name: photonic.sweep(name, BUDGETS, ptc=ptc, dataflow=dataflow,  # noqa: E731
                                      sram_bandwidth=sram_bandwidth)
    for name in NETWORKS:  # compile
        jax.block_until_ready(run(name))
    t0 = time.perf_counter()
    sweeps = {name: jax.block_until_ready(run(name)) for name in NETWORKS}
    seconds = time.perf_counter() - t0
    out = {}
    for name, s in sweeps.items():
        gemv = [s.layers.names[i] for i in np.where(np.asarray(s.is_gemv))[0]]
        out[name] = dict(gemv_layers=gemv, budgets={p: _budget_summary(s, p) for p in BUDGETS})
    return out, seconds


def plot_topology(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(NETWORKS), figsize=(4.2 * len(NETWORKS), 10), squeeze=False)
    res = results["electro_optic"]
    for c, name in enumerate(NETWORKS):
        for i, p in enumerate(BUDGETS):
            for df, ls in zip(DATAFLOWS, ("o-", "s--")):
                b = res[df][name]["budgets"][p]
                x = np.arange(len(b["grids"]))
                kw = dict(color=f"C{i}", label=f"{p} PEs, {df}")
                axes[0, c].plot(x, b["utilization"], ls, **kw)
                axes[1, c].plot(x, b["gemv_utilization"], ls, **kw)
                axes[2, c].plot(x, np.asarray(b["memory_accesses"]) / 1e6, ls, **kw)
            if p == BUDGETS[-1]:
                for ax in axes[:, c]:
                    ax.set_xticks(x, b["grids"], rotation=45, fontsize=7)
        axes[0, c].set_title(f"{name} (electro-optic)")
        axes[0, c].set_ylabel("utilisation (whole network)")
        axes[1, c].set_ylabel("utilisation (M = 1 layers)")
        axes[2, c].set_ylabel("SRAM accesses (M)")
        axes[2, c].set_xlabel("grid Rg x Cg (index within budget; labels for 1024)")
        axes[0, c].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: dict) -> None:
    head = (f"{'net':11s} {'PEs':>4s} {'sq':>3s} {'sq/1xN':>6s} {'sq/Nx1':>6s} {'mem-':>4s} "
            f"{'conv best':>9s} {'conv layer sq/1xN':>17s} {'sq/Nx1':>11s} "
            f"{'GEMV best':>9s} {'x sq':>5s} {'rev':>3s} {'IS':>3s}")
    for label, _ in REPROGRAMMING:
        for df in DATAFLOWS:
            print(f"\n{label} reprogramming, dataflow {df}: square grid vs linear (utilisation ratios, "
                  "SRAM-access reduction vs 1xN, per-layer conv ratios max/median; GEMV = M = 1 layers; "
                  "IS = layers run input stationary on the square grid)")
            print(head)
            for name in NETWORKS:
                for p in BUDGETS:
                    r = results[label][df][name]["budgets"][p]
                    sq = r["grids"].index(r["square_grid"])
                    lin = (f"{r['conv_layer_square_over_1xN_max']:8.1f}/"
                           f"{r['conv_layer_square_over_1xN_median']:<8.2f}")
                    tall = (f"{r['conv_layer_square_over_Nx1_max']:5.1f}/"
                            f"{r['conv_layer_square_over_Nx1_median']:<5.2f}")
                    print(f"{name:11s} {p:4d} {r['square_grid']:>3s} {r['square_over_1xN_util']:6.2f} "
                          f"{r['square_over_Nx1_util']:6.2f} "
                          f"{100 * r['memory_reduction_square_vs_1xN']:3.0f}% {r['best_conv_grid']:>9s} "
                          f"{lin} {tall} {r['best_gemv_grid']:>9s} {r['gemv_best_over_square']:5.2f} "
                          f"{'yes' if r['gemv_reversed'] else 'no':>3s} "
                          f"{r['input_stationary_layers'][sq]:3d}")


def print_bandwidth_table(results: dict) -> None:
    p = BUDGETS[-1]
    print(f"\nelectro-optic, {p} PEs, SRAM bandwidth in words per cycle ('none': SRAM keeps up): "
          "square vs 1xN whole-network and conv utilisation, best conv grid, stall share of the square "
          "and 1xN grids' cycles, conv layers with a >= 6x square/1xN ratio (count and MAC share)")
    print(f"{'net':11s} {'df':4s} {'SRAM':>5s} {'sq/1xN':>6s} {'conv':>5s} {'best conv':>9s} "
          f"{'stall sq':>8s} {'1xN':>5s} {'>=6x':>7s} {'MACs':>5s} {'GEMV rev':>8s}")
    for name in NETWORKS:
        for df in DATAFLOWS:
            for bw, res in [("none", results["electro_optic"])] + [
                    (str(b), results["sram_bandwidth"][str(b)]) for b in results["sram_bandwidths"]]:
                r = res[df][name]["budgets"][p]
                sq = r["grids"].index(r["square_grid"])
                print(f"{name:11s} {df:4s} {bw:>5s} {r['square_over_1xN_util']:6.2f} "
                      f"{r['square_over_1xN_conv_util']:5.2f} {r['best_conv_grid']:>9s} "
                      f"{100 * r['stall_fraction'][sq]:7.0f}% {100 * r['stall_fraction'][0]:4.0f}% "
                      f"{r['conv_layers_square_over_1xN_at_least_6x']:3d}/{r['conv_layers']:<3d} "
                      f"{100 * r['conv_mac_share_square_over_1xN_at_least_6x']:4.0f}% "
                      f"{'yes' if r['gemv_reversed'] else 'no':>8s}")


def plot_bandwidth(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = BUDGETS[-1]
    bws = [None] + list(results["sram_bandwidths"])
    x = np.arange(len(bws))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, name in enumerate(NETWORKS):
        for df, ls in zip(DATAFLOWS, ("o-", "s--")):
            res = [results["electro_optic"]] + [results["sram_bandwidth"][str(b)] for b in bws[1:]]
            b = [r[df][name]["budgets"][p] for r in res]
            kw = dict(color=f"C{i}", label=f"{name}, {df}")
            axes[0].plot(x, [r["square_over_1xN_util"] for r in b], ls, **kw)
            axes[1].plot(x, [r["square_over_1xN_conv_util"] for r in b], ls, **kw)
    for ax, what in zip(axes, ("whole network", "convolutions")):
        ax.set_xticks(x, ["none"] + [str(b) for b in bws[1:]])
        ax.set_xlabel("SRAM words per modulation cycle")
        ax.set_ylabel(f"square / 1xN utilisation ({what})")
        ax.set_title(f"{p} PEs, electro-optic")
    axes[0].legend(fontsize=6)
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
    p.add_argument("--sram-bandwidth", default=",".join(map(str, BANDWIDTHS)),
                   help="SRAM words per cycle for the bandwidth-limited electro-optic study "
                        "(comma-separated; empty to skip)")
    args = p.parse_args(argv)
    bandwidths = [int(b) for b in args.sram_bandwidth.split(",") if b.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"ptc": "4x4 coherent MZI (SVD) core, 10 GHz; defaults of hwsim.photonic.PTC",
                     "budgets": list(BUDGETS)}
    timings = {}
    for label, ns in REPROGRAMMING:
        results[label] = {}
        for df in DATAFLOWS:
            results[label][df], timings[f"{label}/{df}"] = topology_study(ns, df)
    results["sweep_seconds_after_compile"] = timings
    results["sram_bandwidths"] = bandwidths
    results["sram_bandwidth"] = {
        str(bw): {df: topology_study(photonic.ELECTRO_OPTIC_NS, df, bw)[0] for df in DATAFLOWS}
        for bw in bandwidths}
    plot_topology(results, args.out / "photonic_topology.png")
    print_table(results)
    if bandwidths:
        plot_bandwidth(results, args.out / "photonic_bandwidth.png")
        print_bandwidth_table(results)
    print("\nsweep time after compile, 4 networks x 15 grids each: "
          + ", ".join(f"{k} {v:.3f} s" for k, v in timings.items())
          + f" (all {sum(timings.values()):.3f} s)")
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
