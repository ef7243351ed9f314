"""Invariants checked on many generated inputs (hypothesis): frame blocks partition a movie, ADU and
photons convert both ways, and every output format gives a localization table back."""

from __future__ import annotations

import tempfile
from itertools import pairwise
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smlmdn.camera import Camera, from_photons, to_photons
from smlmdn.localize import LOC_COLUMNS, empty_table, read_localizations, write_localizations
from smlmdn.parallel import frame_blocks

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_frame_blocks_partition_the_movie_in_order(chunks: list[int]) -> None:
    blocks = frame_blocks(chunks)
    assert [b[0] for b in blocks] == list(range(len(chunks)))
    assert blocks[0][1] == 0 and blocks[-1][2] == sum(chunks)
    for (_, _, end), (_, start, _) in pairwise(blocks):
        assert end == start  # no gap, no overlap
    assert [t1 - t0 for _, t0, t1 in blocks] == chunks


cameras = st.builds(
    Camera,
    offset=st.floats(0, 1000),
    e_per_adu=st.floats(0.05, 20),
    em_gain=st.one_of(st.just(1.0), st.floats(2, 500)),
    read_noise=st.floats(0, 60),
)


@FAST
@given(cameras, st.integers(0, 2**32 - 1))
def test_photons_to_adu_and_back_is_the_identity(camera: Camera, seed: int) -> None:
    photons = np.random.default_rng(seed).gamma(2.0, 50.0, (3, 5, 4)).astype(np.float32)
    adu = from_photons(da.from_array(photons), camera, dtype=np.float64)
    back = to_photons(adu, camera).compute()
    np.testing.assert_allclose(back, photons, rtol=1e-4, atol=1e-3 * camera.e_per_adu / camera.em_gain)


@st.composite
def loc_tables(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = empty_table().reindex(range(n))
    floats = [c for c in LOC_COLUMNS if table[c].dtype.kind == "f"]
    for c in floats:
        table[c] = rng.uniform(1.0, 5000.0, n)
    table["frame"] = np.sort(rng.integers(0, 10_000, n))
    table["iterations"] = rng.integers(1, 50, n).astype(np.int32)
    table["saturated"] = rng.random(n) < 0.2
    table["track"] = rng.integers(0, n + 1, n)
    table["n_track"] = rng.integers(1, 6, n)
    table["p_value"] = table["p_frame"] = rng.uniform(0, 1, n)
    return table.astype(empty_table().dtypes.to_dict())


@FAST
@given(loc_tables(), st.sampled_from([".csv", ".hdf5", ".parquet"]))
def test_every_format_round_trips_a_localization_table(locs: pd.DataFrame, suffix: str) -> None:
    camera = Camera(pixel_size=100.0)
    with tempfile.TemporaryDirectory() as tmp:
        back = read_localizations(write_localizations(locs, Path(tmp) / f"locs{suffix}", camera))
    assert list(back.columns) == list(LOC_COLUMNS) and len(back) == len(locs)
    assert list(back.frame) == list(locs.frame) and list(back.saturated) == list(locs.saturated)
    # HDF5 stores Picasso's float32 pixels; the others keep float64 nm
    rtol = 1e-6 if suffix == ".hdf5" else 1e-9
    for c in ("x_nm", "y_nm", "photons", "crlb_x_nm", "p_value"):
        np.testing.assert_allclose(back[c], locs[c], rtol=rtol, err_msg=c)
