"""Training: ``fit`` (optax, one compiled step, progress bar, NaN guard, callbacks), data parallel
(``Pmap``, ``Sharded``; several hosts through ``jax.distributed``) and checkpoints."""

from ._checkpoint import Checkpoint as Checkpoint
from ._checkpoint import latest_checkpoint as latest_checkpoint
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._distributed import initialize_distributed as initialize_distributed
from ._distributed import shutdown_distributed as shutdown_distributed
from ._fit import History as History
from ._fit import NonFiniteLossError as NonFiniteLossError
from ._fit import StepInfo as StepInfo
from ._fit import TrainState as TrainState
from ._fit import fit as fit
from ._fit import init_state as init_state
from ._fit import minibatches as minibatches
from ._parallel import AbstractParallel as AbstractParallel
from ._parallel import Pmap as Pmap
from ._parallel import Sharded as Sharded
from ._parallel import SingleDevice as SingleDevice
from ._parallel import resolve_parallel as resolve_parallel
