"""Systolic-array simulator: an analytic cycle model compatible with SCALE-Sim v3.

Workloads are GEMMs (:func:`gemm`), convolutions lowered to GEMM (:func:`conv`, which keeps the
convolution's :class:`ConvGeometry` for the memory model) and networks
(:class:`Topology`, read from SCALE-Sim's CSV files by :func:`read_topology` or shipped with the
package, :func:`load_topology`). :func:`simulate` maps them onto a :class:`SystolicArray` with a
dataflow (:class:`OutputStationary`, :class:`WeightStationary`, :class:`InputStationary`, subclasses
of :class:`AbstractDataflow`) and returns a :class:`SimulationResult`; with a :class:`Memory` it also
models the double-buffered SRAMs and DRAM (:class:`MemoryResult`). SCALE-Sim's ``.cfg`` files are
read by :func:`read_config`.

:func:`functional_matmul` runs an int8 GEMM cycle by cycle through the simulated PE grid (bit-exact,
same cycle count as :func:`simulate`). Sparse weights: formats (:class:`Dense`, :class:`Bitmap`,
:class:`CSR`, :class:`CSC`, :class:`NM`) with :func:`compress` / :func:`decompress`,
:func:`sparse_on_dense_matmul`, the compressed traffic of a layer (:func:`layer_traffic`) and an
equal-area comparison of a dense array with a decompressor against sparse PEs
(:func:`compare_designs`, :class:`EnergyTable`).
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
from ._functional import FunctionalResult as FunctionalResult
from ._functional import functional_matmul as functional_matmul
from ._memory import Memory as Memory
from ._memory import MemoryResult as MemoryResult
from ._memory import conv_ifmap_words as conv_ifmap_words
from ._memory import topology_ifmap_words as topology_ifmap_words
from ._simulate import SimulationResult as SimulationResult
from ._simulate import simulate as simulate
from ._sparse import CSC as CSC
from ._sparse import CSR as CSR
from ._sparse import FORMATS as FORMATS
from ._sparse import NM as NM
from ._sparse import AbstractDesign as AbstractDesign
from ._sparse import AbstractFormat as AbstractFormat
from ._sparse import Bitmap as Bitmap
from ._sparse import Compressed as Compressed
from ._sparse import Decompressor as Decompressor
from ._sparse import Dense as Dense
from ._sparse import DenseDecompressDesign as DenseDecompressDesign
from ._sparse import DesignReport as DesignReport
from ._sparse import EnergyTable as EnergyTable
from ._sparse import SparsePEDesign as SparsePEDesign
from ._sparse import Traffic as Traffic
from ._sparse import compare_designs as compare_designs
from ._sparse import compress as compress
from ._sparse import decompress as decompress
from ._sparse import is_nm_sparse as is_nm_sparse
from ._sparse import layer_traffic as layer_traffic
from ._sparse import prune_nm as prune_nm
from ._sparse import sparse_on_dense_matmul as sparse_on_dense_matmul
from ._workload import TOPOLOGIES as TOPOLOGIES
from ._workload import ConvGeometry as ConvGeometry
from ._workload import Layer as Layer
from ._workload import Topology as Topology
from ._workload import conv as conv
from ._workload import gemm as gemm
from ._workload import load_topology as load_topology
from ._workload import parse_topology as parse_topology
from ._workload import read_topology as read_topology
