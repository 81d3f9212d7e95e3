"""Systolic-array simulator: an analytic cycle model compatible with SCALE-Sim v3.

Workloads are GEMMs (:func:`gemm`), convolutions lowered to GEMM (:func:`conv`) and networks
(:class:`Topology`, read from SCALE-Sim's CSV files by :func:`read_topology` or shipped with the
package, :func:`load_topology`). :func:`simulate` maps them onto a :class:`SystolicArray` with a
dataflow (:class:`OutputStationary`, :class:`WeightStationary`, :class:`InputStationary`, subclasses
of :class:`AbstractDataflow`) and returns a :class:`SimulationResult`; with a :class:`Memory` it also
models the double-buffered SRAMs and DRAM (:class:`MemoryResult`). SCALE-Sim's ``.cfg`` files are
read by :func:`read_config`.
"""

from ._config import ScaleSimConfig as ScaleSimConfig
from ._config import parse_config as parse_config
from ._config import read_config as read_config
from ._dataflow import DATAFLOWS as DATAFLOWS
from ._dataflow import AbstractDataflow as AbstractDataflow
from ._dataflow import InputStationary as InputStationary
from ._dataflow import OutputStationary as OutputStationary
from ._dataflow import SystolicArray as SystolicArray
from ._dataflow import WeightStationary as WeightStationary
from ._memory import Memory as Memory
from ._memory import MemoryResult as MemoryResult
from ._memory import conv_ifmap_words as conv_ifmap_words
from ._memory import topology_ifmap_words as topology_ifmap_words
from ._simulate import SimulationResult as SimulationResult
from ._simulate import simulate as simulate
from ._workload import TOPOLOGIES as TOPOLOGIES
from ._workload import Layer as Layer
from ._workload import Topology as Topology
from ._workload import conv as conv
from ._workload import gemm as gemm
from ._workload import load_topology as load_topology
from ._workload import parse_topology as parse_topology
from ._workload import read_topology as read_topology
