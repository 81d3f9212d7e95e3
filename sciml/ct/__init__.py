"""sciml.ct: CT geometries, a matched projector / back-projector, and reconstruction.

Geometries (:func:`parallel_beam`, :func:`fan_beam`, :func:`cone_beam`) are pytrees; the projector
(:func:`project`, Joseph's method) and the back-projector (:func:`backproject`, its exact transpose)
are jit-compiled, differentiable and batched over leading axes. Coordinates follow the ASTRA
toolbox (see :mod:`sciml.ct._geometry`).
"""

from ._data import downsample as downsample
from ._data import load_dicom as load_dicom
from ._data import load_projections as load_projections
from ._data import refine as refine
from ._data import save_projections as save_projections
from ._data import simulate as simulate
from ._data import textured_phantom as textured_phantom
from ._geometry import AbstractGeometry as AbstractGeometry
from ._geometry import ConeBeam as ConeBeam
from ._geometry import FanBeam as FanBeam
from ._geometry import ParallelBeam as ParallelBeam
from ._geometry import cone_beam as cone_beam
from ._geometry import fan_beam as fan_beam
from ._geometry import parallel_beam as parallel_beam
from ._phantoms import Ellipsoids as Ellipsoids
from ._phantoms import random_ellipses as random_ellipses
from ._phantoms import shepp_logan as shepp_logan
from ._projector import backproject as backproject
from ._projector import project as project
from ._reconstruct import CGLS as CGLS
from ._reconstruct import FBP as FBP
from ._reconstruct import SIRT as SIRT
from ._reconstruct import TV as TV
from ._reconstruct import AbstractReconstructor as AbstractReconstructor
from ._reconstruct import Reconstruction as Reconstruction
from ._reconstruct import reconstruct as reconstruct
