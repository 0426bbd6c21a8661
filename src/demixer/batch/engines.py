"""Where batch items run: a local process pool, or Ray actors on a cluster.

Both take ``(input, outputs)`` pairs and yield one record per item as items finish. The model
is loaded once per worker (process or actor), never per item.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ..errors import DemixerError
from .worker import Worker, init_worker, process_one

Item = tuple[str, dict[str, str]]


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def run_local(items: list[Item], options: dict[str, Any], workers: int) -> Iterator[dict[str, Any]]:
    """A process pool on this machine (one worker: in this process)."""
    if workers <= 1:
        init_worker(options, _threads_per_worker(1))
        for path, outputs in items:
            yield process_one(path, outputs)
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("spawn"),
        initializer=init_worker,
        initargs=(options, _threads_per_worker(workers), os.getpid()),  # workers die with this process
    ) as pool:
        futures = [pool.submit(process_one, path, outputs) for path, outputs in items]
        for future in as_completed(futures):
            yield future.result()


def run_ray(items: list[Item], options: dict[str, Any], workers: int, address: str | None) -> Iterator[dict[str, Any]]:
    """Ray actors that keep the model loaded; GPU actors when the cluster has GPUs.

    ``address``: a running cluster (``ray start --head`` prints it); ``None`` starts a local one.
    Inputs and the output folder must be reachable from every node (a shared file system).
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise DemixerError("the ray engine needs Ray: pip install 'demixer[ray]'") from None
    try:
        ray.init(
            address=address,
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except Exception as exc:  # connection refused, version mismatch, ...
        raise DemixerError(
            f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: {exc} "
            "(a cluster with token authentication needs RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN)"
        ) from None
    try:
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0.0)
        cpus = resources.get("CPU", 1.0)
        workers = max(1, workers)
        per_cpu = max(1, int(cpus // workers))
        actor_cls = ray.remote(num_cpus=per_cpu, num_gpus=1 if gpus >= workers else 0)(Worker)
        actors = [actor_cls.remote(options, per_cpu) for _ in range(workers)]
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda actor, item: actor.process.remote(*item), items)
    finally:
        ray.shutdown()
