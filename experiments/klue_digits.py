"""KLUE digit benchmarks on scikit-learn's load_digits (offline): digit-sum and concept discovery.

    python experiments/klue_digits.py [--quick] [--seeds 5] [--out experiments/out/klue_digits]
        [--methods plain,exact,ltn,ltn_p1to6] [--sizes 300,1000,3000] [--skip-sum] [--skip-concepts]

Writes results.json (every run, and mean +- std over seeds) and klue_digits.png. Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import jax
import numpy as np

from symbolic import fuzzy as F

SUM_METHODS = {
    "plain": F.PlainSum(),
    "exact": F.ExactSum(),
    "ltn": F.LTNSum(),  # guarded exists with p = 1
    "ltn_p1to6": F.LTNSum(p_start=1.0, p_end=6.0),  # LTN's rising exponent schedule
}
# Restarts per method (the same as `sciml klue train`): the LTN-style runs stall in a partial
# relabelling more often (16 of 40 single runs at 1000 and 3000 pairs) but show it by step 600, so four
# restarts are trained 600 steps and only the best goes on (4800 steps instead of 3 x 3000).
SUM_SCHEDULES = {"plain": dict(restarts=3), "exact": dict(restarts=3),
                 "ltn": dict(restarts=4, select_after=600), "ltn_p1to6": dict(restarts=3)}


def digit_sum(seeds, sizes, steps, restarts, methods):
    runs = []
    for seed in seeds:
        data = F.load_digit_data(seed)
        for n in sizes:
            for name in methods:
                if name == "ltn_p1to6" and n != max(sizes):
                    continue
                schedule = dict(SUM_SCHEDULES[name])
                if restarts is not None:
                    schedule["restarts"] = restarts
                if schedule.get("select_after", 0) > steps:
                    schedule["select_after"] = None
                t, cpu = time.perf_counter(), time.process_time()
                r = F.train_digit_sum(data, SUM_METHODS[name], n_pairs=n, key=jax.random.key(seed), seed=seed,
                                      steps=steps, **schedule)
                dt, dcpu, load = time.perf_counter() - t, time.process_time() - cpu, os.getloadavg()[0]
                runs.append(dict(method=name, seed=seed, n_pairs=n, sum_acc=r.sum_accuracy,
                                 digit_acc=r.digit_accuracy, seconds=dt, cpu_seconds=dcpu, load=load,
                                 restart_losses=r.restart_losses.tolist(), **schedule))
                print(f"sum  {name:10s} n={n:5d} seed={seed} sum={r.sum_accuracy:.3f} "
                      f"digit={r.digit_accuracy:.3f} {dt:.1f}s (cpu {dcpu:.1f}s, load {load:.1f})",
                      flush=True)
    return runs


def concepts(seeds, steps, label_noise):
    methods = {"baseline": F.Baseline(), "klue": F.KLUE()}
    runs, tables = [], {}
    for seed in seeds:
        task = F.hidden_pair_task(F.load_digit_data(seed), seed=seed)
        for name, m in methods.items():
            t = time.perf_counter()
            net = F.train_concepts(task, m, key=jax.random.key(seed), seed=seed, steps=steps)
            res = F.evaluate_concepts(net, m, task, seed=seed)
            noisy = F.train_concepts(task, m, key=jax.random.key(seed), seed=seed, steps=steps,
                                     label_noise=label_noise)
            res["label_noise"] = F.evaluate_concepts(noisy, m, task, seed=seed)["clean"]
            dt = time.perf_counter() - t
            runs.append(dict(method=name, seed=seed, seconds=dt, **res))
            print(f"conc {name:10s} seed={seed} " + " ".join(f"{k}={v:.3f}" for k, v in res.items())
                  + f" {dt:.1f}s", flush=True)
            if name == "klue":
                tables[seed] = dict(pairs=task.pairs.tolist(), table=str(F.rule_table(net.dku)))
    return runs, tables


def summarise(runs, keys, group):
    out = {}
    for r in runs:
        out.setdefault(tuple(r[g] for g in group), []).append(r)
    summary = []
    for k, rs in sorted(out.items(), key=lambda kv: str(kv[0])):
        row = dict(zip(group, k), n=len(rs))
        for key in keys:
            v = np.array([r[key] for r in rs if key in r], float)
            if len(v):
                row[key] = dict(mean=float(np.mean(v)), std=float(np.std(v)), median=float(np.median(v)))
        summary.append(row)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, fewer steps")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="experiments/out/klue_digits")
    ap.add_argument("--skip-sum", action="store_true")
    ap.add_argument("--skip-concepts", action="store_true")
    ap.add_argument("--restarts", type=int, default=None,
                    help="digit-sum: runs per setting, the lowest training loss is kept (default: 3, and 4 "
                    "selected after 600 steps for ltn)")
    ap.add_argument("--methods", default=",".join(SUM_METHODS),
                    help=f"digit-sum: comma-separated among {','.join(SUM_METHODS)}")
    ap.add_argument("--sizes", default="300,1000,3000", help="digit-sum: training pairs, comma-separated")
    args = ap.parse_args()
    methods = args.methods.split(",")
    if not set(methods) <= set(SUM_METHODS):
        ap.error(f"--methods must be among {list(SUM_METHODS)}, got {methods}")
    sizes = [int(v) for v in args.sizes.split(",")]
    seeds = list(range(2 if args.quick else args.seeds))
    steps = 1500 if args.quick else 3000
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = dict(config=dict(seeds=seeds, steps=steps, restarts=args.restarts, schedules=SUM_SCHEDULES,
                              devices=str(jax.devices()), cpus=os.cpu_count(), load_start=os.getloadavg()))
    if not args.skip_sum:
        runs = digit_sum(seeds, sizes, steps, args.restarts, methods)
        result["digit_sum"] = dict(runs=runs, summary=summarise(
            runs, ["sum_acc", "digit_acc", "seconds", "cpu_seconds"], ["method", "n_pairs"]))
        at = max(sizes)
        ltn = [m for m in ("ltn", "ltn_p1to6") if m in methods]
        # collapsed: the digit classifier settled in a relabelling; failed: any run below 0.9 sum accuracy
        result["digit_sum"][f"collapse_rate_{at}"] = {m: float(np.mean(
            [r["digit_acc"] < 0.5 for r in runs if r["method"] == m and r["n_pairs"] == at])) for m in ltn}
        result["digit_sum"][f"failure_rate_{at}"] = {m: float(np.mean(
            [r["sum_acc"] < 0.9 for r in runs if r["method"] == m and r["n_pairs"] == at])) for m in ltn}
    if not args.skip_concepts:
        runs, tables = concepts(seeds, steps, label_noise=0.2)
        keys = ["clean", "noise", "shift", "occlusion", "label_noise", "hardest20", "purity", "seconds"]
        result["concepts"] = dict(runs=runs, summary=summarise(runs, keys, ["method"]), rule_tables=tables)
    result["config"]["load_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "klue_digits.png")
    print(json.dumps({k: v.get("summary") for k, v in result.items() if k != "config"}, indent=1))


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if "digit_sum" in result:
        ax = axes[0]
        for m in ("plain", "exact", "ltn"):
            rows = [r for r in result["digit_sum"]["summary"] if r["method"] == m]
            if not rows:
                continue
            ns = [r["n_pairs"] for r in rows]
            ax.errorbar(ns, [r["sum_acc"]["mean"] for r in rows], [r["sum_acc"]["std"] for r in rows],
                        marker="o", capsize=3, label=m)
        ax.set_xscale("log")
        ax.set_xlabel("training pairs")
        ax.set_ylabel("sum accuracy")
        ax.set_title("digit-sum (mean +- std over seeds)")
        ax.legend()
    if "concepts" in result:
        ax = axes[1]
        keys = ["clean", "noise", "shift", "occlusion", "label_noise", "hardest20", "purity"]
        for i, row in enumerate(result["concepts"]["summary"]):
            xs = np.arange(len(keys)) + 0.4 * i
            vals = [row[k]["mean"] if k in row else np.nan for k in keys]
            errs = [row[k]["std"] if k in row else 0 for k in keys]
            ax.bar(xs, vals, 0.4, yerr=errs, capsize=2, label=row["method"])
        ax.set_xticks(np.arange(len(keys)) + 0.2, keys, rotation=30)
        ax.set_ylim(0, 1)
        ax.set_title("concept discovery (hidden digit pairs)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
