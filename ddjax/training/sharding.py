"""Devices: one mesh over every device of every host, data parallel on axis 'data'.

The batch's leading axis is sharded over 'data'; parameters and optimiser state are
replicated, or with ``fsdp=True`` each large array is sharded along its largest axis
that the device count divides (XLA inserts the all-gathers). Every process feeds its
own slice of the global batch (:func:`put_batch`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "make_mesh",
    "batch_sharding",
    "replicated",
    "state_sharding",
    "put_batch",
    "put_replicated",
    "multi_process_env",
    "maybe_initialize_distributed",
]

DATA_AXIS = "data"
_FSDP_MIN_SIZE = 2**18


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named 'data' over ``devices`` (default: all devices of all processes)."""
    devs = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devs), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over 'data', the rest replicated."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, P())


def _leaf_sharding(mesh: Mesh, x: Any, fsdp: bool) -> NamedSharding:
    n = mesh.shape[DATA_AXIS]
    shape = getattr(x, "shape", ())
    if not fsdp or n == 1 or int(np.prod(shape, dtype=np.int64)) < _FSDP_MIN_SIZE:
        return replicated(mesh)
    axes = sorted(range(len(shape)), key=lambda i: -shape[i])
    for i in axes:
        if shape[i] % n == 0:
            spec = [None] * len(shape)
            spec[i] = DATA_AXIS
            return NamedSharding(mesh, P(*spec))
    return replicated(mesh)


def state_sharding(mesh: Mesh, tree: Any, fsdp: bool = False) -> Any:
    """A sharding for every leaf of ``tree``: replicated, or FSDP-style with ``fsdp``."""
    return jax.tree.map(lambda x: _leaf_sharding(mesh, x, fsdp), tree)


def put_batch(batch: Any, mesh: Mesh) -> Any:
    """This process's rows of the global batch -> global arrays sharded over 'data'.

    Every process passes its own local rows (global batch / process count of them);
    the global batch size must be divisible by the number of devices.
    """
    sh = batch_sharding(mesh)
    n = mesh.shape[DATA_AXIS]

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        total = x.shape[0] * jax.process_count()
        if total % n:
            raise ValueError(
                f"the global batch ({total} rows) must be divisible by the number of "
                f"devices ({n}); change the batch size"
            )
        return jax.make_array_from_process_local_data(sh, x)

    return jax.tree.map(put, batch)


def put_replicated(tree: Any, mesh: Mesh, fsdp: bool = False) -> Any:
    """Places a pytree of host or device arrays with :func:`state_sharding`."""
    return jax.device_put(tree, state_sharding(mesh, tree, fsdp))


def multi_process_env() -> bool:
    """True when the environment describes a multi-process launch (SLURM with several
    tasks, Open MPI, a multi-host TPU slice, or ``JAX_COORDINATOR_ADDRESS``)."""
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in env:
        return True
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return True
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts


def maybe_initialize_distributed(mode: str = "auto") -> bool:
    """Calls ``jax.distributed.initialize()`` when asked ('yes') or detected ('auto').

    JAX reads the coordinator, process count and id from the cluster environment
    (SLURM, Open MPI, Cloud TPU, Kubernetes) or from ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Must run before any other JAX call
    touches the devices. Returns whether it initialised.
    """
    if mode not in ("auto", "yes", "no"):
        raise ValueError(f"distributed must be auto, yes or no, got {mode!r}")
    if mode == "no" or (mode == "auto" and not multi_process_env()):
        return False
    kwargs: dict[str, Any] = {}
    env = os.environ
    if env.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = int(env["JAX_NUM_PROCESSES"])
    if env.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True
