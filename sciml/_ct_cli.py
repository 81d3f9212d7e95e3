"""``sciml ct simulate | train | reconstruct``: sparse-view CT from the command line.

* ``simulate`` writes a phantom's noisy projections (one file per view + ``geometry.json``, readable by
  :func:`sciml.ct.load_projections`) and its ground truth.
* ``train`` trains a conditional CT denoiser (:func:`sciml.diffusion.train_ct_denoiser`) and saves it.
* ``reconstruct`` reconstructs projections (from ``simulate`` or a scanner, or simulated on the fly) by
  FBP, CGLS, SIRT, TV, DDS, DPS or CDPA and writes PNG slices (truth, FBP, method, uncertainty) and a
  JSON of PSNR / SSIM / data residual.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from .cli import DemoOptions, DemoRow, register_command, register_demo

PHANTOMS = ("textured", "ellipses", "shepp-logan", "dicom")
METHODS = ("fbp", "cgls", "sirt", "tv", "dds", "dps", "cdpa")
# The pretrained 64 x 64 model shipped with the package (trained by experiments/train_ct_model.py).
PRETRAINED = pathlib.Path(__file__).parent / "ct" / "weights" / "cdpa_64.eqx"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _task(args, views=None):
    from . import diffusion as dm

    return dm.SparseViewTask(size=args.size, views=views or (args.views,),
                             phantom="ellipses" if args.phantom == "ellipses" else "textured",
                             noise=args.noise, photons=args.photons, sigma=args.sigma)


def _phantom_measurement(args):
    """(truth, sinogram, geometry) for the chosen phantom, simulated on a 2x finer grid."""
    from . import ct

    task = _task(args)
    key = jax.random.key(args.seed)
    if args.phantom in ("textured", "ellipses"):
        return task.measure(key, args.views)
    n = 2 * args.size
    fine = ct.shepp_logan().image((n, n)) if args.phantom == "shepp-logan" else ct.load_dicom(shape=(n, n))
    return task.measure(key, args.views, image=fine)


def _save_png(path: pathlib.Path, image, title: str, vmin=None, vmax=None, cmap="gray") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = np.asarray(image)
    if img.ndim == 3:
        img = img[img.shape[0] // 2]  # the middle axial slice of a volume
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cmd_simulate(args) -> int:
    from . import ct

    try:
        truth, y, g = _phantom_measurement(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"sciml ct simulate: {e}") from None
    out = pathlib.Path(args.out)
    ct.save_projections(out, y, g, format=args.format, overwrite=True)
    np.save(out / "truth.npy", np.asarray(truth))
    _save_png(out / "truth.png", truth, "ground truth")
    print(f"{args.views} views of a {args.phantom} phantom ({args.size}x{args.size}) written to {out}")
    return 0


def _cmd_train(args) -> int:
    from . import diffusion as dm
    from .nn import count_params

    t0 = time.perf_counter()
    try:
        task = _task(args, views=args.train_views)
        model, hist = dm.train_ct_denoiser(task, key=jax.random.key(args.seed), steps=args.steps,
                                           batch_size=args.batch_size, channels=args.channels,
                                           pool=args.pool, progress=False if args.no_progress else None)
    except ValueError as e:
        raise SystemExit(f"sciml ct train: {e}") from None
    seconds = time.perf_counter() - t0
    meta = {"image_shape": [args.size, args.size], "task": task.to_dict(), "steps": args.steps,
            "batch_size": args.batch_size, "pool": args.pool, "seed": args.seed,
            "train_seconds": round(seconds, 1), "final_loss": float(np.mean(hist.loss[-100:])),
            "parameters": count_params(model)}
    path = dm.save_denoiser(args.out, model, metadata=meta)
    print(json.dumps(meta, indent=2))
    print(f"model saved to {path}")
    return 0


def _method(args, geometry):
    from . import ct
    from . import diffusion as dm

    def iterations(default):  # an explicit --iterations 0 is an error, not the default
        return default if args.iterations is None else args.iterations

    simple = {"fbp": lambda: ct.FBP(), "cgls": lambda: ct.CGLS(iterations(20)),
              "sirt": lambda: ct.SIRT(iterations(200)),
              "tv": lambda: ct.TV(args.tv_weight, iterations=iterations(300))}
    if args.method in simple:
        return simple[args.method]()
    model_path = pathlib.Path(args.model) if args.model else PRETRAINED
    model, _ = dm.load_denoiser(model_path, image_shape=geometry.image_shape[-2:])
    sampler = dm.DDIM(steps=args.steps, eta=0.8)
    if args.method == "cdpa":
        return dm.CDPA(model, samples=args.samples, sampler=sampler)
    if args.method == "dds":
        return dm.DDS(model, samples=args.samples, sampler=sampler)
    return dm.DPS(model, samples=args.samples, steps=max(args.steps, 2))


def _cmd_reconstruct(args) -> int:
    from . import ct, metrics

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.data:
            y, g = ct.load_projections(args.data)
            truth_file = pathlib.Path(args.data) / "truth.npy"
            truth = np.load(truth_file) if truth_file.is_file() else None
        else:
            truth, y, g = _phantom_measurement(args)
        method = _method(args, g)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"sciml ct reconstruct: {e}") from None
    t0 = time.perf_counter()
    rec = ct.reconstruct(y, g, method, key=jax.random.key(args.seed))
    rec.image.block_until_ready()
    seconds = time.perf_counter() - t0
    fbp = ct.reconstruct(y, g, "fbp").image
    result = {"method": args.method, "views": int(g.sinogram_shape[0]), "seconds": round(seconds, 2),
              "residual": float(rec.residual)}
    hi = float(np.max(truth)) if truth is not None else float(np.max(rec.image))
    if truth is not None:
        rng = float(np.max(truth) - np.min(truth))
        for name, img in (("fbp", fbp), (args.method, rec.image)):
            result[f"psnr_{name}"] = float(metrics.psnr(img, truth, data_range=rng))
            result[f"ssim_{name}"] = float(metrics.ssim(img, truth, data_range=rng))
        _save_png(out / "truth.png", truth, "ground truth", 0, hi)
        if rec.std is not None:
            cal = metrics.calibration(rec.image, rec.std, truth)
            result["std_error_correlation"] = float(cal.correlation)
            result["coverage_2std"] = float(cal.coverage)
    _save_png(out / "fbp.png", fbp, "FBP", 0, hi)
    _save_png(out / f"{args.method}.png", rec.image, args.method.upper(), 0, hi)
    if rec.std is not None:
        _save_png(out / "std.png", rec.std, "posterior std", cmap="magma")
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=64, help="image size (size x size)")
    p.add_argument("--phantom", choices=PHANTOMS, default="textured", help="test object")
    p.add_argument("--views", type=int, default=16, help="number of projection angles over [0, pi)")
    p.add_argument("--noise", choices=("poisson", "gaussian", "none"), default="poisson")
    p.add_argument("--photons", type=float, default=2e4, help="incident photons per bin (Poisson)")
    p.add_argument("--sigma", type=float, default=0.01, help="relative noise std (Gaussian)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed")


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = sub.add_parser("simulate", help="simulate noisy sparse-view projections of a phantom")
    _common(p)
    p.add_argument("--format", choices=("npy", "tiff"), default="npy")
    p.add_argument("--out", default="ct-data", help="output directory")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("train", help="train a conditional diffusion denoiser for CDPA / DDS / DPS")
    _common(p)
    p.add_argument("--train-views", type=_ints, default=(8, 16, 32), help="view counts, e.g. 8,16,32")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--pool", type=int, default=4096, help="simulated training examples")
    p.add_argument("--channels", type=_ints, default=(16, 32, 64), help="U-Net channels per level")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default="cdpa.eqx", help="weights file")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("reconstruct", help="reconstruct and write PNG slices and metrics JSON")
    _common(p)
    p.add_argument("--data", default=None, help="projection folder (from `sciml ct simulate` or a scanner)")
    p.add_argument("--method", choices=METHODS, default="cdpa")
    p.add_argument("--model", default=None, help="weights file (default: the shipped 64x64 model)")
    p.add_argument("--samples", type=int, default=8, help="posterior samples (diffusion methods)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps (diffusion methods)")
    p.add_argument("--iterations", type=int, default=None, help="iterations (CGLS, SIRT, TV)")
    p.add_argument("--tv-weight", type=float, default=0.3, help="TV regularisation weight")
    p.add_argument("--out", default="ct-recon", help="output directory")
    p.set_defaults(func=_cmd_reconstruct)


register_command("ct", "sparse-view CT: simulate, train a diffusion prior, reconstruct", _configure)


def ct_demo(opts: DemoOptions) -> list[DemoRow]:
    """A held-out textured 64x64 phantom from 16 noisy views: FBP, TV and CDPA (the shipped model)."""
    from . import ct, diffusion, metrics

    model, _ = diffusion.load_denoiser(PRETRAINED, image_shape=(64, 64))
    task = diffusion.SparseViewTask(views=(16,))
    truth, y, g = task.measure(jax.random.key(10_000 + opts.seed), 16)
    rows = []
    for name, method in (("FBP", "fbp"), ("TV (weight 0.3)", ct.TV(0.3, iterations=300)),
                         ("CDPA, 4 samples", diffusion.CDPA(model, samples=4))):
        t0 = time.perf_counter()
        rec = ct.reconstruct(y, g, method, key=jax.random.key(opts.seed))
        psnr = float(metrics.psnr(rec.image, truth))
        rows.append(DemoRow("ct", f"16 views, 64x64 textured phantom: {name}", "PSNR dB", psnr,
                            time.perf_counter() - t0))
    return rows


register_demo("ct", ct_demo)
