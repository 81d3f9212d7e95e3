r"""Filtered back-projection: FBP (parallel and fan beam, flat detector) and FDK (cone beam).

Textbook formulas (Kak and Slaney 1988, "Principles of Computerized Tomographic Imaging", ch. 3;
Feldkamp, Davis and Kress 1984, JOSA A 1(6)):

* Ramp filter: the band-limited discrete kernel h(0) = 1/(4 tau^2), h(k) = -1/(pi k tau)^2 for odd k,
  0 for even k (tau the bin spacing), applied by FFT on a zero-padded detector (no DC bias from a
  sampled |w|), times an optional apodisation window (Shepp-Logan, cosine, Hamming, Hann) with a
  relative ``cutoff``.
* Parallel beam: f(x) = sum_i w_i Q_i(x . e_u(theta_i)), w_i the angular quadrature weights.
* Fan / cone beam, flat detector, full circle: data rescaled to a virtual detector through the axis
  (u' = u SOD/SDD), cosine-weighted by SOD / sqrt(SOD^2 + u'^2 (+ v'^2)), ramp-filtered along u',
  halved, and back-projected with the distance weight 1/U^2, U = (SOD + x . e_r)/SOD.

Back-projection here is *pixel driven* (each pixel interpolates the filtered data linearly at its
detector coordinate), which is what the inversion formulas call for; the ray-driven adjoint
:func:`sciml.ct.backproject` is used by the iterative methods instead.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._geometry import AbstractGeometry, ConeBeam, FanBeam, ParallelBeam, in_dtype, pixel_centres

FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


def _window(name: str, freq, cutoff):
    """Apodisation of the ramp; ``freq`` in cycles/sample in [0, 0.5], zero beyond cutoff * 0.5."""
    x = freq / (0.5 * cutoff)  # 0 .. 1 inside the band
    if name == "ramp":
        w = jnp.ones_like(x)
    elif name == "shepp-logan":
        w = jnp.sinc(x / 2)
    elif name == "cosine":
        w = jnp.cos(jnp.pi * x / 2)
    elif name == "hamming":
        w = 0.54 + 0.46 * jnp.cos(jnp.pi * x)
    else:  # hann
        w = 0.5 + 0.5 * jnp.cos(jnp.pi * x)
    return jnp.where(x <= 1.0, w, 0.0)


def ramp_filter(sinogram, spacing, *, filter: str = "ramp", cutoff: float = 1.0):
    """Filter along the last axis (detector u) with the discrete ramp kernel times a window.

    Args:
        sinogram: (..., n_u) data; the last axis is filtered.
        spacing: the bin spacing tau along u (physical units).
        filter: one of ``FILTERS``.
        cutoff: relative cutoff frequency in (0, 1] (1 = Nyquist).

    Returns:
        tau * (h * p), same shape: the convolution integral of the continuous formula.
    """
    if filter not in FILTERS:
        raise ValueError(f"`filter` must be one of {FILTERS}, got {filter!r}")
    if not 0 < cutoff <= 1:
        raise ValueError(f"`cutoff` must be in (0, 1], got {cutoff!r}")
    n = sinogram.shape[-1]
    size = max(64, 1 << math.ceil(math.log2(2 * n)))
    k = np.fft.fftfreq(size, 1.0 / size)  # integer lags, wrapped
    h = np.zeros(size)
    h[0] = 0.25
    odd = (np.abs(k) % 2) == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    dt = sinogram.dtype
    response = jnp.asarray(np.real(np.fft.fft(h)), dt)  # of the kernel in units 1/tau^2
    freq = jnp.abs(jnp.asarray(np.fft.fftfreq(size), dt))
    response = response * _window(filter, freq, cutoff)
    spec = jnp.fft.rfft(sinogram, n=size, axis=-1)
    spec = spec * response[: size // 2 + 1].astype(spec.dtype)
    return jnp.fft.irfft(spec, n=size, axis=-1)[..., :n] / spacing.astype(dt)


def angular_weights(angles, period: float):
    """Quadrature weights for the angles over one ``period`` (pi or 2 pi): half the gap to each
    neighbour, with wrap-around; equals period / n for equally spaced angles."""
    order = jnp.argsort(jnp.mod(angles, period))
    a = jnp.mod(angles, period)[order]
    gaps = jnp.diff(jnp.concatenate([a, a[:1] + period]))
    w_sorted = 0.5 * (gaps + jnp.roll(gaps, 1))
    return jnp.zeros_like(angles).at[order].set(w_sorted)


def _interp(q, u, u0, du):
    """Linear interpolation of q (n,) at coordinates u (any shape); zero outside."""
    n = q.shape[0]
    c = (u - u0) / du
    return jnp.interp(c, jnp.arange(n, dtype=q.dtype), q, left=0.0, right=0.0)


def _pixel_grid(geometry):
    return pixel_centres(geometry, geometry.voxel.dtype)


def _fbp_parallel(sino, g: ParallelBeam, filter, cutoff):
    q = ramp_filter(sino, g.detector_spacing, filter=filter, cutoff=cutoff)
    X, Y = _pixel_grid(g)
    w = angular_weights(g.angles, math.pi)
    n = g.detector_count
    u0 = -(n - 1) / 2 * g.detector_spacing + g.detector_offset

    def view(acc, inputs):
        qi, th, wi = inputs
        u = X * jnp.cos(th) + Y * jnp.sin(th)
        return acc + wi * _interp(qi, u, u0, g.detector_spacing), None

    out, _ = jax.lax.scan(view, jnp.zeros_like(X), (q, g.angles, w))
    return out


def _fbp_divergent(sino, g, filter, cutoff):
    """Fan (2D) and FDK (3D, row by row), full circular scan, flat detector."""
    D, sdd = g.source_origin, g.source_origin + g.origin_detector
    mag = D / sdd
    cone = isinstance(g, ConeBeam)
    du = (g.detector_spacing[1] if cone else g.detector_spacing) * mag
    nu = sino.shape[-1]
    u = (jnp.arange(nu, dtype=du.dtype) - (nu - 1) / 2) * du  # virtual detector through the axis
    if cone:
        dv = g.detector_spacing[0] * mag
        nv = sino.shape[-2]
        v = (jnp.arange(nv, dtype=du.dtype) - (nv - 1) / 2) * dv
        cosw = D / jnp.sqrt(D * D + u[None, :] ** 2 + v[:, None] ** 2)
    else:
        cosw = D / jnp.sqrt(D * D + u**2)
    q = 0.5 * ramp_filter(sino * cosw, du, filter=filter, cutoff=cutoff)
    w = angular_weights(g.angles, 2 * math.pi)
    X, Y = _pixel_grid(g)
    if cone:
        nz = g.image_shape[0]
        Z = (jnp.arange(nz, dtype=X.dtype) - (nz - 1) / 2) * g.voxel_size

    def view(acc, inputs):
        qi, th, wi = inputs
        c, s = jnp.cos(th), jnp.sin(th)
        U = (D + (-s * X + c * Y)) / D  # (D + r . e_r) / D
        up = (c * X + s * Y) / U
        if not cone:
            return acc + wi * _interp(qi, up, u[0], du) / U**2, None
        vp = Z[:, None, None] / U[None]  # (nz, ny, nx)
        # bilinear: interpolate each detector row at up, then across rows at vp
        rows = jax.vmap(lambda row: _interp(row, up, u[0], du))(qi)  # (nv, ny, nx)
        cv = jnp.clip((vp - v[0]) / dv, -1.0, nv)
        i0 = jnp.floor(cv)
        t = cv - i0
        i0 = i0.astype(jnp.int32)
        pad = jnp.pad(rows, ((1, 1), (0, 0), (0, 0)))  # zero rows outside the detector
        iy, ix = jnp.meshgrid(jnp.arange(X.shape[0]), jnp.arange(X.shape[1]), indexing="ij")
        lo = pad[jnp.clip(i0 + 1, 0, nv + 1), iy, ix]
        hi = pad[jnp.clip(i0 + 2, 0, nv + 1), iy, ix]
        return acc + wi * ((1 - t) * lo + t * hi) / U[None] ** 2, None

    init = jnp.zeros(g.image_shape, X.dtype)
    out, _ = jax.lax.scan(view, init, (q, g.angles, w))
    return out


def fbp(sinogram, geometry: AbstractGeometry, *, filter: str = "ramp", cutoff: float = 1.0):
    """Filtered back-projection (FDK for cone beam) of one sinogram (see the module docstring).

    Parallel beam needs angles covering [0, pi); fan and cone beam a full circle [0, 2 pi).
    """
    geometry = in_dtype(geometry, sinogram.dtype)
    if isinstance(geometry, ParallelBeam):
        return _fbp_parallel(sinogram, geometry, filter, cutoff)
    if isinstance(geometry, (FanBeam, ConeBeam)):
        return _fbp_divergent(sinogram, geometry, filter, cutoff)
    raise TypeError(f"no FBP for geometry {type(geometry).__name__}")
