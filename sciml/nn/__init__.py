"""Neural-network building blocks: activations, MLP, U-Net, flax interop.

Activations come as pure functions (``relu``, ``gem``, ...) and as equinox Modules (``ReLU``,
``GEM``, ...), selected by name with :func:`activation`. :class:`MLP` is built from
:class:`Linear` layers over ``sciml.backend.matmul``. :func:`from_flax` turns a flax ``nnx`` model
into a :class:`FlaxModel`, the same kind of callable pytree; :func:`to_flax` turns it back.
:class:`UNet` is a small time-conditioned U-Net for diffusion models on 2D images;
:func:`count_params` counts a model's parameters.
"""

from ._activations import EGEM as EGEM
from ._activations import GELU as GELU
from ._activations import GEM as GEM
from ._activations import SEGEM as SEGEM
from ._activations import AbstractActivation as AbstractActivation
from ._activations import Lambda as Lambda
from ._activations import LeakyReLU as LeakyReLU
from ._activations import ReLU as ReLU
from ._activations import SiLU as SiLU
from ._activations import Softplus as Softplus
from ._activations import Tanh as Tanh
from ._activations import activation as activation
from ._activations import egem as egem
from ._activations import gelu as gelu
from ._activations import gem as gem
from ._activations import leaky_relu as leaky_relu
from ._activations import relu as relu
from ._activations import segem as segem
from ._activations import silu as silu
from ._activations import softplus as softplus
from ._activations import tanh as tanh
from ._flax import FlaxModel as FlaxModel
from ._flax import from_flax as from_flax
from ._flax import to_flax as to_flax
from ._mlp import MLP as MLP
from ._mlp import Linear as Linear
from ._unet import UNet as UNet
from ._unet import count_params as count_params
