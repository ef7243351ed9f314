"""Dask schedulers: a 2-process LocalCluster writes exactly what the single-process run writes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from smlmdn.camera import Camera, to_photons
from smlmdn.cluster import dask_scheduler
from smlmdn.errors import SmlmdnError
from smlmdn.io import open_movie, write_movie


@pytest.mark.slow
def test_local_cluster_output_equals_single_process(tmp_path: Path, small_movie: np.ndarray) -> None:
    tifffile.imwrite(
        tmp_path / "movie.tif", small_movie
    )  # a real file: the graph must ship to workers without file handles
    photons = to_photons(open_movie(tmp_path / "movie.tif", block_frames=3), Camera())
    with dask_scheduler("synchronous"):
        write_movie(photons, tmp_path / "single.zarr", progress=False)
    with dask_scheduler("local", workers=2) as client:
        assert client is not None and len(client.nthreads()) == 2
        write_movie(photons, tmp_path / "cluster.zarr", progress=False)
    np.testing.assert_array_equal(
        open_movie(tmp_path / "cluster.zarr").compute(), open_movie(tmp_path / "single.zarr").compute()
    )


def test_bad_scheduler_names() -> None:
    with pytest.raises(SmlmdnError, match="unknown scheduler"), dask_scheduler("gpu-farm"):
        pass
    with pytest.raises(SmlmdnError, match="unknown cluster type"), dask_scheduler(cluster="lsf"):
        pass


def _allocator_state() -> tuple[bool, str | None]:
    import os

    from smlmdn.parallel import tune_worker_allocator

    return tune_worker_allocator(), os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.mark.slow  # starts a dask worker process: ~4 s
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_worker_allocator_is_tuned_in_dask_workers_only() -> None:
    # dask's nanny sets MALLOC_TRIM_THRESHOLD_ in every worker, which makes glibc map every large buffer anew
    from smlmdn.parallel import tune_worker_allocator

    assert tune_worker_allocator() is False  # not a worker: the process's allocator is left alone
    with dask_scheduler("local", workers=1) as client:
        tuned, trim = client.submit(_allocator_state, pure=False).result()
    assert trim is not None and tuned is True


@pytest.mark.parametrize("chunks", [(5, 6, 7), (2, 6, 7), (2, 4, 3)])
def test_delayed_array_computes_the_array_whatever_its_chunks(chunks: tuple[int, int, int]) -> None:
    import dask
    import dask.array as da

    from smlmdn.parallel import delayed_array

    values = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    arr = da.from_array(values, chunks=chunks)[1:4]
    out = dask.compute(delayed_array(arr), scheduler="sync")[0]
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, values[1:4])


@pytest.mark.parametrize("scheduler", ["threads", "processes", "synchronous"])
def test_local_schedulers_are_set_as_dask_functions(scheduler: str) -> None:
    # by name, dask would import dask.distributed to look for a client on every compute
    import dask
    import dask.base

    with dask_scheduler(scheduler):
        assert dask.config.get("scheduler") is dask.base.named_schedulers[scheduler]
