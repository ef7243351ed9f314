"""Run per-block tasks on whatever dask scheduler is active, a few blocks at a time.

One place for the block loop shared by the movie writer and the localizer: tasks are built lazily
per block and as many run at once as the scheduler has threads (local cores, or the threads of a
dask.distributed cluster), a new one starting as soon as one ends, so blocks run in parallel, memory
stays at a few blocks, and progress is reported after every block.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice, pairwise
from typing import TYPE_CHECKING, Any

import dask
import dask.local
import dask.threaded
import numpy as np

if TYPE_CHECKING:
    import dask.array as da


def frame_blocks(chunks_t: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(index, t0, t1)`` of each frame block, from a dask array's chunk sizes along T."""
    edges = np.cumsum((0, *chunks_t))
    return [(i, int(a), int(b)) for i, (a, b) in enumerate(pairwise(edges))]


def in_frame_blocks(arr: da.Array, frames: int | tuple[int, ...]) -> da.Array:
    """Return ``arr`` (T, ...) with blocks of ``frames`` frames along T (an int, or the block sizes), whole along the rest.

    Splitting and joining along T only, so the plain task-graph rechunk is always the right one (named,
    so that dask does not look for a dask.distributed cluster to weigh a peer-to-peer rechunk).
    """
    return arr.rechunk((frames, *arr.shape[1:]), method="tasks")


def parallelism() -> int:
    """Return the number of blocks to keep in flight.

    The distributed cluster's thread count if a client is active, else the local core count (at
    least 2, at most 8).
    """
    client = _client()
    if client is not None:
        return max(2, sum(client.nthreads().values()))
    return max(2, min(8, os.cpu_count() or 2))


def compute_blocks(
    make_task: Callable[[int, int, int], Any], blocks: Sequence[tuple[int, int, int]], in_flight: int | None = None
) -> Iterator[tuple[tuple[int, int, int], Any]]:
    """Yield ``((index, t0, t1), result)`` in block order.

    ``make_task(index, t0, t1)`` returns a dask.delayed task for the frames ``[t0, t1)``. At most
    ``in_flight`` (default :func:`parallelism`) tasks run at once and the next starts as soon as one
    ends: on dask's threads scheduler (the default) each in a pool of that many threads, on a
    dask.distributed client as futures; other schedulers (processes, synchronous) compute groups of
    ``in_flight`` tasks together. At most ``2 in_flight`` results wait to be yielded.
    """
    size = in_flight or parallelism()
    client = _client()
    if client is not None:
        yield from _sliding(client.compute, blocks, make_task, size)
        return
    if dask.base.get_scheduler() not in (None, dask.threaded.get):
        for start in range(0, len(blocks), size):
            group = blocks[start : start + size]
            yield from zip(group, dask.compute(*(make_task(*block) for block in group)), strict=True)
        return
    with ThreadPoolExecutor(size, thread_name_prefix="smlmdn-block") as pool:
        try:
            yield from _sliding(lambda task: pool.submit(_compute_here, task), blocks, make_task, size)
        finally:
            pool.shutdown(cancel_futures=True)


def _sliding(
    submit: Callable[[Any], Future], blocks: Sequence[tuple[int, int, int]], make_task: Callable, size: int
) -> Iterator[tuple[tuple[int, int, int], Any]]:
    """Submit ``2 size`` tasks ahead, yield their results in block order, submitting one more per result."""
    todo = iter(blocks)
    pending = deque((block, submit(make_task(*block))) for block in islice(todo, 2 * size))
    while pending:
        block, future = pending.popleft()
        result = future.result()
        for nxt in islice(todo, 1):
            pending.append((nxt, submit(make_task(*nxt))))
        yield block, result


def _compute_here(task: Any) -> Any:
    """Compute a dask task in the calling thread (one of :func:`compute_blocks`'s pool)."""
    return dask.compute(task, scheduler=dask.local.get_sync)[0]


def delayed_array(arr: da.Array) -> Any:
    """Return a dask.delayed object that computes ``arr`` into one numpy array: a block task's argument.

    ``dask.delayed(f)(arr)`` works too, but dask then wraps the array's graph in ``ProhibitReuse``,
    whose graph imports dask.distributed (0.2 s of a command's start-up) even where no cluster is used;
    the array's chunks as delayed objects, joined in the task, do not. Each call's graph is optimised on
    its own: two arrays passed this way do not share the tasks they have in common (a list of arrays
    given to one ``dask.delayed`` does), so the movie writer, whose outputs share the denoiser's work,
    passes its arrays as they are.
    """
    return dask.delayed(_join_chunks)(arr.to_delayed().tolist())


def _join_chunks(parts: list) -> np.ndarray:
    """Join the nested list of chunks :func:`delayed_array` passes (``np.block``), without a copy for one chunk."""
    while isinstance(parts, list) and len(parts) == 1:
        parts = parts[0]
    return parts if isinstance(parts, np.ndarray) else np.block(parts)


def _client() -> Any:
    """Return the active dask.distributed client, or None (without importing distributed when it is not loaded)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


#: glibc malloc settings for dask.distributed worker processes (see :func:`tune_worker_allocator`): buffers up
#: to 32 MB (glibc's largest mmap threshold) come from the heap and are reused; free memory above 64 MB at
#: the heap's top is still returned to the system.
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 64 * 2**20
_ALLOCATOR_TUNED: list[bool] = []


def tune_worker_allocator() -> bool:
    """In a dask.distributed worker process, let glibc reuse large buffers instead of mapping them anew.

    The nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (dask's default, to return memory
    to the system). Setting any such variable makes glibc stop adapting its mmap threshold, so every buffer
    over 128 kB -- each torch activation, each numpy temporary of a frame block -- is mapped, faulted in
    page by page and unmapped again on every call. Measured on one 256-frame 64 x 64 px denoise block
    (``benchmarks/scale.py``): 12.2 s of CPU time in a worker (7.1 s of it system time, 1.7 M page faults)
    against 3.4 s in the main process; with these settings 3.4 s. Raises the thresholds with ``mallopt`` once per process; does
    nothing (returns False) outside a worker, where that variable is not set, or without glibc.
    """
    if _ALLOCATOR_TUNED:
        return _ALLOCATOR_TUNED[0]
    done = False
    if sys.platform.startswith("linux") and "MALLOC_TRIM_THRESHOLD_" in os.environ and "distributed" in sys.modules:
        try:
            from distributed import get_worker

            get_worker()
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
            mmap_set = bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES))
            done = mmap_set and bool(libc.mallopt(m_trim_threshold, TRIM_THRESHOLD_BYTES))
        except (ImportError, ValueError, OSError, AttributeError):
            done = False
    _ALLOCATOR_TUNED.append(done)
    return done
