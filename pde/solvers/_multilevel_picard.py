"""``MultilevelPicard``: the classical (non-DNN) competitor as a ``pde.solve`` method."""

from __future__ import annotations

import equinox as eqx

from ._base import AbstractMethod, check_positive_int


class MultilevelPicard(AbstractMethod):
    """Full-history recursive multilevel Picard approximation of u(0, x0) (no training).

    E, Hutzenthaler, Jentzen, Kruse (2019); Hutzenthaler, Jentzen, Kruse, Nguyen, von Wurstemberger
    (2020). Cost grows like ``base ** level`` samples; ``level`` 4-6 is the practical range on a CPU.

    Args:
        level: recursion depth n.
        base: Monte Carlo base M (default: ``level``).
        repeats: independent repetitions; the value is their mean and the spread gives a
            standard error (``stats["stderr"]``).
    """

    level: int = eqx.field(default=4, static=True)
    base: int | None = eqx.field(default=None, static=True)
    repeats: int = eqx.field(default=1, static=True)

    def __check_init__(self):
        check_positive_int(self.level, "level")
        check_positive_int(self.base, "base", allow_none=True)
        check_positive_int(self.repeats, "repeats")

    def run(self, problem, *, key, steps, parallel, progress, callbacks):
        from .._picard import multilevel_picard

        ref = multilevel_picard(
            problem, problem.x0, key=key, level=self.level, base=self.base, repeats=self.repeats
        )
        return ref.value, None, None, {"stderr": float(ref.stderr), "level": self.level}
