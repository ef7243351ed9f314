"""Run per-block tasks on whatever dask scheduler is active, a few blocks at a time.

One place for the block loop shared by the movie writer and the localizer: tasks are built lazily
per block and computed in groups as large as the scheduler's parallelism (local cores, or the
threads of a dask.distributed cluster), so blocks run in parallel, memory stays at a few blocks,
and progress can be reported after every group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from typing import Any

import dask
import numpy as np


def frame_blocks(chunks_t: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(index, t0, t1)`` of each frame block, from a dask array's chunk sizes along T."""
    edges = np.cumsum((0, *chunks_t))
    return [(i, int(a), int(b)) for i, (a, b) in enumerate(pairwise(edges))]


def parallelism() -> int:
    """Blocks to keep in flight: the distributed cluster's thread count if a client is active, else
    the local core count (at least 2, at most 8)."""
    try:
        from distributed import default_client

        return max(2, sum(default_client().nthreads().values()))
    except (ImportError, ValueError):
        return max(2, min(8, os.cpu_count() or 2))


def compute_blocks(
    make_task: Callable[[int, int, int], Any], blocks: Sequence[tuple[int, int, int]], in_flight: int | None = None
) -> Iterator[tuple[tuple[int, int, int], Any]]:
    """Yield ``((index, t0, t1), result)`` in block order, where ``make_task(index, t0, t1)`` returns a
    dask.delayed task for the frames ``[t0, t1)``; groups of ``in_flight`` tasks are computed together."""
    size = in_flight or parallelism()
    for start in range(0, len(blocks), size):
        group = blocks[start : start + size]
        results = dask.compute(*(make_task(*block) for block in group))
        yield from zip(group, results, strict=True)
