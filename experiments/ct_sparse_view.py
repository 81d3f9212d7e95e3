"""Sparse-view CT: FBP, CGLS, SIRT, TV, DDS and CDPA on held-out phantoms (issue 4's headline table).

For each view count (default 8, 16, 32, 60) and each test set

* ``textured``  -- held-out textured phantoms (never seen in training: a separate PRNG stream),
* ``ellipses``  -- held-out piecewise-constant random ellipses,
* ``shepp-logan`` and ``dicom`` (pydicom's real CT_small.dcm slice, out of distribution),

the data are simulated on a 2x finer grid with Poisson noise (the model's training task), and every
method reconstructs them on the 64 x 64 grid. TV's weight and CGLS's iteration count are chosen per
view count on separate validation images (best mean PSNR over a grid). Reported per method: PSNR and
SSIM (data range of the truth), the data residual ||A x - y|| / ||y|| next to the noise level
||y - y_clean|| / ||y||, seconds per image; for the sampling methods the calibration of the posterior
std: the reported std is the K samples' std times a sigma-scaling factor (Laves et al. 2020) fitted
per view count on the validation images (``metrics.std_scale``, the Gaussian maximum-likelihood
factor); Pearson correlation of std with |error| over pixels, fraction of pixels with |error| <= 2
std, and for reference the unscaled coverages (predictive std * sqrt(1 + 1/K) of a K-sample mean, and
the raw sample std).

``--cone`` adds the 3D case: a 64^3 textured volume, 16 cone-beam views, FDK against CDPA run
slice-wise with data consistency on the 3D cone-beam operator.

Writes ``results.json``, ``table.md`` and ``figure.png`` under ``--out``.

Usage:
    python experiments/ct_sparse_view.py                 # the full table (~30-60 min on 2 CPU cores)
    python experiments/ct_sparse_view.py --quick         # 3 images, 8/16 views, textured only
    python experiments/ct_sparse_view.py --cone          # also the 64^3 cone-beam case
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import sciml
from sciml import ct, metrics
from sciml import diffusion as dm

HERE = pathlib.Path(__file__).parent
PRETRAINED = pathlib.Path(sciml.__file__).parent / "ct" / "weights" / "cdpa_64.eqx"
# TV weights at 16 views, scaled by views / 16 for more views (the data term sums over views): at 32
# and 60 views an unscaled grid put the best weight on its upper edge
TV_WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0)


def tv_weights(views: int) -> tuple[float, ...]:
    scale = max(1.0, views / 16)
    return tuple(round(w * scale, 4) for w in TV_WEIGHTS)
CGLS_ITERS = (5, 10, 20, 40)
TEST_SEED, VALIDATION_SEED = 20261125, 777


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, jax {jax.__version__} {jax.default_backend()}"


_run = eqx.filter_jit(ct.reconstruct)


def run(y, g, method, key=None):
    t = time.perf_counter()
    rec = _run(y, g, method, key=key)
    rec.image.block_until_ready()
    return rec, time.perf_counter() - t


def cases(task: dm.SparseViewTask, set_name: str, views: int, n: int, seed: int):
    """(truth, y, y_clean, geometry) for ``n`` test images of a set."""
    size = task.size
    out = []
    for i in range(n if set_name in ("textured", "ellipses") else 1):
        key = jax.random.fold_in(jax.random.key(seed), i)
        t = dm.SparseViewTask(**{**task.to_dict(), "phantom": "ellipses"}) if set_name == "ellipses" else task
        k_img, k_noise = jax.random.split(key)
        if set_name in ("textured", "ellipses"):
            fine = t.image(k_img)
        elif set_name == "shepp-logan":
            fine = ct.shepp_logan().image((2 * size, 2 * size))
        else:
            fine = ct.load_dicom(shape=(2 * size, 2 * size))
        truth, y, g = t.measure(key, views, image=fine)
        clean = ct.simulate(fine, g, key=None, noise=None, upsample=1)
        out.append((truth, y, clean, g))
    return out


def score(rec, truth, y, clean, seconds, scale=1.0):
    rng = float(truth.max() - truth.min())
    row = {"psnr": float(metrics.psnr(rec.image, truth, data_range=rng)),
           "ssim": float(metrics.ssim(rec.image, truth, data_range=rng)),
           "residual": float(rec.residual),
           "noise_level": float(jnp.linalg.norm(y - clean) / jnp.linalg.norm(y)),
           "seconds": seconds}
    if rec.std is not None:
        row.update(uncertainty(rec, truth, scale))
    return row


def uncertainty(rec, truth, scale=1.0):
    """Calibration of the reported std (the K-sample std times the sigma-scaling factor ``scale``
    fitted on validation images): the correlation of std with |error| and the coverage within 2 std;
    for reference also the unscaled sample std's coverage, alone and as the predictive std of a
    K-sample mean, std * sqrt(1 + 1/K) (``metrics.calibration(samples=K)``)."""
    k = rec.samples.shape[0]
    raw_std = rec.std / scale
    cal = metrics.calibration(rec.image, rec.std, truth)
    pred = metrics.calibration(rec.image, raw_std, truth, samples=k)
    raw = metrics.calibration(rec.image, raw_std, truth)
    return {"std_error_correlation": float(cal.correlation), "coverage_2std": float(cal.coverage),
            "std_scale": float(scale), "coverage_2std_predictive": float(pred.coverage),
            "coverage_2std_sample": float(raw.coverage), "rmse": float(cal.rmse),
            "rms_std": float(cal.rms_std)}


def fit_std_scale(task, views, method, n_val):
    """Sigma scaling (Laves et al. 2020): the factor of the sample std that maximises the Gaussian
    likelihood of the errors on the validation images (``metrics.std_scale``)."""
    val = cases(task, "textured", views, n_val, VALIDATION_SEED)
    means, stds, truths = [], [], []
    for i, (truth, y, _, g) in enumerate(val):
        rec = run(y, g, method, jax.random.fold_in(jax.random.key(2), i))[0]
        means.append(rec.image)
        stds.append(rec.std)
        truths.append(truth)
    return float(metrics.std_scale(jnp.stack(means), jnp.stack(stds), jnp.stack(truths)))


def choose(task, views, make, grid, n_val):
    """The grid value with the best mean PSNR on validation images (textured, separate seed)."""
    val = cases(task, "textured", views, n_val, VALIDATION_SEED)
    means = []
    for v in grid:
        means.append(np.mean([score(run(y, g, make(v))[0], truth, y, clean, 0.0)["psnr"]
                              for truth, y, clean, g in val]))
    best = grid[int(np.argmax(means))]
    return best, dict(zip([str(v) for v in grid], [round(float(m), 3) for m in means]))


def mean_rows(rows):
    keys = rows[0].keys()
    return {k: float(np.mean([r[k] for r in rows])) for k in keys} | {"n": len(rows)}


def evaluate(model, task, views_list, sets, n_images, n_val, samples, steps, log, consistency,
             only=None):
    results = {"views": {}, "settings": {}}
    for views in views_list:
        tv_w, tv_scores = choose(task, views, lambda w: ct.TV(w, iterations=300), tv_weights(views),
                             n_val)
        cg_k, cg_scores = choose(task, views, lambda k: ct.CGLS(k), CGLS_ITERS, n_val)
        results["settings"][views] = {"tv_weight": tv_w, "tv_validation_psnr": tv_scores,
                                      "cgls_iterations": cg_k, "cgls_validation_psnr": cg_scores}
        log(f"views {views}: TV weight {tv_w} {tv_scores}; CGLS iterations {cg_k} {cg_scores}")
        methods = {"FBP": ct.FBP(), "CGLS": ct.CGLS(cg_k), "SIRT": ct.SIRT(200),
                   "TV": ct.TV(tv_w, iterations=300),
                   "DDS": dm.DDS(model, samples=samples, sampler=dm.DDIM(steps=steps, eta=0.8),
                                 consistency=consistency),
                   "CDPA": dm.CDPA(model, samples=samples, sampler=dm.DDIM(steps=steps, eta=0.8),
                                   consistency=consistency)}
        if only is not None:
            methods = {k: v for k, v in methods.items() if k in only}
        scales = {}
        for name in ("DDS", "CDPA"):
            if name in methods:
                scales[name] = fit_std_scale(task, views, methods[name], n_val)
                methods[name] = eqx.tree_at(lambda m: m.std_scale, methods[name], jnp.asarray(scales[name]))
        results["settings"][views]["std_scale"] = scales
        if scales:
            log(f"views {views}: sigma-scaling factors on {n_val} validation images {scales}")
        per_set = {}
        for set_name in sets:
            rows = {m: [] for m in methods}
            for i, (truth, y, clean, g) in enumerate(cases(task, set_name, views, n_images(set_name, views),
                                                           TEST_SEED)):
                for name, method in methods.items():
                    rec, sec = run(y, g, method, jax.random.fold_in(jax.random.key(1), i))
                    rows[name].append(score(rec, truth, y, clean, sec, scales.get(name, 1.0)))
            per_set[set_name] = {m: mean_rows(r) for m, r in rows.items()}
            summary = ", ".join(f"{m} {v['psnr']:.2f}" for m, v in per_set[set_name].items())
            log(f"views {views} {set_name} ({len(next(iter(rows.values())))} images): PSNR {summary}")
        results["views"][views] = per_set
    return results


def markdown(results, sets) -> str:
    lines = []
    for set_name in sets:
        lines.append(f"\n### {set_name}\n")
        lines.append("| views | method | PSNR (dB) | SSIM | residual | noise level | std-err corr "
                     "| within 2 std | std scale | within 2 std (unscaled pred.) | within 2 std (unscaled "
                     "sample) | s / image |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for views, per_set in results["views"].items():
            for m, r in per_set[set_name].items():
                corr = f"{r['std_error_correlation']:.2f}" if "std_error_correlation" in r else ""
                cov = f"{r['coverage_2std']:.3f}" if "coverage_2std" in r else ""
                cov_s = f"{r['coverage_2std_sample']:.3f}" if "coverage_2std_sample" in r else ""
                cov_p = f"{r['coverage_2std_predictive']:.3f}" if "coverage_2std_predictive" in r else ""
                scale = f"{r['std_scale']:.3f}" if "std_scale" in r else ""
                lines.append(f"| {views} | {m} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['residual']:.4f} | "
                             f"{r['noise_level']:.4f} | {corr} | {cov} | {scale} | {cov_p} | {cov_s} | "
                             f"{r['seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def figure(model, task, path, views, samples, steps, tv_weight):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, y, clean, g = cases(task, "textured", views, 1, TEST_SEED)[0]
    recs = {"FBP": run(y, g, ct.FBP())[0], "TV": run(y, g, ct.TV(tv_weight, iterations=300))[0],
            "DDS": run(y, g, dm.DDS(model, samples=samples, sampler=dm.DDIM(steps=steps, eta=0.8)),
                       jax.random.key(3))[0],
            "CDPA": run(y, g, dm.CDPA(model, samples=samples, sampler=dm.DDIM(steps=steps, eta=0.8)),
                        jax.random.key(3))[0]}
    hi = float(truth.max())
    fig, axes = plt.subplots(1, 7, figsize=(17, 2.9))
    panels = [("truth", truth)] + [(k, r.image) for k, r in recs.items()]
    rng = float(truth.max() - truth.min())
    for ax, (name, img) in zip(axes, panels):
        ax.imshow(np.asarray(img), cmap="gray", vmin=0, vmax=hi)
        p = float(metrics.psnr(img, truth, data_range=rng))
        title = name if name == "truth" else f"{name} {p:.1f} dB"
        ax.set_title(title, fontsize=9)
    err = jnp.abs(recs["CDPA"].image - truth)
    vmax = float(jnp.max(err))
    axes[5].imshow(np.asarray(err), cmap="magma", vmin=0, vmax=vmax)
    axes[5].set_title("CDPA |error|", fontsize=9)
    axes[6].imshow(np.asarray(2 * recs["CDPA"].std), cmap="magma", vmin=0, vmax=vmax)
    axes[6].set_title("CDPA 2 std", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{views} views, held-out textured phantom", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cone(model, task, size, views, samples, steps, log, consistency):
    """64^3 textured volume, ``views`` cone-beam views: FDK vs slice-wise CDPA with 3D consistency."""
    key = jax.random.key(TEST_SEED + 3)
    fine = ct.textured_phantom(key, (2 * size,) * 3, texture=task.texture, correlation=task.correlation,
                               smooth=task.smooth)
    truth = ct.downsample(fine, 2)
    angles = np.linspace(0, 2 * np.pi, views, endpoint=False)
    g = ct.cone_beam(angles, (size + size // 2, 2 * size), (size,) * 3, source_origin=4.0 * size,
                     origin_detector=2.0 * size)
    y = ct.simulate(fine, g, key=jax.random.fold_in(key, 1), noise="poisson", photons=task.photons,
                    upsample=1)
    rng = float(truth.max() - truth.min())
    out = {}
    t = time.perf_counter()
    fdk = ct.reconstruct(y, g, "fdk")
    fdk.image.block_until_ready()
    out["FDK"] = {"psnr": float(metrics.psnr(fdk.image, truth, data_range=rng)),
                  "seconds": time.perf_counter() - t}
    method = dm.CDPA(model, samples=samples, sampler=dm.DDIM(steps=steps, eta=0.8),
                     consistency=consistency, analytic=ct.FBP(), sample_batch=1)
    t = time.perf_counter()
    rec = ct.reconstruct(y, g, method, key=jax.random.key(4))
    rec.image.block_until_ready()
    sec = time.perf_counter() - t
    out["CDPA"] = {"psnr": float(metrics.psnr(rec.image, truth, data_range=rng)), "seconds": sec,
                   "residual": float(rec.residual)}
    if samples > 1:
        out["CDPA"].update(uncertainty(rec, truth))
    log(f"cone {size}^3, {views} views: FDK {out['FDK']['psnr']:.2f} dB, CDPA {out['CDPA']['psnr']:.2f} dB "
        f"in {sec:.0f} s")
    return out


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(PRETRAINED), help="weights file (sciml.diffusion.save_denoiser)")
    p.add_argument("--views", default="8,16,32,60", help="comma-separated view counts")
    p.add_argument("--sets", default="textured,ellipses,shepp-logan,dicom")
    p.add_argument("--images", type=int, default=20,
                   help="test images of the gated cases (textured, 8 and 16 views)")
    p.add_argument("--images-other", type=int, default=5, help="test images of the other random cases")
    p.add_argument("--cg-steps", type=int, default=None, help="CG data-consistency steps (default: CDPA's)")
    p.add_argument("--gamma", type=float, default=None, help="CG proximal weight (default: CDPA's)")
    p.add_argument("--validation", type=int, default=5, help="validation images for TV / CGLS settings")
    p.add_argument("--samples", type=int, default=8, help="posterior samples K")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--cone", action="store_true", help="also the 64^3 cone-beam case")
    p.add_argument("--cone-samples", type=int, default=2)
    p.add_argument("--methods", default=None,
                   help="comma-separated subset of FBP,CGLS,SIRT,TV,DDS,CDPA (default: all)")
    p.add_argument("--no-figure", action="store_true", help="skip figure.png")
    p.add_argument("--quick", action="store_true", help="3 images, 8/16 views, textured only")
    p.add_argument("--out", default=str(HERE / "out" / "ct_sparse_view"))
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.views, args.sets, args.images, args.validation = "8,16", "textured", 3, 2
    views_list = [int(v) for v in args.views.split(",")]
    sets = args.sets.split(",")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    model, meta = dm.load_denoiser(args.model, image_shape=(64, 64))
    task = dm.SparseViewTask(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["task"].items()})
    log(f"model {args.model}: {sciml.nn.count_params(model)} parameters, trained {meta.get('steps')} steps "
        f"in {meta.get('train_seconds')} s on views {task.views}")
    def n_images(set_name, views):
        return args.images if set_name == "textured" and views in (8, 16) else args.images_other

    default = dm.CGConsistency()
    consistency = dm.CGConsistency(steps=default.steps if args.cg_steps is None else args.cg_steps,
                                   gamma=default.gamma if args.gamma is None else args.gamma)
    only = None
    if args.methods is not None:
        only = args.methods.split(",")
        unknown = set(only) - {"FBP", "CGLS", "SIRT", "TV", "DDS", "CDPA"}
        if unknown:
            raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from FBP,CGLS,SIRT,TV,DDS,CDPA")
    results = evaluate(model, task, views_list, sets, n_images, args.validation, args.samples, args.steps,
                       log, consistency, only)
    results.update(machine=machine(), model=str(args.model), model_metadata=meta, samples=args.samples,
                   steps=args.steps, images=args.images, images_other=args.images_other,
                   consistency={"steps": consistency.steps, "gamma": float(consistency.gamma)})
    first = views_list[0]
    if not args.no_figure:
        figure(model, task, out / "figure.png", first, args.samples, args.steps,
               results["settings"][first]["tv_weight"])
    if args.cone:
        results["cone"] = cone(model, task, 64, 16, args.cone_samples, args.steps, log, consistency)
    results["seconds"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(markdown(results, sets))
    print(markdown(results, sets))
    log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
