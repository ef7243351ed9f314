"""OME-Zarr written and read through ome-zarr-py: metadata valid per the NGFF models, pyramids, and
what common converters write (Zarr v2 / NGFF 0.4, containers, several levels) read back."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

from smlmdn.errors import SmlmdnError
from smlmdn.io import inspect_movie, open_movie, read_attrs, write_movie
from smlmdn.omezarr import downsample, pyramid_levels


@pytest.fixture
def movie() -> np.ndarray:
    return np.random.default_rng(3).poisson(50, size=(9, 32, 48)).astype(np.uint16)


def test_written_ome_zarr_is_valid_ngff_05_with_the_pixel_size(tmp_path: Path, movie: np.ndarray) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    out = write_movie(
        da.from_array(movie, chunks=(4, 32, 48)),
        tmp_path / "m.ome.zarr",
        pixel_size=107.0,
        progress=False,
        attrs={"units": "photons"},
    )
    image = models.Image.from_zarr(zarr.open_group(str(out), mode="r"))  # raises on invalid metadata
    ms = image.attributes.ome.multiscales[0]
    assert [a.name for a in ms.axes] == ["t", "y", "x"] and ms.axes[1].unit == "nanometer"
    assert list(ms.datasets[0].coordinateTransformations[0].scale) == [1.0, 107.0, 107.0]
    assert read_attrs(out)["units"] == "photons"
    np.testing.assert_array_equal(open_movie(out).compute(), movie)


def test_pyramid_levels_are_binned_means_with_centred_transforms(tmp_path: Path, movie: np.ndarray) -> None:
    assert pyramid_levels((512, 512)) == 1 and pyramid_levels((1024, 600)) == 2 and pyramid_levels((2048, 2048)) == 3
    assert pyramid_levels((2048, 2048), False) == 1 and pyramid_levels((64, 64), True) == 2
    out = write_movie(
        da.from_array(movie, chunks=(4, 32, 48)),
        tmp_path / "p.ome.zarr",
        pixel_size=100.0,
        progress=False,
        pyramid=True,
    )
    root = zarr.open_group(str(out), mode="r")
    level1 = root["1"][:]
    expected = movie.reshape(9, 16, 2, 24, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(level1, np.rint(expected).astype(np.uint16))
    datasets = dict(root.attrs)["ome"]["multiscales"][0]["datasets"]
    assert datasets[1]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 200.0, 200.0]},
        {"type": "translation", "translation": [0.0, 50.0, 50.0]},
    ]
    np.testing.assert_array_equal(open_movie(out).compute(), movie)  # level 0 is what smlmdn reads
    assert downsample(np.ones((1, 5, 5), np.float32), 1).shape == (1, 2, 2)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_converter_layouts_open_with_the_image_named(tmp_path: Path, movie: np.ndarray, zarr_format: int) -> None:
    """A bioformats2raw-like container (image in ``0/``, an ``OME/`` group beside it) written by ome-zarr's
    own ``write_image`` (NGFF 0.4 on Zarr v2, 0.5 on v3), with TCZYX axes and several levels."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV04() if zarr_format == 2 else FormatV05()
    box = tmp_path / "converted.zarr"
    root = zarr.open_group(str(box), mode="w", zarr_format=zarr_format)
    root.attrs["bioformats2raw.layout"] = 3
    root.create_group("OME")
    write_image(movie[:, None, None], root.create_group("0"), axes="tczyx", fmt=fmt)
    src = inspect_movie(box)
    np.testing.assert_array_equal(src.array.compute(), movie)
    assert src.layout == "OME-Zarr"
    assert any(
        f"{box / '0'}" in n
        and f"NGFF {fmt.version}" in n
        and f"Zarr v{zarr_format}" in n
        and "level 0" in n
        and "of 5 levels" in n
        for n in src.notes
    ), src.notes
    write_image(movie[:3, None, None], root.create_group("1"), axes="tczyx", fmt=fmt)
    with pytest.raises(SmlmdnError, match="holds 2 images"):
        open_movie(box)
    np.testing.assert_array_equal(open_movie(box / "1").compute(), movie[:3])


def test_bad_ome_metadata_is_one_line_error(tmp_path: Path, movie: np.ndarray) -> None:
    out = write_movie(da.from_array(movie), tmp_path / "m.ome.zarr", pixel_size=100.0, progress=False)
    group = zarr.open_group(str(out), mode="r+")
    ome = dict(group.attrs)["ome"]
    ome["multiscales"][0]["datasets"][0]["path"] = "9"  # an array that does not exist
    group.attrs["ome"] = ome
    with pytest.raises(SmlmdnError, match="cannot read OME-Zarr image"):
        open_movie(out)


def test_denoise_cli_writes_an_ome_zarr_pyramid_on_request(tmp_path: Path) -> None:
    import tifffile
    import torch
    from typer.testing import CliRunner

    from smlmdn.camera import save_camera
    from smlmdn.cli import app
    from smlmdn.denoise.model_file import DenoiseModel
    from smlmdn.denoise.network import BlindSpotNet, NetConfig
    from smlmdn.simulate import SimulationParams, simulate

    sim = simulate(SimulationParams.preset("medium", frames=5, size=32, seed=1))
    tifffile.imwrite(tmp_path / "movie.tif", sim.movie)
    save_camera(sim.camera, tmp_path / "camera.json")
    torch.manual_seed(0)
    cfg = NetConfig(width=4, depth=2)
    DenoiseModel(
        net=cfg,
        state_dict=BlindSpotNet(cfg).state_dict(),
        camera=sim.camera,
        transform={"shift": 2.25, "factor": 1.0},
        norm={"level": 30.0, "scale": 10.0},
    ).save(tmp_path / "model.pt")
    out = tmp_path / "den.ome.zarr"
    res = CliRunner().invoke(
        app,
        [
            "denoise",
            str(tmp_path / "movie.tif"),
            "--camera",
            str(tmp_path / "camera.json"),
            "-m",
            str(tmp_path / "model.pt"),
            "-o",
            str(out),
            "--pyramid",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    root = zarr.open_group(str(out), mode="r")
    datasets = dict(root.attrs)["ome"]["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1"] and root["1"].shape == (5, 16, 16)
    assert datasets[0]["coordinateTransformations"][0]["scale"] == [1.0, sim.camera.pixel_size, sim.camera.pixel_size]
    np.testing.assert_allclose(root["1"][:], downsample(root["0"][:], 1), rtol=1e-6)
