"""Training data and training for CT diffusion priors, and saving / loading trained denoisers.

:class:`SparseViewTask` describes a sparse-view CT problem as a distribution: random phantoms
(textured or plain ellipses) rendered on a grid ``fine`` times finer than the reconstruction grid,
parallel-beam measurements at a few view counts simulated from that fine image with Poisson or
Gaussian noise (no inverse crime), and the ground truth as the block average of the fine image.
:func:`train_ct_denoiser` trains a conditional :class:`Denoiser` on it with ``sciml.train.fit``: the
condition of each example is the FBP of its sparse-view sinogram (view count drawn per example), and
fresh phantoms are drawn inside the compiled step, so the model never sees an image twice.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import train
from ..ct._data import downsample, simulate, textured_phantom
from ..ct._geometry import ParallelBeam, check_count, parallel_beam
from ..ct._phantoms import random_ellipses
from ..ct._reconstruct import FBP
from ..nn._unet import UNet
from ._denoiser import Denoiser, denoising_loss
from ._schedule import VE, VP, AbstractSchedule

PHANTOMS = ("textured", "ellipses")
NOISES = ("poisson", "gaussian", "none")


class SparseViewTask(eqx.Module):
    """A sparse-view parallel-beam CT problem as a distribution of (image, measurement) pairs.

    Attributes:
        size: reconstruction grid ``size x size``.
        views: view counts (equispaced over [0, pi)); training draws one per example.
        phantom: ``"textured"`` (:func:`sciml.ct.textured_phantom`) or ``"ellipses"``
            (:func:`sciml.ct.random_ellipses`, piecewise constant).
        noise: ``"poisson"`` (``photons`` per bin), ``"gaussian"`` (``sigma`` relative) or ``"none"``.
        photons, sigma: noise levels (see :func:`sciml.ct.simulate`).
        texture, correlation, smooth: textured-phantom options (:func:`sciml.ct.textured_phantom`):
            the defaults put an 8 % texture correlated over ~3 pixels (at 64 x 64) and +-30 % smooth
            shading on the ellipses: structure TV cannot represent.
        fine: the phantom is rendered ``fine`` times finer than the reconstruction grid and the data
            simulated from that fine image.
        detectors: detector bins (default: ceil(1.5 size), even), spacing one pixel.
    """

    size: int = eqx.field(static=True, default=64)
    views: tuple[int, ...] = eqx.field(static=True, default=(8, 16, 32))
    phantom: str = eqx.field(static=True, default="textured")
    noise: str = eqx.field(static=True, default="poisson")
    photons: float = eqx.field(static=True, default=2e4)
    sigma: float = eqx.field(static=True, default=0.01)
    texture: float = eqx.field(static=True, default=0.08)
    correlation: float = eqx.field(static=True, default=0.1)
    smooth: float = eqx.field(static=True, default=0.3)
    fine: int = eqx.field(static=True, default=2)
    detectors: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_count(self.size, "size")
        check_count(self.fine, "fine")
        if not isinstance(self.views, tuple) or not self.views:
            raise ValueError(f"`views` must be a non-empty tuple of view counts, got {self.views!r}")
        for v in self.views:
            check_count(v, "views")
        if self.phantom not in PHANTOMS:
            raise ValueError(f"`phantom` must be one of {PHANTOMS}, got {self.phantom!r}")
        if self.noise not in NOISES:
            raise ValueError(f"`noise` must be one of {NOISES}, got {self.noise!r}")

    @property
    def detector_count(self) -> int:
        if self.detectors is not None:
            return self.detectors
        return 2 * math.ceil(0.75 * self.size)

    def geometry(self, views: int) -> ParallelBeam:
        """The parallel-beam geometry with ``views`` equispaced angles in [0, pi)."""
        angles = np.linspace(0.0, np.pi, check_count(views, "views"), endpoint=False)
        return parallel_beam(angles, self.detector_count, (self.size, self.size))

    def image(self, key) -> jax.Array:
        """A random phantom on the fine grid, ``(fine * size, fine * size)``."""
        n = self.fine * self.size
        if self.phantom == "textured":
            return textured_phantom(key, (n, n), texture=self.texture, correlation=self.correlation,
                                    smooth=self.smooth)
        return random_ellipses(key, ndim=2).image((n, n), supersample=2)

    def measure(self, key, views: int, image=None):
        """``(truth, sinogram, geometry)``: a phantom (or the given fine ``image``), its noisy
        sparse-view sinogram simulated on the fine grid, and its block average as the truth."""
        k_img, k_noise = jax.random.split(key)
        fine = self.image(k_img) if image is None else image
        g = self.geometry(views)
        noise = None if self.noise == "none" else self.noise
        y = simulate(fine, g, key=k_noise, noise=noise, photons=self.photons, sigma=self.sigma, upsample=1)
        return downsample(fine, fine.shape[0] // self.size), y, g

    def training_example(self, key):
        """``(x, cond)``, each ``(1, size, size)``: a truth and the FBP of its measurement at a view
        count drawn from ``views``."""
        k_choice, k = jax.random.split(key)
        fine = self.image(k)
        conds, truth = [], None
        for i, v in enumerate(self.views):
            truth, y, g = self.measure(jax.random.fold_in(k, i), v, image=fine)
            conds.append(FBP()(y, g).image)
        choice = jax.random.randint(k_choice, (), 0, len(self.views))
        return truth[None], jnp.stack(conds)[choice][None]

    def training_batch(self, key, n: int):
        """``n`` training examples, stacked: ``(x, cond)`` of shape ``(n, 1, size, size)``."""
        return jax.vmap(self.training_example)(jax.random.split(key, n))

    def dataset(self, key, n: int, *, chunk: int = 64):
        """``n`` training examples computed in jitted chunks of ``chunk`` (``lax.map``), for a
        training pool: ``(x, cond)`` of shape ``(n, 1, size, size)``."""
        check_count(n, "n")
        keys = jax.random.split(key, n)
        run = jax.jit(lambda ks: jax.lax.map(self.training_example, ks, batch_size=min(chunk, n)))
        return run(keys)

    def to_dict(self) -> dict:
        names = ("size", "views", "phantom", "noise", "photons", "sigma", "texture", "correlation", "smooth",
                 "fine", "detectors")
        return {f: getattr(self, f) for f in names}


def _schedule_dict(schedule: AbstractSchedule) -> dict:
    if isinstance(schedule, VP):
        return {"type": "VP", "beta_min": float(schedule.beta_min), "beta_max": float(schedule.beta_max)}
    if isinstance(schedule, VE):
        return {"type": "VE", "sigma_min": float(schedule.sigma_min), "sigma_max": float(schedule.sigma_max)}
    raise ValueError(f"cannot save a schedule of type {type(schedule).__name__}; VP and VE are supported")


def _schedule_from(d: dict) -> AbstractSchedule:
    kind = d.get("type")
    if kind == "VP":
        return VP(d["beta_min"], d["beta_max"])
    if kind == "VE":
        return VE(d["sigma_min"], d["sigma_max"])
    raise ValueError(f"unknown schedule type {kind!r} in the weights file (expected 'VP' or 'VE')")


def _unet_dict(net: UNet) -> dict:
    return {f: getattr(net, f) for f in ("in_channels", "out_channels", "channels", "blocks", "embedding_dim",
                                         "groups", "attention")}


_FORMAT = "sciml.diffusion.Denoiser/1"


def save_denoiser(path: str | os.PathLike, denoiser: Denoiser, *,
                  metadata: dict | None = None) -> pathlib.Path:
    """Save a U-Net :class:`Denoiser`: one file, a JSON header line (architecture, schedule,
    ``metadata`` such as the image size and training task) followed by the weights
    (``equinox.tree_serialise_leaves``).

    Raises:
        TypeError: the network is not a :class:`sciml.nn.UNet`.
    """
    if not isinstance(denoiser.net, UNet):
        raise TypeError(f"only U-Net denoisers can be saved, got net of type {type(denoiser.net).__name__}")
    header = {"format": _FORMAT, "net": _unet_dict(denoiser.net),
              "schedule": _schedule_dict(denoiser.schedule),
              "channels": denoiser.channels, "cond_channels": denoiser.cond_channels,
              "sigma_data": denoiser.sigma_data, "metadata": metadata or {}}
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(json.dumps(header).encode() + b"\n")
        eqx.tree_serialise_leaves(f, denoiser)
    return path


def load_denoiser(path: str | os.PathLike, *,
                  image_shape: tuple[int, int] | None = None) -> tuple[Denoiser, dict]:
    """Load a denoiser saved by :func:`save_denoiser`; returns ``(denoiser, metadata)``.

    Args:
        path: the weights file.
        image_shape: if given, checked against the ``image_shape`` the model was trained on.

    The weights are returned in the backend's precision, whatever the precision they were saved in.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a sciml denoiser file, or trained for another image size.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        try:
            header = json.loads(f.readline())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{str(path)!r} is not a sciml denoiser file (no JSON header)") from e
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} is not a sciml denoiser file (format "
                             f"{header.get('format') if isinstance(header, dict) else None!r}, "
                             f"expected {_FORMAT!r})")
        meta = header["metadata"]
        trained = meta.get("image_shape")
        if image_shape is not None and trained is not None and tuple(trained) != tuple(image_shape):
            raise ValueError(f"weights file {str(path)!r} was trained on {tuple(trained)} images, but the "
                             f"geometry's image_shape is {tuple(image_shape)}; train a model for this size "
                             f"(`sciml ct train --size {image_shape[-1]}`)")
        cfg = dict(header["net"])
        cfg["channels"] = tuple(cfg["channels"])
        net = UNet(cfg.pop("in_channels"), cfg.pop("out_channels"), **cfg, key=jax.random.key(0))
        like = Denoiser(net, _schedule_from(header["schedule"]), channels=header["channels"],
                        cond_channels=header["cond_channels"], sigma_data=header["sigma_data"])
        return eqx.tree_deserialise_leaves(f, like, filter_spec=_in_like_dtype), meta


def _in_like_dtype(f, like):
    """Read one leaf in the dtype of ``like`` (the session's precision): weights saved in float32
    (the shipped model) then load under float64 too, instead of failing equinox's dtype check."""
    leaf = eqx.default_deserialise_filter_spec(f, like)
    return leaf.astype(like.dtype) if eqx.is_inexact_array(like) else leaf


def train_ct_denoiser(task: SparseViewTask, *, key, steps: int = 4000, batch_size: int = 16, pool: int = 4096,
                      channels: tuple[int, ...] = (32, 64, 128), learning_rate: float = 2e-3,
                      p_uncond: float = 0.1, schedule: AbstractSchedule | None = None,
                      log_ratio: tuple[float, float] | None = (-1.2, 1.2),
                      sigma_data: float = 0.5, parallel: Any = None, progress: bool | None = None,
                      callbacks=(), log_every: int | None = None):
    """Train a conditional CT denoiser (condition: the FBP of the sparse-view data) on ``task``.

    A pool of ``pool`` examples is simulated first (:meth:`SparseViewTask.dataset`), then shuffled
    minibatches of it train the model (fresh diffusion noise and times every step). Adam with a
    cosine-decayed learning rate and gradient clipping at norm 1; the loss is :func:`denoising_loss`
    with condition dropout ``p_uncond`` (so the same network also runs unconditionally, for DDS /
    DPS) and EDM's log-normal noise levels ``log_ratio`` (None: t uniform).

    Returns:
        ``(denoiser, history)`` (``sciml.train.History``).
    """
    check_count(steps, "steps")
    check_count(batch_size, "batch_size")
    schedule = VP() if schedule is None else schedule
    k_net, k_fit, k_data, k_batches = jax.random.split(key, 4)
    data = task.dataset(k_data, pool)
    groups = math.gcd(*channels, 8)
    net = UNet(3, 1, channels=tuple(channels), groups=groups, key=k_net)
    model = Denoiser(net, schedule, channels=1, cond_channels=1, sigma_data=sigma_data)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05)))

    batches = train.minibatches(data, batch_size, key=k_batches)

    def loss_fn(m, batch, k):
        x, cond = batch
        return denoising_loss(m, x, k, cond=cond, p_uncond=p_uncond, log_ratio=log_ratio)

    return train.fit(model, loss_fn, batches, optimizer, steps=steps, key=k_fit, parallel=parallel,
                     progress=progress, callbacks=callbacks, log_every=log_every)
