"""Hardware simulators built on the sciml backend.

:mod:`hwsim.systolic`: a systolic-array cycle model (output, weight and input stationary dataflows)
compatible with SCALE-Sim v3, with its topology and config readers.
:mod:`hwsim.photonic`: MZI meshes (Clements, Reck) with noise, loss and phase-DAC models.
"""

from . import photonic as photonic
from . import systolic as systolic
