"""sciml: a pure-functional JAX framework for scientific machine learning.

Sub-packages: :mod:`sciml.backend` (the one array backend), :mod:`sciml.nn` (activations, MLP, flax
interop), :mod:`sciml.train` (fit, data parallel, checkpoints), :mod:`sciml.ct` (CT geometries,
projector, reconstruction). Sibling packages ``pde``, ``symbolic``
and ``hwsim`` build on them.
"""

from importlib.metadata import PackageNotFoundError, version

from . import backend as backend
from . import ct as ct
from . import diffusion as diffusion
from . import metrics as metrics
from . import nn as nn
from . import train as train

try:
    __version__ = version("sciml")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
