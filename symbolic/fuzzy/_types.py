"""Array types of the fuzzy package (jaxtyping), kept in one place."""

from jaxtyping import Array, Bool, Float

Truth = Float[Array, "*shape"]
"""Truth values in [0, 1]."""

Mask = Bool[Array, "*shape"]
"""A guard: True where an element takes part in an aggregation."""
