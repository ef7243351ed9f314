"""Choose where dask computes.

Local threads/processes, an existing dask.distributed scheduler, or a SLURM/PBS cluster through
dask-jobqueue. Creating the client is all this module does: smlmdn never schedules work itself,
it builds dask graphs and lets the active scheduler run them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import dask
from dask.base import named_schedulers

from .errors import SmlmdnError

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


def _need_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise SmlmdnError(
            "dask.distributed is not installed", "pip install 'smlmdn[cluster]' (distributed, dask-jobqueue)"
        ) from exc
    return distributed


@contextmanager
def dask_scheduler(
    scheduler: str = "threads",
    cluster: str | None = None,
    workers: int = 2,
    worker_memory: str = "16GB",
    worker_gpus: int = 0,
    worker_cores: int = 4,
    walltime: str = "04:00:00",
) -> Iterator[Any]:
    """Make ``scheduler`` the active dask scheduler inside the ``with`` block; yield the Client or None.

    ``scheduler``: ``threads`` (default), ``processes``, ``synchronous``, ``local`` (a
    ``distributed.LocalCluster`` of ``workers`` single-threaded processes) or an address such as
    ``tcp://host:8786`` of a running dask.distributed scheduler. ``cluster``: ``slurm`` or ``pbs``
    starts ``workers`` jobs through dask-jobqueue with ``worker_cores`` cores, ``worker_memory`` and
    ``worker_gpus`` GPUs each (declared as the worker resource ``GPU``); ``scheduler`` is then ignored.
    """
    if cluster is None and scheduler in LOCAL_SCHEDULERS:
        # dask's function rather than its name: dask looks for a distributed client (importing dask.distributed,
        # 0.2 s) whenever the scheduler is given by name
        with dask.config.set(scheduler=named_schedulers[scheduler]):
            yield None
        return
    if cluster is None and scheduler != "local" and "://" not in scheduler:
        raise SmlmdnError(
            f"unknown scheduler {scheduler!r}",
            "use threads, processes, synchronous, local, or an address like tcp://host:8786",
        )
    distributed = _need_distributed()
    with ExitStack() as stack:
        if cluster is not None:
            job = _jobqueue_cluster(cluster, workers, worker_memory, worker_gpus, worker_cores, walltime)
            stack.enter_context(job)
            job.scale(jobs=workers)
            client = stack.enter_context(distributed.Client(job))
        elif scheduler == "local":
            local = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
                )
            )
            client = stack.enter_context(distributed.Client(local))
        else:  # the address of a running dask.distributed scheduler
            try:
                client = stack.enter_context(distributed.Client(scheduler, timeout="20s"))
            except (OSError, TimeoutError) as exc:
                raise SmlmdnError(
                    f"cannot reach the dask scheduler at {scheduler} ({exc})",
                    "check the address and that the scheduler runs",
                ) from exc
        yield client


def _jobqueue_cluster(kind: str, workers: int, memory: str, gpus: int, cores: int, walltime: str) -> Any:
    if kind not in ("slurm", "pbs"):
        raise SmlmdnError(f"unknown cluster type {kind!r}", "use --cluster slurm or --cluster pbs")
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise SmlmdnError("dask-jobqueue is not installed", "pip install 'smlmdn[cluster]'") from exc
    classes = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
    extra: dict[str, Any] = {}
    if gpus:
        extra["worker_extra_args"] = ["--resources", f"GPU={gpus}"]
        extra["job_extra_directives"] = [f"--gres=gpu:{gpus}"] if kind == "slurm" else [f"-l ngpus={gpus}"]
    # Site defaults (queue, account, interface) come from the user's dask-jobqueue config file.
    return classes[kind](cores=cores, processes=1, memory=memory, walltime=walltime, **extra)
