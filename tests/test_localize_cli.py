"""`smlmdn localize` end to end on a tiny simulated movie, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from smlmdn.camera import Camera, save_camera
from smlmdn.cli import app
from smlmdn.io import write_movie
from smlmdn.localize import LOC_COLUMNS, read_localizations
from smlmdn.psf import render_spots

runner = CliRunner()
CAMERA = Camera(offset=100.0, e_per_adu=0.5, qe=0.8, em_gain=1.0, read_noise=1.5, pixel_size=100.0)
TRUE_XY_PX = np.array([[10.3, 12.7], [25.6, 20.2], [14.1, 26.8]])  # (x, y) pixels, pixel (0,0) covers [0,1)^2


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 12-frame 32 x 36 px movie (ADU) of three bright emitters, its expected image in photons and ADU, a camera file."""
    d = tmp_path_factory.mktemp("loc")
    rng = np.random.default_rng(0)
    clean = render_spots(TRUE_XY_PX[:, 0], TRUE_XY_PX[:, 1], np.full(3, 2000.0), 1.3, (32, 36)) + 10.0
    clean_movie = np.broadcast_to(clean, (12, 32, 36)).astype(np.float32)
    photons = rng.poisson(clean_movie) + rng.normal(0, 1.5, clean_movie.shape)
    tifffile.imwrite(d / "movie.tif", np.round(photons / 0.5 + 100).astype(np.uint16))
    save_camera(CAMERA, d / "camera.json")
    write_movie(da.from_array(clean_movie), d / "denoised.zarr", attrs={"units": "photons"}, progress=False)
    write_movie(da.from_array(clean_movie / 0.5 + 100), d / "denoised_adu.tif", attrs={"units": "adu"}, progress=False)
    write_movie(da.from_array(clean_movie[:, :30]), d / "wrong_shape.zarr", attrs={"units": "photons"}, progress=False)
    return {
        "dir": d,
        "movie": d / "movie.tif",
        "camera": d / "camera.json",
        "denoised": d / "denoised.zarr",
        "denoised_adu": d / "denoised_adu.tif",
        "wrong_shape": d / "wrong_shape.zarr",
    }


def _run(data: dict[str, Path], *args: str):
    return runner.invoke(app, ["localize", str(data["movie"]), "--camera", str(data["camera"]), "-q", *args])


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def _check_positions(locs, n_frames: int = 12) -> None:
    assert len(locs) == 3 * n_frames
    for x, y in TRUE_XY_PX * 100.0:
        near = locs[np.hypot(locs.x_nm - x, locs.y_nm - y) < 50]
        assert len(near) == n_frames
        assert abs(near.x_nm.mean() - x) < 3.0 and abs(near.y_nm.mean() - y) < 3.0


def test_raw_mode_writes_every_format_at_the_true_positions(data: dict[str, Path], tmp_path: Path) -> None:
    outs = [tmp_path / "l.csv", tmp_path / "l.hdf5", tmp_path / "l.parquet"]

    result = _run(data, *(arg for p in outs for arg in ("-o", str(p))))

    assert result.exit_code == 0, result.output
    assert "36 localizations in 12 frames (raw mode" in " ".join(result.output.split())
    for p in outs:
        locs = read_localizations(p)
        assert list(locs.columns) == list(LOC_COLUMNS)
        _check_positions(locs)
        assert locs.attrs["movie"] == str(data["movie"])
    assert (tmp_path / "l.yaml").is_file() and json.loads((tmp_path / "l.json").read_text())["mode"] == "raw"


@pytest.mark.parametrize("denoised_key", ["denoised", "denoised_adu"])
def test_hybrid_and_denoised_modes_with_a_denoised_file(
    data: dict[str, Path], tmp_path: Path, denoised_key: str
) -> None:
    hybrid = _run(data, "--mode", "hybrid", "--denoised", str(data[denoised_key]), "-o", str(tmp_path / "h.parquet"))
    denoised = _run(
        data, "--mode", "denoised", "--denoised", str(data[denoised_key]), "-o", str(tmp_path / "d.parquet")
    )

    assert hybrid.exit_code == 0, hybrid.output
    assert denoised.exit_code == 0, denoised.output
    _check_positions(read_localizations(tmp_path / "h.parquet"))
    d = read_localizations(tmp_path / "d.parquet")
    _check_positions(d)
    # fitting the noise-free image: every frame gives the same position (denoised ADU file converted to photons)
    assert d.groupby(d.x_nm.round(-2)).x_nm.std().max() < 0.1
    assert abs(d.photons.median() - 2000.0) < 60.0


def test_model_mode_denoises_on_the_fly(data: dict[str, Path], tmp_path: Path) -> None:
    from smlmdn.camera import movie_to_photons
    from smlmdn.denoise import fit_model
    from smlmdn.io import open_movie

    photons = movie_to_photons(open_movie(data["movie"]), CAMERA)
    fit_model(photons, CAMERA, progress=False, steps=10, width=8, depth=2, val_every=5, val_crops=4, threads=1).save(
        tmp_path / "m.pt"
    )

    result = _run(data, "--model", str(tmp_path / "m.pt"), "--device", "cpu", "-o", str(tmp_path / "l.parquet"))

    assert result.exit_code == 0, result.output
    assert "(hybrid mode" in result.output
    locs = read_localizations(tmp_path / "l.parquet")
    assert locs.attrs["model"] == str(tmp_path / "m.pt") and locs.attrs["localization"]["mode"] == "hybrid"
    _check_positions(locs)


def test_existing_output_is_refused_without_overwrite(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "l.csv"
    assert _run(data, "-o", str(out)).exit_code == 0
    _one_line_error(_run(data, "-o", str(out)), "already exists", "--overwrite")
    assert _run(data, "-o", str(out), "--overwrite").exit_code == 0


def test_render_writes_png_and_tif(data: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip(
        "smlmdn.evaluate.render", reason="smlmdn.evaluate.render (owned by the evaluate module) is not installed"
    )
    result = _run(
        data,
        "-o",
        str(tmp_path / "l.csv"),
        "--render",
        str(tmp_path / "r.png"),
        "--render-tif",
        str(tmp_path / "r.tif"),
        "--render-pixel",
        "20",
    )

    assert result.exit_code == 0, result.output
    image = tifffile.imread(tmp_path / "r.tif")
    assert image.shape == (32 * 100 // 20, 36 * 100 // 20)
    assert (tmp_path / "r.png").stat().st_size > 0
    # the brightest render pixel sits on one of the emitters
    iy, ix = np.unravel_index(np.argmax(image), image.shape)
    assert np.min(np.hypot((ix + 0.5) * 20 - TRUE_XY_PX[:, 0] * 100, (iy + 0.5) * 20 - TRUE_XY_PX[:, 1] * 100)) < 40


def test_no_molecules_gives_empty_valid_output_and_a_warning(data: dict[str, Path], tmp_path: Path) -> None:
    result = _run(data, "--threshold", "1e6", "-o", str(tmp_path / "e.csv"), "-o", str(tmp_path / "e.hdf5"))

    assert result.exit_code == 0, result.output
    assert "warning: no molecules found" in result.output
    for name in ("e.csv", "e.hdf5"):
        locs = read_localizations(tmp_path / name)
        assert len(locs) == 0 and list(locs.columns) == list(LOC_COLUMNS)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--box", "41"], ["larger than the frame"]),
        (["--psf-sigma", "0"], ["psf sigma must be > 0"]),
        (["--psf-sigma", "-130"], ["psf sigma must be > 0"]),
        (["--psf-sigma", "1000"], ["wider than the 7 px box"]),
        (["--mode", "hybrid"], ["--mode hybrid needs a denoised movie", "--denoised"]),
        (["--mode", "denoised"], ["--mode denoised needs a denoised movie"]),
        (["--mode", "sideways"], ["unknown --mode"]),
    ],
)
def test_bad_settings_are_one_line_errors(
    data: dict[str, Path], tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    _one_line_error(_run(data, "-o", str(tmp_path / "l.csv"), *args), *fragments)
    assert not (tmp_path / "l.csv").exists()


def test_denoised_movie_of_another_shape_is_refused(data: dict[str, Path], tmp_path: Path) -> None:
    result = _run(data, "--mode", "hybrid", "--denoised", str(data["wrong_shape"]), "-o", str(tmp_path / "l.csv"))
    _one_line_error(result, "has shape (12, 30, 36) but the raw movie has (12, 32, 36)")


def test_unknown_output_format_is_refused_before_any_work(data: dict[str, Path], tmp_path: Path) -> None:
    _one_line_error(_run(data, "-o", str(tmp_path / "l.xlsx")), "unknown localization format .xlsx", ".csv")
    _one_line_error(
        _run(data, "-o", str(tmp_path / "l.csv"), "--render", str(tmp_path / "r.jpg")), "unknown render format"
    )


@pytest.mark.parametrize("on_disk", [False, True])
def test_summary_precision_is_pandas_row_mean_median_without_its_copies(on_disk: bool) -> None:
    """The summary's median precision, its column in memory or in a temporary file, is pandas' to the bit."""
    import warnings

    import pandas as pd

    from smlmdn.cli.localize import _mean_precision
    from smlmdn.localize.pipeline import ColumnStack

    rng = np.random.default_rng(4)
    for n in [1, 2, 3, 10, 51]:
        x, y = rng.random(n) * 10, rng.random(n) * 10
        x[rng.random(n) < 0.3], y[rng.random(n) < 0.3] = np.nan, np.nan  # extension rows and failed CRLBs
        locs = pd.DataFrame({"crlb_x_nm": x, "crlb_y_nm": y})
        stack = ColumnStack(n, [], {"precision_nm": _mean_precision}, on_disk=on_disk)  # derived block by block
        for block in (locs.iloc[: n // 2], locs.iloc[n // 2 :]):
            stack.add(block)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no stray library warnings
            got = stack.nanmedian("precision_nm")
        stack.close()
        want = float(locs[["crlb_x_nm", "crlb_y_nm"]].mean(axis=1).median())
        assert got == want or (np.isnan(got) and np.isnan(want))
    stack = ColumnStack(1, [], {"precision_nm": _mean_precision}, on_disk=on_disk)
    stack.add(pd.DataFrame({"crlb_x_nm": [np.nan], "crlb_y_nm": [np.nan]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(stack.nanmedian("precision_nm"))
    stack.close()
