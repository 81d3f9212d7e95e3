"""Array types of the discovery package (jaxtyping), kept in one place."""

from jaxtyping import Array, Float

Data = Float[Array, "n_rows n_vars"]
"""Inputs: one row per sample, one column per variable."""

Values = Float[Array, " n_rows"]
"""One value per row (targets or predictions)."""

Constants = Float[Array, " n_constants"]
"""Values of the free constants ``c0, c1, ...`` of one expression."""

BatchConstants = Float[Array, "K n_constants"]
"""One constant vector per candidate."""

BatchValues = Float[Array, "K n_rows"]
"""One row of predictions per candidate."""
