"""Diffusion models: noise schedules (:class:`VP`, :class:`VE`), a preconditioned (conditional)
:class:`Denoiser` and its :func:`denoising_loss` for ``sciml.train.fit``, and samplers
(:class:`DDPM`, :class:`DDIM`, :class:`ProbabilityFlow` through diffrax) driven by :func:`sample`.

CT reconstruction with a diffusion prior, as ``sciml.ct.reconstruct`` methods: :class:`CDPA`
(conditional, with data consistency and uncertainty) and the baselines :class:`DDS` and :class:`DPS`.
"""

from ._ct import CDPA as CDPA
from ._ct import DDS as DDS
from ._ct import DPS as DPS
from ._ct import AbstractConsistency as AbstractConsistency
from ._ct import CGConsistency as CGConsistency
from ._ct_train import SparseViewTask as SparseViewTask
from ._ct_train import load_denoiser as load_denoiser
from ._ct_train import save_denoiser as save_denoiser
from ._ct_train import train_ct_denoiser as train_ct_denoiser
from ._denoiser import Denoiser as Denoiser
from ._denoiser import denoising_loss as denoising_loss
from ._sample import DDIM as DDIM
from ._sample import DDPM as DDPM
from ._sample import AbstractSampler as AbstractSampler
from ._sample import ProbabilityFlow as ProbabilityFlow
from ._sample import ddim_update as ddim_update
from ._sample import sample as sample
from ._schedule import VE as VE
from ._schedule import VP as VP
from ._schedule import AbstractSchedule as AbstractSchedule
