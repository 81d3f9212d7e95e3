"""Multi-host training through JAX's own engine (``jax.distributed``)."""

from __future__ import annotations

import jax


def initialize_distributed(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    cpu_collectives: str | None = "gloo",
    local_device_ids: list[int] | None = None,
) -> None:
    """Join a multi-process JAX run (one call per process, before any other JAX work).

    A thin wrapper over ``jax.distributed.initialize`` that validates its arguments and, for CPU runs,
    selects a collectives implementation (gloo) so that cross-process reductions work without GPUs.
    After it, ``jax.devices()`` lists every process's devices and
    ``fit(..., parallel="sharded")`` trains data-parallel over all of them, each process passing its
    local share of every batch.

    Args:
        coordinator_address: ``"host:port"`` of process 0.
        num_processes: total number of processes.
        process_id: this process's index in ``0..num_processes-1``.
        cpu_collectives: ``"gloo"`` (default), ``"mpi"`` or None to leave JAX's default.
        local_device_ids: restrict this process to some of its local devices.

    Raises:
        ValueError: malformed address or inconsistent ids.
    """
    if not isinstance(coordinator_address, str) or ":" not in coordinator_address:
        raise ValueError(
            f"`coordinator_address` must be 'host:port', got {coordinator_address!r}"
        )
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"`num_processes` must be a positive int, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) or not (
        0 <= process_id < num_processes
    ):
        raise ValueError(
            f"`process_id` must be an int in 0..{num_processes - 1}, got {process_id!r}"
        )
    choices = (None, "gloo", "mpi")
    if cpu_collectives not in choices:
        raise ValueError(f"`cpu_collectives` must be one of {list(choices)}, got {cpu_collectives!r}")
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )


def shutdown_distributed() -> None:
    """Leave the multi-process run (``jax.distributed.shutdown``)."""
    jax.distributed.shutdown()
