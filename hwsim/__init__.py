"""Hardware simulators built on the sciml backend.

:mod:`hwsim.systolic`: a systolic-array cycle model (output, weight and input stationary dataflows)
compatible with SCALE-Sim v3, with its topology and config readers.
"""

from . import systolic as systolic
