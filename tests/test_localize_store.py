"""Block tables and per-track arrays held in memory or in temporary files: the same values back, the files removed on close."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from smlmdn.camera import to_photons
from smlmdn.localize import LocalizeSettings, localize, localize_movie_blocks, store
from smlmdn.localize.store import BlockStore, DiskArrays
from smlmdn.simulate import SimulationParams, simulate


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"frame": rng.integers(0, 9, n), "x_nm": rng.normal(size=n), "ok": rng.random(n) < 0.5})


def test_tables_come_back_equal_from_memory_and_from_files() -> None:
    tables = [_table(n, i) for i, n in enumerate([50, 0, 400, 7])]
    with BlockStore(memory_bytes=1000) as held:  # the first table fits in memory, the others go to files
        for tab in tables:
            held.append(tab)
        assert held.n_rows == 457
        # 850 + 0 + 6,800 + 119 bytes: the third table does not fit
        assert [isinstance(t, Path) for t in held._items] == [False, False, True, False]
        folder = held._items[2].parent  # type: ignore[union-attr]
        for i, tab in enumerate(tables):
            pd.testing.assert_frame_equal(held[i], tab)
        held[0] = tables[1]  # room made: the replaced table comes back into memory, its file removed
        held[2] = tables[3]
        assert not any(isinstance(t, Path) for t in held._items) and not any(folder.iterdir())
        pd.testing.assert_frame_equal(held[2], tables[3])
        assert len(held) == 4 and held.n_rows == 0 + 0 + 7 + 7
    assert not folder.exists()


def test_localizations_equal_when_every_block_goes_to_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks written to temporary files give the table held in memory; the blocks read one by one stack to it."""
    sim = simulate(SimulationParams.preset("medium", frames=300, size=32, seed=5))
    photons = to_photons(sim.movie, sim.camera)
    in_memory = localize(da.from_array(photons, chunks=(128, -1, -1)), sim.camera, progress=False)
    monkeypatch.setattr(store, "MEMORY_BYTES", 0)
    on_disk = localize(da.from_array(photons, chunks=(128, -1, -1)), sim.camera, progress=False)
    assert len(in_memory) > 20 and in_memory["extended"].any()
    pd.testing.assert_frame_equal(on_disk, in_memory)
    assert on_disk.attrs == in_memory.attrs
    made: list[tempfile.TemporaryDirectory[str]] = []  # every temporary folder of the run: the stores' and the tracks'
    folder = tempfile.TemporaryDirectory
    monkeypatch.setattr(store.tempfile, "TemporaryDirectory", lambda *a, **k: made.append(folder(*a, **k)) or made[-1])
    with localize_movie_blocks(da.from_array(photons, chunks=(128, -1, -1)), sim.camera, LocalizeSettings()) as run:
        blocks = list(run.blocks())
        assert len(blocks) == 3 and run.n_rows == len(in_memory) and run.attrs == in_memory.attrs
        stacked = pd.concat(blocks, ignore_index=True)
        # candidates, the linker's arrays (removed once linked), the tracks, the extension's tests
        assert [Path(d.name).exists() for d in made] == [True, False, True, True]
    pd.testing.assert_frame_equal(stacked, in_memory)
    assert not any(Path(d.name).exists() for d in made)  # all removed on leaving


def test_disk_arrays_keep_what_was_written_between_mappings() -> None:
    arrays = DiskArrays(1000, {"n": np.int32, "xy": (np.float64, (2,))})
    folder = arrays._path("n").parent
    with arrays:
        with arrays.mapped() as a:
            assert a["n"].shape == (1000,) and a["xy"].shape == (1000, 2)
            assert not a["n"].any() and not a["xy"].any()  # zeros at first
            a["n"][[3, 999]] = 7
            a["xy"][5] = (1.5, -2.0)
        with arrays.mapped("xy") as a:  # only the arrays named
            assert list(a) == ["xy"]
            np.testing.assert_array_equal(a["xy"][[4, 5]], [[0.0, 0.0], [1.5, -2.0]])
        with arrays.mapped("n") as a:
            assert a["n"].sum() == 14
        assert folder.exists()
    assert not folder.exists()
    with DiskArrays(0, {"n": np.int64}) as empty, empty.mapped() as a:
        assert a["n"].shape == (0,)


def test_disk_median_is_numpys_nanmedian_whatever_the_chunk() -> None:
    """Exact: ties, NaN, infinities, a wide range, all equal, two neighbouring floats; chunks smaller than the values near the median."""
    rng = np.random.default_rng(5)
    for n in [1, 2, 3, 10, 2001]:
        base = rng.normal(8.0, 2.0, n)
        infinite = np.where(rng.random(n) < 0.3, np.inf, np.where(rng.random(n) < 0.3, -np.inf, base))
        adjacent = np.where(rng.random(n) < 0.5, 3.25, np.nextafter(3.25, 9))  # no finer bins between them
        two_far = np.where(rng.random(n) < 0.5, -1e6, 1e6) + base  # the middle ranks in bins far apart
        for values in (
            base,
            np.round(base),
            np.full(n, 3.25),
            np.exp(rng.normal(0, 9, n)),
            np.where(base > 9, np.nan, base),
            infinite,
            adjacent,
            two_far,
        ):
            with DiskArrays(n, {"p": np.float64}) as disk:
                with disk.mapped() as a:
                    a["p"][:] = values
                with np.errstate(invalid="ignore"):  # -inf and inf in the middle: numpy's NaN
                    want = float("nan") if np.isnan(values).all() else float(np.nanmedian(values))
                for chunk in (3, 64, 2**20):
                    got = disk.nanmedian("p", chunk)
                    assert got == want or (np.isnan(got) and np.isnan(want)), (n, chunk)
    with DiskArrays(4, {"p": np.float64}) as disk:
        with disk.mapped() as a:
            a["p"][:] = np.nan
        assert np.isnan(disk.nanmedian("p"))
