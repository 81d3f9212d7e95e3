r"""Reference values u(0, x) for the benchmark problems: closed forms, quadratures, Monte Carlo.

Every function here returns a :class:`~pde.Reference` (the value, its error bar and how it was
obtained) or the pieces of one, computes in the dtype of its ``x`` (a real floating array; float64
under ``sciml.backend.precision("float64")``), and works under ``jax.jit`` and ``jax.vmap``, so a
reference on thousands of box points is one ``jax.vmap`` away.

* :func:`closed_form`, :func:`published`: wrap a known number.
* :func:`max_call`: the max-call option on independent geometric Brownian motions by a 1-D
  quadrature (benchmark K3).
* :func:`radial_log_mean`, :func:`hjb_cole_hopf`, :func:`hjb_terminal_mean`: expectations of
  functions of :math:`\lVert x + s Z\rVert^2` by a 2-D quadrature, and through them the Cole–Hopf
  solution of the Hamilton–Jacobi–Bellman benchmark S1.
* :func:`monte_carlo_mean`, :func:`monte_carlo`: plain Monte Carlo over the exact SDE transition,
  chunked so memory stays bounded; the generic reference of every linear problem.

Multilevel Picard, the reference generator for semilinear problems without a closed form, lives in
:func:`pde.multilevel_picard`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, logsumexp, xlogy
from jaxtyping import Array, Float

from sciml import backend

from ._problem import AbstractLinearProblem, AbstractProblem, Reference
from ._sde_types import AbstractExactSDE, AbstractSDE

__all__ = [
    "closed_form",
    "hjb_cole_hopf",
    "hjb_terminal_mean",
    "max_call",
    "monte_carlo",
    "monte_carlo_mean",
    "published",
    "radial_log_mean",
]

_LOG2 = math.log(2.0)
# Where a Gaussian (in standard units) or a tilted Gaussian is cut off: beyond this many standard
# deviations the log-density has dropped by more than 12^2/2 = 72 below its maximum.
_WIDTH = 12.0
# Integrands more than this far (in log) below their maximum are dropped: relative error < e^-45.
_DROP = 45.0


def _positive_int(value, name: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"got {name}={value!r}; `{name}` must be a positive int ({hint})")
    return int(value)


def _float_vector(x, name: str = "x") -> Array:
    x = backend.check_float_array(x, name=name)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be a point of shape (d,), got shape {x.shape}; vmap for batches")
    return x


def _log_ndtr(z: Array) -> Array:
    """log Phi(z), via one erfc: log1p(-Phi(-z)) for z > 0, log Phi(z) below (about twice as fast as
    ``jax.scipy.special.log_ndtr`` in float64). It is -inf where Phi(z) underflows (z < -37 in float64,
    z < -13 in float32): exact for the products it is used in, which then vanish, and differentiable
    (no NaN from the unselected branch)."""
    p = 0.5 * jax.lax.erfc(jnp.abs(z) / math.sqrt(2.0))  # Phi(-|z|), in [0, 1/2]
    lower = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), -jnp.inf)
    return jnp.where(z > 0, jnp.log1p(-p), lower)


def _composite(lo, hi, panels: int, nodes: int, dtype) -> tuple[Array, Array]:
    """Nodes and weights of the composite ``nodes``-point Gauss–Legendre rule on ``panels`` equal
    panels of [lo, hi] (lo, hi may be traced; the rule's shape is static)."""
    gx, gw = np.polynomial.legendre.leggauss(nodes)
    t = ((np.arange(panels)[:, None] + (gx[None, :] + 1.0) / 2.0) / panels).ravel()
    w = np.tile(gw / (2.0 * panels), panels)
    t, w = jnp.asarray(t, dtype), jnp.asarray(w, dtype)
    return lo + (hi - lo) * t, (hi - lo) * w


# --------------------------------------------------------------------------------------------------
# Known numbers
# --------------------------------------------------------------------------------------------------


def closed_form(value: Float[Array, ""]) -> Reference:
    """A reference known in closed form: the value with a zero error bar.

    Example:
        >>> from pde.reference import closed_form
        >>> closed_form(jnp.asarray(1.6)).method
        'closed form'
    """
    value = jnp.asarray(value)
    return Reference(value, jnp.zeros_like(value), "closed form")


def published(value: float, *, decimals: int, dtype=None) -> Reference:
    """A reference copied from the literature, with ``stderr`` half a unit of its last printed digit.

    The error bar only says how many digits were printed; the publication's own method error (often
    a Monte Carlo or multilevel Picard estimate) may be larger.

    Args:
        value: the published number.
        decimals: how many decimals were printed.
        dtype: the float dtype of the result (default: the backend's default precision).

    Example:
        >>> from pde.reference import published
        >>> ref = published(57.300, decimals=3)
        >>> ref.method, round(float(ref.stderr), 6)
        ('published', 0.0005)
    """
    v = backend.as_array(value, dtype, name="value")
    return Reference(v, jnp.asarray(0.5 * 10.0**-decimals, v.dtype), "published")


# --------------------------------------------------------------------------------------------------
# Max-call option (K3)
# --------------------------------------------------------------------------------------------------


def max_call(
    x: Float[Array, " d"],
    *,
    mu,
    sigma,
    discount_rate,
    strike,
    horizon,
    panels: int = 16,
    nodes: int = 16,
) -> Reference:
    r"""The price of a call on the maximum of d independent geometric Brownian motions, by quadrature.

    With :math:`X_{T,i} = x_i \exp((\mu_i - \sigma_i^2/2)T + \sigma_i W_{T,i})` and
    :math:`M = \max_i X_{T,i}`, :math:`\mathbb E[(M-K)^+] = \int_K^\infty P(M > m)\,dm`, so

    .. math::
        u(x) = e^{-rT}\int_{\ln K}^{\infty} e^{y}\Big[1 - \prod_{i=1}^d
            \Phi\Big(\frac{y - \ln x_i - (\mu_i - \sigma_i^2/2)T}{\sigma_i\sqrt T}\Big)\Big]\,dy .

    The product is summed in log space (:math:`\log\Phi` from one ``erfc``) and ``1 - exp`` taken by
    ``expm1``, so it is accurate for any d. The integral is cut at :math:`Y = \max_i(m_i + s_i(s_i + 9))`
    (:math:`m_i, s_i` the log-mean and log-std of :math:`X_{T,i}`) and integrated by a composite
    Gauss–Legendre rule; the neglected tail is bounded by the union bound
    :math:`\sum_i \mathbb E[(X_{T,i} - e^Y)^+] \le \sum_i e^{m_i + s_i^2/2}\Phi((m_i + s_i^2 - Y)/s_i)`.

    Args:
        x: the spot prices, shape (d,), > 0.
        mu: the drift rates :math:`\mu_i` (scalar or (d,)); ``r`` for a risk-neutral price.
        sigma: the volatilities :math:`\sigma_i > 0` (scalar or (d,)).
        discount_rate: r (scalar).
        strike: K > 0 (scalar).
        horizon: T > 0 (scalar).
        panels: number of Gauss–Legendre panels (static; even).
        nodes: Gauss–Legendre nodes per panel (static).

    Returns:
        A :class:`~pde.Reference` with ``method="quadrature"``; ``stderr`` is the difference to the
        same rule on half as many panels (an estimate of *that* rule's error, so conservative for
        this one) plus the tail bound, both discounted. In float64 at the benchmark's points
        it is about 1e-12 relative (checked against adaptive quadrature and Monte Carlo).

    Raises:
        TypeError: ``x`` is not a real floating array.
        ValueError: ``x`` is not a vector, or ``panels``/``nodes`` are not positive ints.

    Example (benchmark K3: d = 100, r = 0.05, sigma_i = 0.1 + i/200, K = 110, T = 1):
        >>> from pde.reference import max_call
        >>> sigma = 0.1 + jnp.arange(1, 101) / 200
        >>> ref = max_call(jnp.full(100, 100.0), mu=0.05, sigma=sigma, discount_rate=0.05,
        ...                strike=110.0, horizon=1.0)
        >>> round(float(ref.value), 2)
        172.81

    References:
        M. Broadie, J. Detemple, "The valuation of American options on multiple assets", Math.
        Finance 7 (1997) (the max-call formula); C. Beck, S. Becker, P. Grohs, N. Jaafari,
        A. Jentzen, "Solving the Kolmogorov PDE by means of deep learning", J. Sci. Comput. 88 (2021)
        (the benchmark).
    """
    x = _float_vector(x)
    panels = _positive_int(panels, "panels", "Gauss–Legendre panels")
    nodes = _positive_int(nodes, "nodes", "Gauss–Legendre nodes per panel")
    cast = lambda v: jnp.asarray(v).astype(x.dtype)
    mu, sigma = (jnp.broadcast_to(cast(v), x.shape) for v in (mu, sigma))
    return _max_call(x, mu, sigma, cast(discount_rate), cast(strike), cast(horizon), panels, nodes)


@functools.partial(jax.jit, static_argnames=("panels", "nodes"))
def _max_call(x, mu, sigma, r, K, T, panels: int, nodes: int) -> Reference:
    dtype = x.dtype
    sd = sigma * jnp.sqrt(T)
    m = jnp.log(x) + (mu - 0.5 * sigma**2) * T
    lo = jnp.log(K)
    hi = jnp.maximum(lo, jnp.max(m + sd * (sd + 9.0)))

    def integral(p):
        y, w = _composite(lo, hi, p, nodes, dtype)
        log_cdf = jnp.sum(_log_ndtr((y[:, None] - m[None, :]) / sd[None, :]), axis=1)
        return jnp.sum(w * -jnp.expm1(log_cdf) * jnp.exp(y))

    fine = integral(panels)
    coarse = integral(max(panels // 2, 1))
    tail = jnp.sum(jnp.exp(m + 0.5 * sd**2 + log_ndtr((m + sd**2 - hi) / sd)))
    discount = jnp.exp(-r * T)
    return Reference(discount * fine, discount * (jnp.abs(fine - coarse) + tail), "quadrature")


# --------------------------------------------------------------------------------------------------
# Radial Gaussian expectations and the HJB benchmark (S1)
# --------------------------------------------------------------------------------------------------


def _bounding_box(logw, box, n: int, drop: float, has_r: bool):
    """Shrink ``box = (zlo, zhi, rlo, rhi)`` to the cells of an n x n grid where ``logw`` is within
    ``drop`` of its maximum, widened by one cell (the grid sees every peak at least one cell wide)."""
    zlo, zhi, rlo, rhi = box
    dtype = zlo.dtype
    u = jnp.linspace(0.0, 1.0, n, dtype=dtype)
    zg = zlo + (zhi - zlo) * u
    rg = rlo + (rhi - rlo) * u
    vals = logw(zg[:, None], rg[None, :]) if has_r else logw(zg, None)[:, None]
    vals = jnp.where(jnp.isnan(vals), -jnp.inf, vals)
    keep = vals >= jnp.max(vals) - drop
    inf = jnp.asarray(jnp.inf, dtype)

    def span(grid, mask, step):
        return jnp.min(jnp.where(mask, grid, inf)) - step, jnp.max(jnp.where(mask, grid, -inf)) + step

    zlo, zhi = span(zg, jnp.any(keep, axis=1), (zhi - zlo) / (n - 1))
    if has_r:
        rlo, rhi = span(rg, jnp.any(keep, axis=0), (rhi - rlo) / (n - 1))
        rlo = jnp.maximum(rlo, 0.0)
    return zlo, zhi, rlo, rhi


def radial_log_mean(
    log_h: Callable[[Array], Array],
    x: Float[Array, " d"],
    scale,
    *,
    z_panels: int = 32,
    r_panels: int = 8,
    nodes: int = 16,
    grid: int = 64,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""The log of :math:`\mathbb E[h(\lVert x + sZ\rVert^2)]`, :math:`Z \sim N(0, I_d)`, by quadrature.

    Write :math:`a = \lVert x\rVert` and split :math:`Z` into its component :math:`\zeta` along
    :math:`x` and the rest, whose norm :math:`\rho` is chi-distributed with :math:`k = d - 1`
    degrees of freedom. Then :math:`\lVert x + sZ\rVert^2 = (a + s\zeta)^2 + s^2\rho^2` and

    .. math::
        \mathbb E[h] = \int_{\mathbb R}\int_0^\infty h\big((a+s\zeta)^2 + s^2\rho^2\big)\,
            \varphi(\zeta)\,\frac{\rho^{k-1}e^{-\rho^2/2}}{2^{k/2-1}\Gamma(k/2)}\,d\rho\,d\zeta ,

    a 2-D integral at any d (1-D when d = 1). Everything is done in log space (``log_h`` rather than
    h, ``logsumexp``), so :math:`h = e^{-\lambda g}` with large :math:`\lambda` or d in the
    thousands neither underflows nor overflows. Two passes of a ``grid`` x ``grid`` scan over
    :math:`[-a/s - 12, 12] \times [0, \sqrt{k-1} + 12]` find the box where the integrand is within
    :math:`e^{-45}` of its maximum; a tensor composite Gauss–Legendre rule integrates over it.

    The starting window assumes that h does not grow faster than the Gaussian decays beyond 12
    standard deviations (true for any h that decreases in its argument, and for logarithmic growth).

    Args:
        log_h: :math:`q \mapsto \log h(q)` for :math:`q \ge 0`, elementwise (``-inf`` where h = 0).
        x: the point, shape (d,), real floating (its dtype is used throughout).
        scale: s > 0 (scalar), e.g. :math:`\sqrt{2T}` for :math:`x + \sqrt2 W_T`.
        z_panels, r_panels: Gauss–Legendre panels along :math:`\zeta` and :math:`\rho` (static).
        nodes: Gauss–Legendre nodes per panel (static).
        grid: points per axis of the two scanning passes (static).

    Returns:
        ``(log_mean, error)``: the log of the expectation, and the absolute difference to the rule
        with half as many panels along each axis (a conservative error estimate of ``log_mean``).

    Raises:
        TypeError: ``x`` is not a real floating array.
        ValueError: ``x`` is not a vector, or a panel/node/grid count is not a positive int.

    Example (E[||Z||^2] = d):
        >>> from pde.reference import radial_log_mean
        >>> log_mean, _ = radial_log_mean(jnp.log, jnp.zeros(3), 1.0)
        >>> round(float(jnp.exp(log_mean)), 4)
        3.0
    """
    x = _float_vector(x)
    z_panels = _positive_int(z_panels, "z_panels", "Gauss–Legendre panels along the x direction")
    r_panels = _positive_int(r_panels, "r_panels", "Gauss–Legendre panels along the radius")
    nodes = _positive_int(nodes, "nodes", "Gauss–Legendre nodes per panel")
    grid = _positive_int(grid, "grid", "scan points per axis")
    if grid < 2:
        raise ValueError(f"got grid={grid}; `grid` must be >= 2")
    return _radial(log_h, x, jnp.asarray(scale).astype(x.dtype), z_panels, r_panels, nodes, grid)


def _radial(log_h, x, s, z_panels: int, r_panels: int, nodes: int, grid: int):
    dtype = x.dtype
    a = jnp.sqrt(jnp.sum(x**2))
    k = x.shape[0] - 1  # degrees of freedom of the part orthogonal to x
    has_r = k > 0
    log_phi = -0.5 * math.log(2.0 * math.pi)
    log_chi = -((k / 2.0 - 1.0) * _LOG2 + math.lgamma(k / 2.0)) if has_r else 0.0

    def logw(z, r):
        q = (a + s * z) ** 2
        out = -0.5 * z**2 + log_phi
        if has_r:
            q = q + (s * r) ** 2
            out = out + xlogy(jnp.asarray(k - 1, dtype), r) - 0.5 * r**2 + log_chi
        return out + log_h(q)

    zero = jnp.zeros((), dtype)
    box = (-a / s - _WIDTH, zero + _WIDTH, zero, zero + math.sqrt(max(k - 1, 0)) + _WIDTH)
    box = _bounding_box(logw, box, grid, 2.0 * _DROP, has_r)
    box = _bounding_box(logw, box, grid, _DROP, has_r)

    def rule(zp, rp):
        z, wz = _composite(box[0], box[1], zp, nodes, dtype)
        if not has_r:
            return logsumexp(logw(z, None) + jnp.log(wz))
        r, wr = _composite(box[2], box[3], rp, nodes, dtype)
        vals = logw(z[:, None], r[None, :]) + jnp.log(wz)[:, None] + jnp.log(wr)[None, :]
        return logsumexp(vals)

    fine = rule(z_panels, r_panels)
    coarse = rule(max(z_panels // 2, 1), max(r_panels // 2, 1))
    return fine, jnp.abs(fine - coarse)


_QUADRATURE = ("z_panels", "r_panels", "nodes", "grid")


def _quadrature_options(options: dict) -> dict:
    unknown = sorted(set(options) - set(_QUADRATURE))
    if unknown:
        raise TypeError(f"unknown quadrature option(s) {unknown}; valid: {list(_QUADRATURE)}")
    defaults = dict(z_panels=32, r_panels=8, nodes=16, grid=64)
    defaults.update(options)
    for name, value in defaults.items():
        _positive_int(value, name, "a quadrature size")
    if defaults["grid"] < 2:
        raise ValueError(f"got grid={defaults['grid']}; `grid` must be >= 2")
    return defaults


@functools.partial(jax.jit, static_argnames=_QUADRATURE)
def _hjb(x, lam, T, z_panels, r_panels, nodes, grid) -> Reference:
    log_h = lambda q: -lam * (jnp.log1p(q) - _LOG2)
    log_mean, error = _radial(log_h, x, jnp.sqrt(2.0 * T), z_panels, r_panels, nodes, grid)
    return Reference(-log_mean / lam, error / lam, "quadrature")


@functools.partial(jax.jit, static_argnames=_QUADRATURE)
def _hjb_terminal_mean(x, T, z_panels, r_panels, nodes, grid) -> Reference:
    log_h = lambda q: jnp.log(jnp.log1p(q))
    log_mean, error = _radial(log_h, x, jnp.sqrt(2.0 * T), z_panels, r_panels, nodes, grid)
    mean = jnp.exp(log_mean)
    return Reference(mean - _LOG2, mean * error, "quadrature")


def hjb_cole_hopf(x: Float[Array, " d"], *, lam, horizon, **quadrature) -> Reference:
    r"""u(0, x) of the HJB benchmark :math:`u_t + \Delta u - \lambda\lVert\nabla u\rVert^2 = 0`,
    :math:`u(T, x) = \ln((1 + \lVert x\rVert^2)/2)`, by the Cole–Hopf transform and quadrature.

    :math:`w = e^{-\lambda u}` solves the heat equation :math:`w_t + \Delta w = 0`, so

    .. math::
        u(0, x) = -\frac1\lambda \ln \mathbb E\big[\exp(-\lambda g(x + \sqrt2 W_T))\big]
        = -\frac1\lambda \ln \mathbb E\Big[\Big(\frac{1 + \lVert x + \sqrt{2T} Z\rVert^2}{2}
            \Big)^{-\lambda}\Big],

    computed by :func:`radial_log_mean` (at x = 0 a chi-squared integral).

    Args:
        x: the point, shape (d,), real floating.
        lam: :math:`\lambda > 0` (scalar).
        horizon: T > 0 (scalar).
        **quadrature: passed to :func:`radial_log_mean` (``z_panels``, ``r_panels``, ``nodes``, ``grid``).

    Returns:
        A :class:`~pde.Reference` with ``method="quadrature"``. In float64 the value agrees with an
        independent adaptive quadrature to about 1e-14 relative at d = 1..100; ``stderr`` is the
        (conservative) half-panel error estimate divided by :math:`\lambda`.

    Raises:
        TypeError, ValueError: as :func:`radial_log_mean`.

    Example (benchmark S1, d = 100, T = 1, lambda = 1):
        >>> from pde.reference import hjb_cole_hopf
        >>> round(float(hjb_cole_hopf(jnp.zeros(100), lam=1.0, horizon=1.0).value), 4)
        4.5902

    References:
        J. Han, A. Jentzen, W. E, "Solving high-dimensional partial differential equations using deep
        learning", PNAS 115 (2018), 8505–8510.
    """
    x = _float_vector(x)
    cast = lambda v: jnp.asarray(v).astype(x.dtype)
    return _hjb(x, cast(lam), cast(horizon), **_quadrature_options(quadrature))


def hjb_terminal_mean(x: Float[Array, " d"], *, horizon, **quadrature) -> Reference:
    r""":math:`\mathbb E[g(x + \sqrt2 W_T)]`, :math:`g(y) = \ln((1 + \lVert y\rVert^2)/2)`: the HJB
    benchmark without its nonlinearity (what a solver that ignores f converges to).

    Computed as :math:`\mathbb E[\ln(1 + q)] - \ln 2` with :func:`radial_log_mean` of
    :math:`\log\ln(1+q)`.

    Args:
        x: the point, shape (d,), real floating.
        horizon: T > 0 (scalar).
        **quadrature: passed to :func:`radial_log_mean`.

    Returns:
        A :class:`~pde.Reference` with ``method="quadrature"``.

    Example (d = 100, T = 1: 4.600226, 0.22% above the HJB value at lambda = 1):
        >>> from pde.reference import hjb_terminal_mean
        >>> round(float(hjb_terminal_mean(jnp.zeros(100), horizon=1.0).value), 4)
        4.6002
    """
    x = _float_vector(x)
    return _hjb_terminal_mean(x, jnp.asarray(horizon).astype(x.dtype), **_quadrature_options(quadrature))


# --------------------------------------------------------------------------------------------------
# Monte Carlo
# --------------------------------------------------------------------------------------------------


def monte_carlo_mean(
    fn: Callable[[Array], Array],
    sde: AbstractSDE,
    x: Float[Array, " d"],
    *,
    horizon,
    key: Array,
    n_paths: int,
    batch: int = 8192,
) -> tuple[Array, Array]:
    r"""Monte Carlo mean and standard error of :math:`\mathbb E[\mathrm{fn}(X_T^x)]`.

    :math:`X_T = \mathrm{transition}(0, T, x, \sqrt T Z)` with :math:`Z \sim N(0, I_d)`: exact, no time
    steps. The paths are drawn ``batch`` at a time (``vmap`` inside a chunk, ``lax.map`` across
    chunks, the last chunk masked), and the chunk means and centred sums of squares are merged
    (Chan et al.), so memory is bounded and the variance suffers no cancellation.

    The work is one ``eqx.filter_jit`` call: passing ``fn`` as a pytree callable (a method of a
    Module such as ``problem.terminal``, or an ``eqx.Partial``) reuses the compilation across calls
    and parameter values; a fresh ``lambda`` recompiles.

    Args:
        fn: a function of one terminal point, ``(d,) -> ()`` (or any fixed shape).
        sde: an :class:`~pde.AbstractExactSDE`.
        x: the starting point, shape (d,), real floating (the dtype of the samples).
        horizon: T > 0.
        key: a JAX PRNG key.
        n_paths: number of samples, >= 2 (static).
        batch: samples per chunk (static).

    Returns:
        ``(mean, stderr)`` with ``stderr = std / sqrt(n_paths)`` (unbiased variance).

    Raises:
        TypeError: ``sde`` is not exactly solvable, ``x`` is not real floating or ``key`` is not a key.
        ValueError: ``x`` is not of shape (sde.dim,), ``n_paths < 2`` or ``batch < 1``.

    Example (E[||x + W_1||^2] = d for x = 0):
        >>> import pde
        >>> from pde.reference import monte_carlo_mean
        >>> mean, se = monte_carlo_mean(lambda y: jnp.sum(y**2), pde.BrownianMotion(3), jnp.zeros(3),
        ...                             horizon=1.0, key=jax.random.key(0), n_paths=4096)
        >>> bool(abs(mean - 3.0) < 4 * se)
        True
    """
    if not isinstance(sde, AbstractExactSDE):
        raise TypeError(
            "monte_carlo_mean samples the exact transition, so `sde` must be a pde.AbstractExactSDE "
            f"(BrownianMotion, GeometricBrownianMotion), got {type(sde).__name__}; for other SDEs "
            "sample paths with pde.sde"
        )
    x = _float_vector(x)
    if x.shape != (sde.dim,):
        raise ValueError(f"`x` must have shape (d,)=({sde.dim},), got {x.shape}")
    if isinstance(n_paths, bool) or not isinstance(n_paths, (int, np.integer)) or n_paths < 2:
        raise ValueError(
            f"got n_paths={n_paths!r}; `n_paths` must be an int >= 2 (a standard error needs two)"
        )
    batch = min(_positive_int(batch, "batch", "samples per chunk"), int(n_paths))
    keys = backend.split_key(key, -(-int(n_paths) // batch))
    return _monte_carlo_mean(fn, sde, x, jnp.asarray(horizon).astype(x.dtype), keys, int(n_paths), batch)


@eqx.filter_jit
def _monte_carlo_mean(fn, sde, x, T, keys, n_paths: int, batch: int):
    dtype = x.dtype
    t0 = jnp.zeros((), dtype)

    def sample(z):
        return fn(sde.transition(t0, T, x, jnp.sqrt(T) * z))

    def chunk(args):
        k, start = args
        values = jax.vmap(sample)(jax.random.normal(k, (batch, sde.dim), dtype))
        mask = (start + jnp.arange(batch)) < n_paths
        mask = mask.reshape((batch,) + (1,) * (values.ndim - 1))
        count = jnp.sum(mask, axis=0).astype(dtype)
        mean = jnp.sum(jnp.where(mask, values, 0), axis=0) / count
        m2 = jnp.sum(jnp.where(mask, (values - mean) ** 2, 0), axis=0)
        return count, mean, m2

    starts = jnp.arange(keys.shape[0]) * batch
    counts, means, m2s = jax.lax.map(chunk, (keys, starts))
    n = jnp.asarray(n_paths, dtype)
    mean = jnp.sum(counts * means, axis=0) / n
    m2 = jnp.sum(m2s, axis=0) + jnp.sum(counts * (means - mean) ** 2, axis=0)
    return mean, jnp.sqrt(m2 / (n - 1) / n)


def monte_carlo(
    problem: AbstractProblem,
    x: Float[Array, " d"] | None = None,
    *,
    key: Array,
    n_paths: int = 2**16,
    batch: int = 8192,
) -> Reference:
    r"""Monte Carlo reference of a linear problem: :math:`u(0,x) = e^{-rT}\,\mathbb E[g(X_T^x)]`.

    Args:
        problem: an :class:`~pde.AbstractLinearProblem` whose SDE is an
            :class:`~pde.AbstractExactSDE` (every linear benchmark problem).
        x: where to evaluate, shape (d,), real floating (default ``problem.x0``).
        key: a JAX PRNG key.
        n_paths: number of samples, >= 2 (static).
        batch: samples per chunk, bounding memory at about ``batch * d`` floats (static).

    Returns:
        A :class:`~pde.Reference` with ``method="monte carlo"`` and ``stderr`` the discounted
        standard error.

    Raises:
        TypeError: ``problem`` is not linear or its SDE is not exactly solvable (semilinear problems:
            use :func:`pde.multilevel_picard`).
        ValueError: as :func:`monte_carlo_mean`.

    Example (the heat paraboloid, u = ||x||^2 + 2Td = 1.25 + 10 at x = 0.5 * 1, d = 5):
        >>> import pde
        >>> from pde.reference import monte_carlo
        >>> ref = monte_carlo(pde.HeatParaboloid(5), key=jax.random.key(0), n_paths=8192)
        >>> bool(abs(ref.value - 11.25) < 4 * ref.stderr)
        True
    """
    if not isinstance(problem, AbstractLinearProblem):
        raise TypeError(
            "monte_carlo needs a pde.AbstractLinearProblem (u(0,x) = exp(-rT) E[g(X_T)]), got "
            f"{type(problem).__name__}; for semilinear problems use pde.multilevel_picard"
        )
    x = problem.x0 if x is None else _float_vector(x)
    mean, stderr = monte_carlo_mean(
        problem.terminal, problem.sde, x, horizon=problem.horizon, key=key, n_paths=n_paths, batch=batch
    )
    discount = jnp.exp(-(problem.discount_rate * problem.horizon).astype(x.dtype))
    return Reference(discount * mean, discount * stderr, "monte carlo")
