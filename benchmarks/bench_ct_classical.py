"""Classical CT against the peer libraries (the CT issue's acceptance points), on the CPU:

1. projections: ``sciml.ct.project`` against ASTRA's CPU projectors ('linear', 'strip') and
   scikit-image's ``radon`` on Shepp-Logan (parallel beam, 180 views), relative L2, target 2%;
2. FBP: PSNR of ``reconstruct(y, g, "fbp")`` against ASTRA's CPU 'FBP' (ram-lak) at 60 and 180 views,
   from exact line integrals of the phantom (``phantom.project``: neither side's discrete model made
   the data) and from the same plus Gaussian noise, target ours >= ASTRA - 0.5 dB;
3. iterative (64x64, 32/60/180 views): sciml CGLS / SIRT against ASTRA's CPU 'CGLS' / 'SIRT' on the
   same operator (ASTRA 'linear' is Joseph's method, as ours; also 'strip' at 32 and 60 views), the
   same data and the same iteration counts (ASTRA's algorithm continues where it stopped, so one
   ASTRA run gives the whole grid; each sciml point is a fresh call), nonnegativity on both sides
   for SIRT (``MinConstraint`` = 0 / ``nonneg=True``); and sciml TV with its weight chosen on a
   random-ellipse phantom (never on Shepp-Logan), and with the weight picked on Shepp-Logan (an
   oracle, as the iteration counts), next to ASTRA's best iterative PSNR; target for CGLS and SIRT
   ours >= ASTRA - 0.05 dB; at 32 and 60 views also our ``projector="strip"`` against ASTRA 'strip'
   (like for like, gated) and our best classical result (either projector) against ASTRA's best
   (either projector, gated). TV is reported, not gated: ASTRA has no TV, and on the 64^2 Shepp-Logan
   from exact line integrals oracle-stopped SIRT beats TV (measured: 29.27 vs 28.92 dB at 32 views
   with TV's best weight) -- the one-pixel skull makes the data inconsistent with any 64^2 image
   and TV's fit to it costs more than early stopping does: on data made by the discrete operator
   itself (consistent) TV reaches 45.5 dB and SIRT 33.2 (400 iterations), same phantom and views;
4. speed: forward projection, back-projection and FBP, sciml jitted (compile time apart, median of
   the later calls) against ASTRA's create_sino / create_backprojection / FBP on the same machine.

PSNRs use ``sciml.metrics.psnr`` with data_range = truth max - min. Run with
``python -m benchmarks ct_classical``.
"""

from __future__ import annotations

import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import sciml
import sciml.ct as ct

PROJ_SIZES = (64, 128)
SKIMAGE_SIZES = (63, 127)  # odd: skimage rotates about pixel n // 2, our centre (n - 1) / 2
FBP_SIZES = (64, 128)
FBP_VIEWS = (60, 180)
ITER_SIZE = 64  # the iterative comparison: sciml's projector is ~6x slower than ASTRA's on the CPU
ITER_VIEWS = (32, 60, 180)
# shared iteration grids; CGLS peaks within a few iterations on these data, SIRT near 100
CGLS_GRID = (2, 3, 5, 10, 20, 50, 100)
SIRT_GRID = (50, 100, 150, 200)
# TV weights at 60 views, scaled by views / 60 (the data term sums over views)
TV_WEIGHTS_AT_60 = (1.0, 3.0, 10.0)
# ASTRA's 'strip' projector too (a different discretisation, 2.5x slower on ASTRA's side): only here
ASTRA_STRIP_VIEWS = (32, 60)
SPEED_SIZES = (128, 256)
SPEED_VIEWS = 180
REPEATS = 5
NOISE = 0.01  # Gaussian noise, standard deviation as a fraction of the sinogram's maximum
PROJ_TOL = 0.02
FBP_TOL_DB = 0.5
ITER_TOL_DB = 0.05


def _detectors(n: int) -> int:
    """Enough bins to cover the image's diagonal: 92 for 64, 182 for 128, 364 for 256."""
    return 2 * math.ceil(n / math.sqrt(2))


def _angles(views: int) -> np.ndarray:
    return np.linspace(0, np.pi, views, endpoint=False)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _psnr(x, truth) -> float:
    truth = jnp.asarray(truth)
    return float(sciml.metrics.psnr(jnp.asarray(x, truth.dtype), truth,
                                    data_range=truth.max() - truth.min()))


def _noisy(y, key):
    return y + NOISE * jnp.max(y) * jax.random.normal(key, y.shape, y.dtype)


def _median_time(fn, repeats: int = REPEATS) -> tuple[float, float]:
    """Median wall time of ``repeats`` calls, and process CPU time / wall time over them (~1: one
    thread busy)."""
    times = []
    cpu = time.process_time()
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times), (time.process_time() - cpu) / sum(times)


def _error(e: Exception) -> dict:
    return {"error": f"{type(e).__name__}: {e}"}


# ------------------------------------------------------------------------------------------------
# ASTRA (CPU): geometry (ours maps one to one, as in tests/sciml/test_ct.py) and calls
# ------------------------------------------------------------------------------------------------


def _astra_geoms(astra, n, det, angles):
    return astra.create_vol_geom(n, n), astra.create_proj_geom("parallel", 1.0, det, angles)


def _astra_fp(astra, img, vol, pg, kind="linear"):
    pid = astra.create_projector(kind, pg, vol)
    try:
        sid, sino = astra.create_sino(np.asarray(img, np.float32), pid)
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    return sino


class _AstraAlgorithm:
    """One ASTRA algorithm on one sinogram; ``run(k)`` continues the iteration by k steps."""

    def __init__(self, astra, name, y, vol, pg, projector="linear", options=None):
        self.astra = astra
        self.pid = astra.create_projector(projector, pg, vol)
        self.sid = astra.data2d.create("-sino", pg, np.asarray(y, np.float32))
        self.rid = astra.data2d.create("-vol", vol, 0.0)
        self.aid = None
        cfg = astra.astra_dict(name)
        cfg.update(ProjectorId=self.pid, ProjectionDataId=self.sid, ReconstructionDataId=self.rid)
        if options:
            cfg["option"] = dict(options)
        try:
            self.aid = astra.algorithm.create(cfg)
        except Exception:
            self.close()
            raise

    def run(self, iterations=1):
        self.astra.algorithm.run(self.aid, iterations)
        return self.astra.data2d.get(self.rid)

    def close(self):
        if self.aid is not None:
            self.astra.algorithm.delete(self.aid)
        self.astra.data2d.delete([self.sid, self.rid])
        self.astra.projector.delete(self.pid)


def _astra_fbp(astra, y, vol, pg, projector):
    alg = _AstraAlgorithm(astra, "FBP", y, vol, pg, projector, {"FilterType": "ram-lak"})
    try:
        return alg.run(1)
    finally:
        alg.close()


def _astra_grid(astra, name, y, vol, pg, grid, truth, options=None, projector="linear") -> dict:
    """PSNR after each iteration count of ``grid``, from one continued ASTRA run."""
    try:
        alg = _AstraAlgorithm(astra, name, y, vol, pg, projector, options)
    except Exception as e:  # e.g. an algorithm that only exists as CUDA
        return _error(e)
    try:
        psnr, done, seconds = {}, 0, 0.0
        for k in grid:
            t = time.perf_counter()
            x = alg.run(k - done)
            seconds += time.perf_counter() - t
            done = k
            psnr[k] = _psnr(x, truth)
    finally:
        alg.close()
    return {"psnr": psnr, "seconds_to_last": seconds}


# ------------------------------------------------------------------------------------------------
# 1. projections
# ------------------------------------------------------------------------------------------------


def bench_projections(astra) -> dict:
    out = {}
    phantom = ct.shepp_logan()
    for n in PROJ_SIZES:
        det, angles = _detectors(n), _angles(180)
        img = np.asarray(phantom.image((n, n)), np.float32)
        g = ct.parallel_beam(angles, det, (n, n))
        ours = ct.project(img, g)
        exact = phantom.project(g)
        ours_strip = ct.project(img, ct.parallel_beam(angles, det, (n, n), projector="strip"))
        r = {"detectors": det, "views": 180,
             "ours_vs_exact_line_integrals": _rel(ours, exact),
             "ours_strip_vs_exact_line_integrals": _rel(ours_strip, exact)}
        if astra is not None:
            vol, pg = _astra_geoms(astra, n, det, angles)
            for kind in ("linear", "strip"):
                try:
                    ref = _astra_fp(astra, img, vol, pg, kind)
                    r[f"astra_{kind}"] = _rel(ours, ref)
                    r[f"astra_{kind}_ok"] = r[f"astra_{kind}"] <= PROJ_TOL
                    r[f"astra_{kind}_vs_exact_line_integrals"] = _rel(ref, exact)
                except Exception as e:
                    r[f"astra_{kind}"] = _error(e)
            if isinstance(r.get("astra_strip"), float):  # like for like: our strip projector
                r["ours_strip_vs_astra_strip"] = _rel(ours_strip, _astra_fp(astra, img, vol, pg, "strip"))
                r["ours_strip_vs_astra_strip_ok"] = r["ours_strip_vs_astra_strip"] <= PROJ_TOL
        out[f"{n}x{n}"] = r
    try:
        from skimage.transform import radon
    except ImportError as e:
        out["skimage"] = _error(e)
        return out
    for n in SKIMAGE_SIZES:
        angles = _angles(180)
        img = np.array(phantom.image((n, n)))  # writable: skimage needs it
        ref = radon(img, np.degrees(angles), circle=True).T  # n bins of width 1, centred on n // 2
        rel = _rel(ct.project(img, ct.parallel_beam(angles, n, (n, n))), ref)
        out[f"skimage_{n}x{n}"] = {"detectors": n, "views": 180, "skimage_radon": rel,
                                   "skimage_radon_ok": rel <= PROJ_TOL}
    return out


# ------------------------------------------------------------------------------------------------
# 2. FBP
# ------------------------------------------------------------------------------------------------


@jax.jit
def _fbp(y, g):
    return ct.reconstruct(y, g, "fbp").image


def bench_fbp(astra) -> dict:
    out = {}
    phantom = ct.shepp_logan()
    for n in FBP_SIZES:
        truth = phantom.image((n, n))
        for views in FBP_VIEWS:
            det, angles = _detectors(n), _angles(views)
            g = ct.parallel_beam(angles, det, (n, n))
            exact = phantom.project(g)
            data = {"exact": exact, "noisy": _noisy(exact, jax.random.fold_in(jax.random.key(0), views))}
            for label, y in data.items():
                r = {"ours": _psnr(_fbp(y, g), truth)}
                if astra is not None:
                    vol, pg = _astra_geoms(astra, n, det, angles)
                    for proj in ("linear", "strip"):
                        try:
                            r[f"astra_{proj}"] = _psnr(_astra_fbp(astra, y, vol, pg, proj), truth)
                        except Exception as e:
                            r[f"astra_{proj}"] = _error(e)
                    found = [v for k, v in r.items() if k.startswith("astra_") and isinstance(v, float)]
                    if found:
                        r["astra_best"] = max(found)
                        r["ours_minus_astra_best_db"] = r["ours"] - r["astra_best"]
                        r["ok"] = r["ours"] >= r["astra_best"] - FBP_TOL_DB
                out[f"{n}x{n}_{views}views_{label}"] = r
    return out


# ------------------------------------------------------------------------------------------------
# 3. iterative
# ------------------------------------------------------------------------------------------------


@jax.jit
def _reconstruct(y, g, method):
    rec = ct.reconstruct(y, g, method)
    return rec.image, rec.iterations


@jax.jit
def _tv(y, g, weights):
    return jax.vmap(lambda w: ct.reconstruct(y, g, ct.TV(weight=w)).image)(weights)


def _sciml_grid(make, grid, y, g, truth) -> dict:
    psnr, seconds, short = {}, {}, []
    for k in grid:
        t = time.perf_counter()
        x, done = jax.block_until_ready(_reconstruct(y, g, make(k)))
        seconds[k] = time.perf_counter() - t
        psnr[k] = _psnr(x, truth)
        if int(done) != k:
            short.append((k, int(done)))
    r = {"psnr": psnr, "seconds": seconds}
    if short:
        r["stopped_early"] = short  # (asked, run): the loop's own stopping rule fired at tol = 0
    return r


def _versus(ours: dict, ref: dict) -> dict:
    """Best PSNR over the grid of ``ref`` (another ASTRA projector) against ours."""
    if "psnr" not in ref:
        return ref
    k = max(ref["psnr"], key=ref["psnr"].get)
    best = max(ours["psnr"].values())
    return {"psnr": ref["psnr"], "best": ref["psnr"][k], "best_iterations": k,
            "ours_best_minus_best_db": best - ref["psnr"][k], "ok": best >= ref["psnr"][k] - ITER_TOL_DB}


def _compare(ours: dict, ref: dict) -> dict:
    r = {"ours_psnr": ours["psnr"], "astra_psnr": ref.get("psnr"), "ours_seconds": ours["seconds"]}
    r.update({k: v for k, v in ours.items() if k == "stopped_early"})
    if "psnr" not in ref:
        r["astra_error"] = ref.get("error")
        return r
    r["astra_seconds_to_last"] = ref["seconds_to_last"]
    diff = {k: ours["psnr"][k] - ref["psnr"][k] for k in ours["psnr"]}
    r["same_iterations_diff_db"] = diff
    r["same_iterations_min_diff_db"] = min(diff.values())
    kb_o = max(ours["psnr"], key=ours["psnr"].get)
    kb_a = max(ref["psnr"], key=ref["psnr"].get)
    r.update(ours_best=ours["psnr"][kb_o], ours_best_iterations=kb_o, astra_best=ref["psnr"][kb_a],
             astra_best_iterations=kb_a)
    r["ours_best_minus_astra_best_db"] = r["ours_best"] - r["astra_best"]
    r["same_iterations_diff_at_astra_best_db"] = diff[kb_a]
    r["ok"] = r["ours_best"] >= r["astra_best"] - ITER_TOL_DB
    return r


def bench_iterative(astra) -> dict:
    out = {}
    n = ITER_SIZE
    det = _detectors(n)
    phantom, held_out = ct.shepp_logan(), ct.random_ellipses(jax.random.key(1))
    truth, truth_ho = phantom.image((n, n)), held_out.image((n, n))
    for views in ITER_VIEWS:
        weights = tuple(round(w * views / 60, 3) for w in TV_WEIGHTS_AT_60)
        angles = _angles(views)
        g = ct.parallel_beam(angles, det, (n, n))
        exact, exact_ho = phantom.project(g), held_out.project(g)
        key = jax.random.fold_in(jax.random.key(1), views)
        data = {"exact": (exact, exact_ho),
                "noisy": (_noisy(exact, key), _noisy(exact_ho, jax.random.fold_in(key, 1)))}
        for label, (y, y_ho) in data.items():
            r = {}
            ref_cgls = ref_sirt = {"error": "ASTRA not importable"}
            strip = {}
            nonneg = {"MinConstraint": 0.0}
            if astra is not None:
                vol, pg = _astra_geoms(astra, n, det, angles)
                ref_cgls = _astra_grid(astra, "CGLS", y, vol, pg, CGLS_GRID, truth)
                ref_sirt = _astra_grid(astra, "SIRT", y, vol, pg, SIRT_GRID, truth, nonneg)
                if views in ASTRA_STRIP_VIEWS:
                    strip["cgls"] = _astra_grid(astra, "CGLS", y, vol, pg, CGLS_GRID, truth, None, "strip")
                    strip["sirt_nonneg"] = _astra_grid(astra, "SIRT", y, vol, pg, SIRT_GRID, truth, nonneg,
                                                       "strip")
            ours_cgls = _sciml_grid(lambda k: ct.CGLS(iterations=k), CGLS_GRID, y, g, truth)
            ours_sirt = _sciml_grid(lambda k: ct.SIRT(iterations=k, nonneg=True), SIRT_GRID, y, g, truth)
            r["cgls"] = _compare(ours_cgls, ref_cgls)
            r["sirt_nonneg"] = _compare(ours_sirt, ref_sirt)
            ours_best = [max(ours_cgls["psnr"].values()), max(ours_sirt["psnr"].values())]
            if strip:  # the strip discretisation on both sides (ASTRA 'strip', projector="strip")
                g_s = ct.parallel_beam(angles, det, (n, n), projector="strip")
                ours_strip = {
                    "cgls": _sciml_grid(lambda k: ct.CGLS(iterations=k), CGLS_GRID, y, g_s, truth),
                    "sirt_nonneg": _sciml_grid(lambda k: ct.SIRT(iterations=k, nonneg=True), SIRT_GRID,
                                               y, g_s, truth)}
                ours_best += [max(o["psnr"].values()) for o in ours_strip.values()]
            for alg, ours in (("cgls", ours_cgls), ("sirt_nonneg", ours_sirt)):
                if alg in strip:
                    r[alg]["astra_strip"] = _versus(ours, strip[alg])  # Joseph vs strip: reported
                    r[alg]["strip"] = _compare(ours_strip[alg], strip[alg])  # like for like: gated
            # TV: the weight that is best on the held-out ellipse phantom (same views and noise level)
            t = time.perf_counter()
            ho = [_psnr(x, truth_ho) for x in _tv(y_ho, g, jnp.asarray(weights))]
            tune_s = time.perf_counter() - t
            w = weights[int(np.argmax(ho))]
            t = time.perf_counter()
            on_sl = [_psnr(x, truth) for x in _tv(y, g, jnp.asarray(weights))]
            tv_s = time.perf_counter() - t
            tv = on_sl[weights.index(w)]
            refs = (ref_cgls, ref_sirt, *strip.values())
            astra_best = [v for ref in refs if "psnr" in ref for v in ref["psnr"].values()]
            if astra_best:  # our best classical (either projector) against ASTRA's best (either)
                r["best_classical"] = {"ours": max(ours_best), "astra": max(astra_best),
                                       "ok": max(ours_best) >= max(astra_best) - ITER_TOL_DB}
            r["tv"] = {"weight": w, "held_out_psnr_per_weight": dict(zip(weights, ho)),
                       "weight_at_grid_edge": w in (weights[0], weights[-1]),
                       "ours": tv, "oracle_weight_psnr": max(on_sl),
                       "oracle_weight": weights[int(np.argmax(on_sl))], "tune_seconds": tune_s,
                       "seconds_all_weights": tv_s}
            if astra_best:  # a finding, not a gate: ASTRA has no TV to compare like with like
                r["tv"].update(astra_best_iterative=max(astra_best),
                               ours_minus_astra_best_db=tv - max(astra_best),
                               oracle_minus_astra_best_db=max(on_sl) - max(astra_best))
            out[f"{n}x{n}_{views}views_{label}"] = r
            print(f"  iterative {views} views {label}: cgls {r['cgls'].get('ours_best', 0):.2f} "
                  f"(astra {r['cgls'].get('astra_best', float('nan')):.2f}), sirt "
                  f"{r['sirt_nonneg'].get('ours_best', 0):.2f} "
                  f"(astra {r['sirt_nonneg'].get('astra_best', float('nan')):.2f}), tv {tv:.2f}",
                  flush=True)
    return out


# ------------------------------------------------------------------------------------------------
# 4. speed
# ------------------------------------------------------------------------------------------------


def _first_and_median(fn, repeats) -> tuple[float, tuple[float, float]]:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t, _median_time(fn, repeats)


def _speed(astra, n: int) -> dict:
    det, angles = _detectors(n), _angles(SPEED_VIEWS)
    g = ct.parallel_beam(angles, det, (n, n))
    img = ct.shepp_logan().image((n, n))
    y = ct.project(img, g)
    repeats = REPEATS if n <= 128 else 3
    r = {"detectors": det, "views": SPEED_VIEWS, "repeats": repeats}
    # fresh jits, so that the first call compiles; "fbp_with_residual" keeps the Reconstruction's
    # residual ||A x - y|| / ||y|| (a forward projection), which jit drops when only .image is used
    project, backproject = jax.jit(ct.project), jax.jit(ct.backproject)
    fbp = jax.jit(lambda y, g: ct.reconstruct(y, g, "fbp").image)
    fbp_full = jax.jit(lambda y, g: ct.reconstruct(y, g, "fbp"))
    ops = {"fp": (lambda: project(img, g)), "bp": (lambda: backproject(y, g)),
           "fbp": (lambda: fbp(y, g)), "fbp_with_residual": (lambda: fbp_full(y, g))}
    for name, fn in ops.items():
        first, (med, threads) = _first_and_median(fn, repeats)
        r[f"sciml_{name}_s"] = med
        r[f"sciml_{name}_cpu_over_wall"] = threads
        r[f"sciml_{name}_first_call_s"] = first  # compile + one run
    if astra is None:
        return r
    vol, pg = _astra_geoms(astra, n, det, angles)
    img_np, y_np = np.asarray(img, np.float32), np.asarray(y, np.float32)
    pid = astra.create_projector("linear", pg, vol)

    def a_fp():
        sid, s = astra.create_sino(img_np, pid)
        astra.data2d.delete(sid)
        return s

    def a_bp():
        vid, v = astra.create_backprojection(y_np, pid)
        astra.data2d.delete(vid)
        return v

    aops = {"fp": a_fp, "bp": a_bp, "fbp": lambda: _astra_fbp(astra, y_np, vol, pg, "linear")}
    try:
        for name, fn in aops.items():
            try:
                fn()
                r[f"astra_{name}_s"], r[f"astra_{name}_cpu_over_wall"] = _median_time(fn, repeats)
                r[f"{name}_ratio_sciml_over_astra"] = r[f"sciml_{name}_s"] / r[f"astra_{name}_s"]
            except Exception as e:
                r[f"astra_{name}_s"] = _error(e)
    finally:
        astra.projector.delete(pid)
    return r


def bench_speed(astra) -> dict:
    return {f"{n}x{n}": _speed(astra, n) for n in SPEED_SIZES}


# ------------------------------------------------------------------------------------------------


def _flags(res: dict) -> dict:
    flags = {}
    for size, r in res["projections"].items():
        for k, v in r.items():
            if k.endswith("_ok"):
                flags[f"projection_{size}_{k[:-3]}"] = v
    for case, r in res["fbp"].items():
        if "ok" in r:
            flags[f"fbp_{case}"] = r["ok"]
    for case, r in res["iterative"].items():
        for alg in ("cgls", "sirt_nonneg"):  # TV is reported, not gated (ASTRA has no TV)
            if "ok" in r[alg]:
                flags[f"{alg}_{case}"] = r[alg]["ok"]
            if "ok" in r[alg].get("strip", {}):
                flags[f"{alg}_{case}_strip"] = r[alg]["strip"]["ok"]
        if "best_classical" in r:
            flags[f"best_classical_{case}"] = r["best_classical"]["ok"]
    return flags


def _summary(res: dict) -> str:
    lines = ["projections (rel L2 vs reference, target <= 2%):"]
    for size, r in res["projections"].items():
        vals = ", ".join(f"{k}={v:.4f}" for k, v in r.items() if isinstance(v, float))
        lines.append(f"  {size}: {vals}")
    lines.append("FBP PSNR dB: ours / ASTRA linear / ASTRA strip (target ours >= best - 0.5):")
    for case, r in res["fbp"].items():
        lines.append(f"  {case:<28} {r['ours']:6.2f} / {r.get('astra_linear', float('nan')):6.2f} / "
                     f"{r.get('astra_strip', float('nan')):6.2f}  {'OK' if r.get('ok') else 'MISS'}")
    lines.append("iterative best PSNR dB (iterations): ours vs ASTRA (target ours >= ASTRA - 0.05):")
    for case, r in res["iterative"].items():
        parts = []
        for alg in ("cgls", "sirt_nonneg"):
            c = r[alg]
            if "ours_best" in c:
                parts.append(f"{alg} {c['ours_best']:.2f}({c['ours_best_iterations']}) vs "
                             f"{c['astra_best']:.2f}({c['astra_best_iterations']}) "
                             f"same-its diff at best {c['same_iterations_diff_at_astra_best_db']:+.3f}, "
                             f"min {c['same_iterations_min_diff_db']:+.2f}")
                st = c.get("strip", {})
                if "ours_best" in st:
                    parts[-1] += (f"; strip {st['ours_best']:.2f}({st['ours_best_iterations']}) vs ASTRA "
                                  f"strip {st['astra_best']:.2f}({st['astra_best_iterations']})")
        if "best_classical" in r:
            parts.append(f"best classical ours {r['best_classical']['ours']:.2f} vs ASTRA "
                         f"{r['best_classical']['astra']:.2f}")
        tv = r["tv"]
        parts.append(f"tv(w={tv['weight']:g}) {tv['ours']:.2f} (oracle w={tv['oracle_weight']:g} "
                     f"{tv['oracle_weight_psnr']:.2f}) vs ASTRA best iterative "
                     f"{tv.get('astra_best_iterative', float('nan')):.2f} [reported, not gated]")
        lines.append(f"  {case}: " + "; ".join(parts))
    lines.append("speed, seconds (sciml / ASTRA = ratio):")
    for size, r in res["speed"].items():
        for op in ("fp", "bp", "fbp"):
            a = r.get(f"astra_{op}_s")
            a_txt = f"{a:.4f}" if isinstance(a, float) else "n/a"
            ratio = r.get(f"{op}_ratio_sciml_over_astra", float("nan"))
            lines.append(f"  {size} {op:<4} sciml {r[f'sciml_{op}_s']:.4f} (first call "
                         f"{r[f'sciml_{op}_first_call_s']:.2f}) ASTRA {a_txt} ratio {ratio:.2f}")
    failed = [k for k, v in res["flags"].items() if not v]
    lines.append(f"flags: {sum(res['flags'].values())}/{len(res['flags'])} pass; failing: {failed or 'none'}")
    return "\n".join(lines)


def main() -> dict:
    try:
        import astra
    except ImportError:
        astra = None
    t0 = time.perf_counter()
    res = {"astra": None if astra is None else astra.__version__,
           "config": {"iter_size": ITER_SIZE, "iter_views": ITER_VIEWS, "cgls_grid": CGLS_GRID,
                      "sirt_grid": SIRT_GRID, "tv_weights_at_60_views": TV_WEIGHTS_AT_60, "noise": NOISE,
                      "astra_iterative_projector": "linear", "fbp_filter": "ram-lak / ramp"}}
    for name, fn in (("projections", bench_projections), ("fbp", bench_fbp),
                     ("iterative", bench_iterative), ("speed", bench_speed)):
        t = time.perf_counter()
        res[name] = fn(astra)
        res[f"{name}_wall_s"] = time.perf_counter() - t
        print(f"  {name}: {res[f'{name}_wall_s']:.1f}s", flush=True)
    res["flags"] = _flags(res)
    res["all_ok"] = all(res["flags"].values())
    res["wall_s"] = time.perf_counter() - t0
    res["notes"] = (
        f"CPU only ({os.cpu_count()} cores, shared with other jobs: absolute times are noisy, ratios are "
        "from the same run). ASTRA 2D CPU, parallel beam, geometry mapped 1:1 (volume n x n, detector "
        "spacing 1). Data for FBP/iterative are exact line integrals of the phantom (no inverse crime); "
        f"noise {NOISE:.0%} of the sinogram max. Iterative: {ITER_SIZE}x{ITER_SIZE}, ASTRA 'linear' "
        "projector (Joseph, the same operator as sciml), grid points of sciml are separate calls "
        "(iterations is static: each count compiles once per geometry, so ours_seconds of the exact-data "
        "case include compilation and the noisy case's do not); SIRT nonneg on both sides. "
        "TV weight chosen on random_ellipses(key(1)) with the same views/noise, while the CGLS/SIRT 'best' "
        "picks the iteration count on Shepp-Logan itself (an oracle), on both sides. ASTRA 'strip' "
        f"iterative only at {ASTRA_STRIP_VIEWS} views (time). sciml times: jitted, median of later "
        "calls; ASTRA times include creating/deleting its data objects; *_cpu_over_wall ~1 means one "
        "busy thread."
    )
    if astra is None:
        res["notes"] += " ASTRA was not importable: only scikit-image and sciml numbers."
    print(_summary(res), flush=True)
    return res
