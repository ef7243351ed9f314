"""Coordinate conventions of every output format, with a single emitter at a known nm position."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from smlmdn.camera import Camera
from smlmdn.errors import SmlmdnError
from smlmdn.localize import (
    LOC_COLUMNS,
    empty_table,
    localize,
    read_localizations,
    write_localization_blocks,
    write_localizations,
)
from smlmdn.psf import integrated_gaussian

PIXEL_NM = 100.0
X_NM, Y_NM = 1234.0, 2345.0  # 12.34 px, 23.45 px: pixel (23, 12) covers [12, 13) x [23, 24)
CAMERA = Camera(read_noise=0.0, pixel_size=PIXEL_NM)


@pytest.fixture(scope="module")
def locs() -> pd.DataFrame:
    """A very bright single emitter at (X_NM, Y_NM) in 4 frames: fits land within ~1 nm."""
    rng = np.random.default_rng(0)
    mu = 2e5 * integrated_gaussian(X_NM / PIXEL_NM, Y_NM / PIXEL_NM, 1.3, (48, 40)) + 10.0
    movie = rng.poisson(np.broadcast_to(mu, (4, 48, 40))).astype(np.float32)
    out = localize(da.from_array(movie), CAMERA, progress=False)
    assert len(out) == 4
    return out


def test_fit_lands_on_the_known_position(locs: pd.DataFrame) -> None:
    assert np.abs(locs.x_nm - X_NM).max() < 2.0 and np.abs(locs.y_nm - Y_NM).max() < 2.0
    assert list(locs.frame) == [0, 1, 2, 3]


@pytest.mark.parametrize("suffix", [".csv", ".hdf5", ".parquet"])
def test_round_trip_keeps_positions_frames_and_columns(locs: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = write_localizations(locs, tmp_path / f"locs{suffix}", CAMERA, metadata={"movie": "m.tif"})

    back = read_localizations(path)

    assert list(back.columns) == list(LOC_COLUMNS)
    assert list(back.frame) == list(locs.frame)
    atol = 0.01 if suffix != ".hdf5" else 0.01 * PIXEL_NM / 100  # float32 pixels in HDF5
    np.testing.assert_allclose(back.x_nm, locs.x_nm, atol=atol)
    np.testing.assert_allclose(back.y_nm, locs.y_nm, atol=atol)
    np.testing.assert_allclose(back.photons, locs.photons, rtol=1e-5)
    np.testing.assert_allclose(back.crlb_x_nm, locs.crlb_x_nm, rtol=1e-5)
    # the acceptance test and the linked blink come back too
    np.testing.assert_allclose(back.p_value, locs.p_value, rtol=1e-6)
    assert list(back.track) == list(locs.track) and list(back.n_track) == [4] * 4 and not back.saturated.any()
    np.testing.assert_allclose(back.x_linked_nm, locs.x_linked_nm, atol=atol)
    np.testing.assert_allclose(back.crlb_linked_nm, locs.crlb_linked_nm, rtol=1e-5)
    assert back.attrs["movie"] == "m.tif" and "smlmdn_version" in back.attrs
    if suffix != ".hdf5":  # CSV (shortest exact decimals) and Parquet keep every float64 bit
        for c in ("x_nm", "photons", "p_value", "loglik", "crlb_linked_nm"):
            np.testing.assert_array_equal(back[c].to_numpy(), locs[c].to_numpy())


def test_csv_uses_thunderstorm_names_and_1_based_frames(locs: pd.DataFrame, tmp_path: Path) -> None:
    path = write_localizations(locs, tmp_path / "locs.csv", CAMERA)

    first_line = path.read_text().splitlines()[0]
    raw = pd.read_csv(path)

    assert first_line.startswith(
        "id,frame,x [nm],y [nm],sigma [nm],intensity [photon],offset [photon],bkgstd [photon],uncertainty [nm]"
    )
    assert list(raw["frame"]) == [1, 2, 3, 4] and list(raw["id"]) == [1, 2, 3, 4]
    assert '"' not in path.read_text() and ",False," in path.read_text().splitlines()[1]  # plain, as pandas wrote
    # ThunderSTORM's pixel origin is the pixel edge, like smlmdn's: nm values are written unchanged
    assert np.abs(raw["x [nm]"] - X_NM).max() < 2.0
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["camera"]["pixel_size"] == PIXEL_NM and "command" in provenance


def test_picasso_hdf5_structure_and_pixel_centre_convention(locs: pd.DataFrame, tmp_path: Path) -> None:
    """Checked against Picasso's documented locs dtype; Picasso's own reader: test_picasso_own_reader_opens_our_hdf5."""
    path = write_localizations(locs, tmp_path / "locs.hdf5", CAMERA)

    with h5py.File(path, "r") as f:
        rec = f["locs"][()]
    info = list(yaml.safe_load_all(path.with_suffix(".yaml").read_text()))

    for name, kind in [
        ("frame", "u4"),
        ("x", "f4"),
        ("y", "f4"),
        ("photons", "f4"),
        ("sx", "f4"),
        ("sy", "f4"),
        ("bg", "f4"),
        ("lpx", "f4"),
        ("lpy", "f4"),
    ]:
        assert rec.dtype[name] == np.dtype(kind), name
    # Picasso: pixel centres at integer coordinates -> the emitter at 12.34 px (edge origin) is at 11.84
    assert np.abs(rec["x"] - (X_NM / PIXEL_NM - 0.5)).max() < 0.02
    assert np.abs(rec["y"] - (Y_NM / PIXEL_NM - 0.5)).max() < 0.02
    assert list(rec["frame"]) == [0, 1, 2, 3]
    assert np.allclose(rec["lpx"], locs.crlb_x_nm / PIXEL_NM, rtol=1e-5)
    assert info[0]["Width"] == 40 and info[0]["Height"] == 48 and info[0]["Frames"] == 4
    assert info[0]["Pixelsize"] == PIXEL_NM


def test_parquet_carries_metadata(locs: pd.DataFrame, tmp_path: Path) -> None:
    path = write_localizations(locs, tmp_path / "locs.parquet", CAMERA)

    meta = json.loads(pq.read_schema(path).metadata[b"smlmdn"])

    assert (
        meta["camera"]["pixel_size"] == PIXEL_NM
        and meta["localization"]["n_candidates"] == locs.attrs["n_candidates"] >= 4
    )


def test_empty_table_round_trips(tmp_path: Path) -> None:
    for suffix in (".csv", ".hdf5", ".parquet"):
        back = read_localizations(write_localizations(empty_table(), tmp_path / f"e{suffix}", CAMERA))
        assert len(back) == 0 and list(back.columns) == list(LOC_COLUMNS)


def test_writes_refuse_existing_files_and_unknown_formats(locs: pd.DataFrame, tmp_path: Path) -> None:
    path = write_localizations(locs, tmp_path / "locs.hdf5", CAMERA)
    with pytest.raises(SmlmdnError, match="already exists"):
        write_localizations(locs, path, CAMERA)
    write_localizations(locs, path, CAMERA, overwrite=True)
    with pytest.raises(SmlmdnError, match="unknown localization format"):
        write_localizations(locs, tmp_path / "locs.xlsx", CAMERA)
    assert not list(tmp_path.glob("*.partial"))


def test_reads_a_plain_thunderstorm_csv(tmp_path: Path) -> None:
    """A CSV as ThunderSTORM exports it (no smlmdn columns, no side file): 1-based frames, nm, uncertainty_xy."""
    path = tmp_path / "ts.csv"
    path.write_text(
        "id,frame,x [nm],y [nm],sigma [nm],intensity [photon],offset [photon],bkgstd [photon],uncertainty_xy [nm]\n"
        "1,1,150.5,250.25,130.0,1000.0,10.0,3.2,5.5\n"
        "2,3,1000.0,2000.0,125.0,500.0,12.0,3.5,9.0\n"
    )

    locs = read_localizations(path)

    assert list(locs.columns) == list(LOC_COLUMNS)
    assert list(locs.frame) == [0, 2]
    assert list(locs.x_nm) == [150.5, 1000.0] and list(locs.crlb_y_nm) == [5.5, 9.0]
    assert locs.loglik.isna().all() and list(locs.iterations) == [-1, -1]


# ------------------------------------------------------------------------- round trips, exactly

FIELD_PX = 512  # a full sCMOS chip's worth of field: coordinates up to 51.2 µm


def _exact_table(locs: pd.DataFrame) -> pd.DataFrame:
    """``locs`` with positions spread over a 512-px field and many decimals, and frames far apart."""
    table = locs.copy()
    table["x_nm"] = [1234.56789, 25000.12345, 51111.98765, 57.00042]  # Picasso drops x < 0 (first half pixel)
    table["y_nm"] = [2345.67891, 49999.99999, 100.00049, 30000.5]
    table["frame"] = np.array([0, 1, 999, 123456], dtype=table["frame"].dtype)
    table.attrs = dict(locs.attrs, movie_shape=[123457, FIELD_PX, FIELD_PX])
    return table


@pytest.mark.parametrize("suffix", [".csv", ".hdf5", ".parquet"])
def test_round_trip_positions_to_a_thousandth_of_a_nm_frames_and_units(
    locs: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    """Every format gives back positions to 1e-3 nm over a 512-px field, the same frames, and values in
    the same units (nm, detected photons) whatever unit the file stores (Picasso: pixels)."""
    table = _exact_table(locs)
    path = write_localizations(table, tmp_path / f"locs{suffix}", CAMERA)

    back = read_localizations(path)

    np.testing.assert_allclose(back.x_nm, table.x_nm, rtol=0, atol=1e-3)
    np.testing.assert_allclose(back.y_nm, table.y_nm, rtol=0, atol=1e-3)
    assert list(back.frame) == list(table.frame)
    for col in ("sigma_nm", "crlb_x_nm", "crlb_y_nm", "photons", "bg"):  # nm stay nm, photons stay photons
        np.testing.assert_allclose(back[col], table[col], rtol=1e-6, err_msg=col)
    assert back.attrs["camera"]["pixel_size"] == PIXEL_NM


def test_files_state_their_units(locs: pd.DataFrame, tmp_path: Path) -> None:
    """ThunderSTORM's header names nm and photons; Picasso stores pixels with the pixel size beside them."""
    table = _exact_table(locs)
    csv = write_localizations(table, tmp_path / "l.csv", CAMERA)
    header = csv.read_text().splitlines()[0].split(",")
    assert {"x [nm]", "y [nm]", "sigma [nm]", "intensity [photon]", "uncertainty [nm]"} <= set(header)
    h5 = write_localizations(table, tmp_path / "l.hdf5", CAMERA)
    info = list(yaml.safe_load_all(h5.with_suffix(".yaml").read_text()))
    with h5py.File(h5, "r") as f:
        rec = f["locs"][()]
    assert info[0]["Pixelsize"] == PIXEL_NM and info[0]["Width"] == FIELD_PX and info[0]["Frames"] == 123457
    np.testing.assert_allclose(rec["x"], table.x_nm / PIXEL_NM - 0.5, rtol=0, atol=1e-5)  # pixels, centre origin


def test_picasso_own_reader_opens_our_hdf5(locs: pd.DataFrame, tmp_path: Path) -> None:
    """Picasso's ``picasso.io.load_locs`` (picassosr; installed in the benchmark environment) reads our file."""
    pio = pytest.importorskip("picasso.io")
    table = _exact_table(locs)
    path = write_localizations(table, tmp_path / "locs.hdf5", CAMERA)

    theirs, info = pio.load_locs(str(path))

    theirs = pd.DataFrame(theirs) if not isinstance(theirs, pd.DataFrame) else theirs
    assert list(theirs["frame"]) == list(table.frame)
    np.testing.assert_allclose((theirs["x"].to_numpy(np.float64) + 0.5) * PIXEL_NM, table.x_nm, rtol=0, atol=1e-3)
    np.testing.assert_allclose((theirs["y"].to_numpy(np.float64) + 0.5) * PIXEL_NM, table.y_nm, rtol=0, atol=1e-3)
    np.testing.assert_allclose(theirs["photons"], table.photons, rtol=1e-6)
    np.testing.assert_allclose(theirs["lpx"].to_numpy(np.float64) * PIXEL_NM, table.crlb_x_nm, rtol=1e-5)
    assert info[0]["Width"] == FIELD_PX and info[0]["Pixelsize"] == PIXEL_NM


def test_picasso_positions_changed_in_picasso_win_over_the_exact_nm_fields(locs: pd.DataFrame, tmp_path: Path) -> None:
    """A file Picasso rewrote after moving localizations (drift correction) keeps our stale x_nm/y_nm fields:
    the reader then takes Picasso's x/y."""
    path = write_localizations(_exact_table(locs), tmp_path / "locs.hdf5", CAMERA)
    with h5py.File(path, "r+") as f:
        rec = f["locs"][()]
        rec["x"] += 0.01  # 1 nm of drift correction
        f["locs"][...] = rec
    back = read_localizations(path)
    np.testing.assert_allclose(back.x_nm, _exact_table(locs).x_nm + 1.0, rtol=0, atol=0.01)


def test_tables_written_block_by_block_equal_the_whole_table(tmp_path: Path) -> None:
    """write_localization_blocks (every format at once, the table in blocks) writes what write_localizations does."""
    rng = np.random.default_rng(2)
    n = 700
    table = empty_table().reindex(range(n))
    for c in LOC_COLUMNS:
        table[c] = rng.random(n) < 0.5 if c in ("saturated", "extended") else rng.uniform(0, 3000, n)
    table = table.astype(empty_table().dtypes.to_dict())
    table.attrs.update(movie_shape=[3000, 30, 30], box=7)
    whole = [write_localizations(table, tmp_path / f"whole{s}", CAMERA) for s in (".csv", ".hdf5", ".parquet")]
    cuts = [0, 1, 1, 300, 699, 700]  # an empty block and a one-row block among them
    blocks = (table.iloc[a:b] for a, b in itertools.pairwise(cuts))
    parts = write_localization_blocks(
        blocks, table.attrs, [tmp_path / f"blocks{s}" for s in (".csv", ".hdf5", ".parquet")], CAMERA
    )
    assert (tmp_path / "blocks.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    for a, b in zip(whole, parts, strict=True):
        pd.testing.assert_frame_equal(read_localizations(b), read_localizations(a))
    movie = [next(yaml.safe_load_all(p.with_suffix(".yaml").read_text())) for p in (whole[1], parts[1])]
    assert movie[0] == movie[1] and movie[0]["Frames"] == 3000


def test_a_failing_block_leaves_no_output(tmp_path: Path, locs: pd.DataFrame) -> None:
    """An error while the blocks are read (e.g. an interrupted run) leaves no file that looks complete."""

    def blocks():
        yield locs
        raise RuntimeError("interrupted")

    paths = [tmp_path / f"locs{s}" for s in (".csv", ".hdf5", ".parquet")]
    with pytest.raises(RuntimeError, match="interrupted"):
        write_localization_blocks(blocks(), locs.attrs, paths, CAMERA)
    assert list(tmp_path.iterdir()) == []
