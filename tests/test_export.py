"""`smlmdn export`: a BioImage Model Zoo package that validates and runs offline with bioimageio.core
and gives the same numbers as `smlmdn denoise --estimate mean`."""

from __future__ import annotations

import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from typer.testing import CliRunner

from smlmdn.camera import save_camera
from smlmdn.cli import app
from smlmdn.denoise.likelihood import count_transform
from smlmdn.denoise.model_file import DenoiseModel
from smlmdn.denoise.network import BlindSpotNet, NetConfig
from smlmdn.denoise.posterior_module import PosteriorModule
from smlmdn.io import open_movie
from smlmdn.simulate import SimulationParams, simulate

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """A tiny movie (ADU), its camera and a model with random weights (export does not care how well it was trained)."""
    root = tmp_path_factory.mktemp("export")
    sim = simulate(SimulationParams.preset("medium", frames=6, size=24, seed=4))
    tifffile.imwrite(root / "movie.tif", sim.movie)
    save_camera(sim.camera, root / "camera.json")
    torch.manual_seed(0)
    cfg = NetConfig(width=4, depth=2, context=1)
    model = DenoiseModel(
        net=cfg,
        state_dict=BlindSpotNet(cfg).state_dict(),
        camera=sim.camera,
        transform=dict(zip(("shift", "factor"), count_transform(1.0, sim.camera.read_noise_photons), strict=True)),
        norm={"level": 30.0, "scale": 10.0},
    )
    model.save(root / "model.pt")
    return {"root": root, "sim": sim, "model": model}


@pytest.fixture
def offline(monkeypatch):
    """No network: any socket connection fails."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_posterior_module_includes_the_centre_pixel(data) -> None:
    """The exported module is the posterior mean, not the prior: changing a pixel's own count changes its output."""
    model = data["model"]
    module = PosteriorModule(model.net.to_dict(), model.transform, model.norm)
    module.net.load_state_dict(model.state_dict)
    x = torch.full((1, 3, 16, 16), 20.0)
    base = module(x)
    x[0, 1, 8, 8] = 200.0
    moved = module(x)
    assert moved[0, 1, 8, 8] > base[0, 1, 8, 8] + 1  # the posterior mean follows the pixel's own count
    prior = PosteriorModule(model.net.to_dict(), model.transform, model.norm, estimate="prior")
    prior.net.load_state_dict(model.state_dict)
    assert prior(x)[0, 1, 8, 8] == pytest.approx(float(prior(torch.full((1, 3, 16, 16), 20.0))[0, 1, 8, 8]), rel=1e-5)


@pytest.mark.slow
def test_export_validates_runs_offline_and_equals_smlmdn_denoise(data, offline) -> None:
    core = pytest.importorskip("bioimageio.core")
    root = data["root"]
    package = root / "den.bioimageio.zip"
    res = runner.invoke(
        app,
        [
            "export",
            str(root / "model.pt"),
            "-o",
            str(package),
            "--movie",
            str(root / "movie.tif"),
            "--test-frames",
            "6",
            "--test-size",
            "24",
        ],
    )
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(package) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
    assert [a.get("id", a["type"]) for a in rdf["inputs"][0]["axes"]] == ["batch", "time", "y", "x"]
    assert (
        rdf["inputs"][0]["axes"][2]["unit"] == "nanometer"
        and rdf["inputs"][0]["axes"][2]["scale"] == data["sim"].camera.pixel_size
    )
    assert rdf["config"]["smlmdn"]["camera"]["e_per_adu"] == data["sim"].camera.e_per_adu
    assert "1901.10277" in rdf["cite"][0]["url"] and "Minnerath" in " ".join(rdf["config"]["smlmdn"]["references"])

    summary = core.test_model(package, weight_format="pytorch_state_dict", devices=["cpu"])
    assert summary.status == "passed", summary.display()
    assert any(d.name.startswith("Reproduce test outputs") and d.status == "passed" for d in summary.details)

    # the package's output on its test input == `smlmdn denoise --estimate mean` on the same movie
    den = root / "den.zarr"
    res = runner.invoke(
        app,
        [
            "denoise",
            str(root / "movie.tif"),
            "--camera",
            str(root / "camera.json"),
            "-m",
            str(root / "model.pt"),
            "-o",
            str(den),
            "--estimate",
            "mean",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    expected = open_movie(den).compute()
    description = core.load_description(package)
    with zipfile.ZipFile(package) as zf:
        test_input = np.load(zf.open("test_input.npy"))
    out = core.predict(model=description, inputs={"photons": test_input})
    got = out.members["posterior_mean"].data.to_numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert np.abs(got - test_input[0]).max() > 0.1  # it did denoise something


def test_export_without_zip_suffix_is_a_one_line_error(data) -> None:
    # told before bioimageio is imported (or found missing)
    res = runner.invoke(app, ["export", str(data["root"] / "model.pt"), "-o", str(data["root"] / "den.bioimageio")])
    assert res.exit_code == 1 and "NAME.bioimageio.zip" in res.output and len(res.output.strip().splitlines()) == 1, (
        res.output
    )


@pytest.mark.slow  # the first import of bioimageio.spec costs ~2.5 s
def test_export_default_test_input_is_a_simulation_with_the_model_camera(data, tmp_path: Path) -> None:
    pytest.importorskip("bioimageio.spec")
    from smlmdn.denoise.export import export_bioimageio

    out = export_bioimageio(data["root"] / "model.pt", tmp_path / "sim.bioimageio.zip", frames=3, size=32)
    with zipfile.ZipFile(out) as z:
        test_input = np.load(z.open("test_input.npy"))
        test_output = np.load(z.open("test_output.npy"))
        doc = z.read("README.md").decode()
    assert test_input.shape == test_output.shape == (1, 3, 32, 32) and test_input.dtype == np.float32
    assert test_input.mean() > 1.0  # photons of a simulated movie, not zeros
    cam = data["sim"].camera
    assert f"offset {cam.offset:g} ADU" in doc and f"pixel size {cam.pixel_size:g} nm" in doc and "Minnerath" in doc
