"""`smlmdn fit` and `smlmdn denoise` end to end on a tiny movie, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from smlmdn.camera import save_camera
from smlmdn.cli import app
from smlmdn.errors import SmlmdnError
from smlmdn.io import read_attrs
from smlmdn.simulate import SimulationParams, simulate

runner = CliRunner()
FAST = ["--steps", "12", "--width", "4", "--depth", "2", "--patch", "16", "--batch", "4", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    sim = simulate(SimulationParams.preset("medium", frames=40, size=24, seed=2))
    tifffile.imwrite(root / "movie.tif", sim.movie)
    save_camera(sim.camera, root / "camera.json")
    return {"root": root, "movie": root / "movie.tif", "camera": root / "camera.json", "sim": sim}


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Fix:" in lines[0], result.output
    return lines[0]


def test_fit_then_denoise_zarr_and_adu_tiff(data):
    root, movie, cam = data["root"], str(data["movie"]), str(data["camera"])
    model = root / "model.pt"
    res = runner.invoke(app, ["fit", movie, "--camera", cam, "-o", str(model), "--context", "1", *FAST])
    assert res.exit_code == 0, res.output
    assert model.is_file() and not (root / "model.pt.ckpt").exists() and "wrote" in res.output
    res = runner.invoke(app, ["fit", movie, "--camera", cam, "-o", str(model), *FAST])
    assert "already exists" in _one_line_error(res)

    out = root / "den.zarr"
    res = runner.invoke(
        app, ["denoise", movie, "--camera", cam, "-m", str(model), "-o", str(out), "-e", "mean", "-e", "std", "-q"]
    )
    assert res.exit_code == 0, res.output
    mean_path, std_path = root / "den_mean.zarr", root / "den_std.zarr"
    mean = np.asarray(zarr.open(str(mean_path), mode="r")["0"])
    assert mean.shape == data["sim"].movie.shape and mean.dtype == np.float32
    attrs = read_attrs(mean_path)
    assert attrs["units"] == "photons" and attrs["estimate"] == "mean" and len(attrs["model_hash"]) == 16
    assert attrs["camera"]["pixel_size"] == data["sim"].camera.pixel_size
    assert read_attrs(std_path)["estimate"] == "std"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # the shared-pass temp store is gone
    single = root / "single.zarr"
    res = runner.invoke(app, ["denoise", movie, "--camera", cam, "-m", str(model), "-o", str(single), "-q"])
    assert res.exit_code == 0, res.output
    # the same network pass; dask threads may round differently, so equal to float32 precision
    np.testing.assert_allclose(np.asarray(zarr.open(str(single), mode="r")["0"]), mean, rtol=1e-6)

    adu = root / "den_adu.tif"
    res = runner.invoke(
        app, ["denoise", movie, "--camera", cam, "-m", str(model), "-o", str(adu), "--out-units", "adu", "-q"]
    )
    assert res.exit_code == 0, res.output
    img = tifffile.imread(adu)
    assert img.dtype == np.uint16 and img.shape == data["sim"].movie.shape
    # ADU with the movie's camera: photons * em_gain / e_per_adu + offset, rounded
    c = data["sim"].camera
    expected = np.clip(np.round(mean * c.em_gain / c.e_per_adu + c.offset), 0, 65535)
    assert np.abs(img.astype(np.float64) - expected).max() <= 1
    assert read_attrs(adu)["units"] == "adu"


def test_cli_bad_inputs(data, tmp_path):
    movie, cam = str(data["movie"]), str(data["camera"])
    res = runner.invoke(
        app, ["denoise", movie, "--camera", cam, "-m", str(tmp_path / "none.pt"), "-o", str(tmp_path / "o.zarr")]
    )
    assert "does not exist" in _one_line_error(res)
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"not a model")
    res = runner.invoke(app, ["denoise", movie, "--camera", cam, "-m", str(corrupt), "-o", str(tmp_path / "o.zarr")])
    assert "cannot be read" in _one_line_error(res)
    res = runner.invoke(app, ["fit", movie, "--camera", cam, "-o", str(tmp_path / "m.pt"), *FAST, "--patch", "32"])
    assert "minimum frame size is 32 x 32" in _one_line_error(res)
    np.save(tmp_path / "short.npy", data["sim"].movie[:3])
    res = runner.invoke(
        app,
        ["fit", str(tmp_path / "short.npy"), "--camera", cam, "-o", str(tmp_path / "m.pt"), *FAST, "--context", "1"],
    )
    assert "needs at least 4" in _one_line_error(res)
    res = runner.invoke(app, ["fit", movie, "--camera", cam, "-o", str(tmp_path / "m.pt"), *FAST, "--head", "cauchy"])
    assert "unknown head" in _one_line_error(res)
    res = runner.invoke(app, ["fit", movie, "--camera", cam, "-o", str(tmp_path / "m.pt"), *FAST, "--resume"])
    assert "no checkpoint" in _one_line_error(res)
    res = runner.invoke(app, ["denoise", movie, "--camera", cam, "-m", str(corrupt), "-o", str(tmp_path / "o.png")])
    assert "unknown output format" in _one_line_error(res)


def test_several_estimates_get_suffixed_names():
    from smlmdn.batch import estimate_output

    assert estimate_output(Path("d.zarr"), "mean", False) == Path("d.zarr")
    assert estimate_output(Path("out/d.ome.zarr"), "std", True) == Path("out/d_std.ome.zarr")
    assert estimate_output(Path("d.TIF"), "map", True) == Path("d_map.TIF")


def test_fit_warns_when_camera_numbers_disagree_with_the_data(data):
    root, movie = data["root"], str(data["movie"])
    res = runner.invoke(
        app,
        [
            "fit",
            movie,
            "--camera",
            str(data["camera"]),
            "--e-per-adu",
            "2.5",
            "-o",
            str(root / "wrong.pt"),
            "--steps",
            "2",
            "--width",
            "8",
            "--depth",
            "1",
            "--patch",
            "16",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "disagrees with the data" in " ".join(res.output.split())
    res = runner.invoke(
        app,
        [
            "fit",
            movie,
            "--camera",
            str(data["camera"]),
            "-o",
            str(root / "right.pt"),
            "--steps",
            "2",
            "--width",
            "8",
            "--depth",
            "1",
            "--patch",
            "16",
            "-q",
        ],
    )
    assert res.exit_code == 0 and "disagrees" not in res.output


def test_fit_command_defaults_are_the_library_defaults():
    """The CLI's training defaults are FitConfig's (one set of defaults, chosen by the benchmarks)."""
    import inspect

    from smlmdn.cli.fit import fit
    from smlmdn.denoise import FitConfig

    params = inspect.signature(fit).parameters
    for name in ("lr", "batch", "context", "width", "depth"):
        assert params[name].default == getattr(FitConfig(), name), name


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimates": ("mean", "median")}, "unknown --estimate median"),
        ({"out_units": "counts"}, "unknown --out-units 'counts'"),
        ({"estimates": ("std",), "out_units": "adu"}, "cannot be written as ADU"),
        ({"units": "volts"}, "unknown units 'volts'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"threads": 0}, "--threads must be >= 1"),
        ({"block_frames": 0}, "--block-frames must be >= 1"),
        ({"tile": 4}, "--tile must be >= 8 px"),
        ({"batch_format": "png"}, "unknown --format 'png'"),
    ],
)
def test_denoise_settings_are_checked_once_where_they_are_made(kwargs, message):
    from smlmdn.denoise.movies import DenoiseSettings

    with pytest.raises(SmlmdnError, match=message) as err:
        DenoiseSettings(**kwargs)
    assert err.value.fix and "\n" not in err.value.one_line()


@pytest.mark.unit
def test_denoise_settings_normalise_names_and_are_frozen():
    from dataclasses import FrozenInstanceError

    from smlmdn.denoise.movies import DenoiseSettings

    s = DenoiseSettings(estimates=("MEAN", "map", "mean"), out_units="ADU", batch_format=".OME.ZARR")
    assert (s.estimates, s.out_units, s.batch_format) == (("mean", "map"), "adu", "ome.zarr")
    assert DenoiseSettings(estimates=()).estimates == ("mean",)
    with pytest.raises(FrozenInstanceError):
        s.tile = 64  # type: ignore[misc]


@pytest.mark.unit
def test_plan_outputs_names_one_output_per_estimate(tmp_path):
    from smlmdn.denoise.movies import DenoiseSettings, plan_outputs

    one = plan_outputs([tmp_path / "a.tif"], tmp_path / "d.zarr", DenoiseSettings(estimates=("mean", "std")), False)
    assert not one.batch and one.outputs == {
        tmp_path / "a.tif": {"mean": tmp_path / "d_mean.zarr", "std": tmp_path / "d_std.zarr"}
    }
    movies = [tmp_path / "a.tif", tmp_path / "b.tif"]
    batch = plan_outputs(movies, tmp_path / "out", DenoiseSettings(batch_format="tif"), False)
    assert batch.batch and batch.finished_marker(movies[1]) == tmp_path / "out" / "b_denoised.tif"
    with pytest.raises(SmlmdnError, match="unknown output format"):
        plan_outputs([tmp_path / "a.tif"], tmp_path / "d.png", DenoiseSettings(), False)
