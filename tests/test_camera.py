"""Camera model: validated numbers, files and flags, ADU <-> photons conversions."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from smlmdn.camera import Camera, from_photons, load_camera, movie_to_photons, save_camera, to_photons
from smlmdn.errors import SmlmdnError


def test_file_and_flag_precedence(tmp_path: Path) -> None:
    cam = Camera(offset=400, e_per_adu=0.24, qe=0.7, em_gain=1, read_noise=1.1, pixel_size=108)
    save_camera(cam, tmp_path / "cam.json")
    assert load_camera(tmp_path / "cam.json") == cam
    assert load_camera(tmp_path / "cam.json", offset=90.0, qe=None).offset == 90.0
    (tmp_path / "cam.yaml").write_text("offset: 50\ne_per_adu: 12\nem_gain: 200\n")
    yaml_cam = load_camera(tmp_path / "cam.yaml")
    assert (yaml_cam.offset, yaml_cam.e_per_adu, yaml_cam.em_gain, yaml_cam.is_emccd) == (50, 12, 200, True)
    assert yaml_cam.excess_noise == 2.0 and Camera().excess_noise == 1.0


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"offset": 100, "gain": 2}, "unknown keys"),
        ({"e_per_adu": -1}, "e_per_adu must be > 0"),
        ({"e_per_adu": 0}, "e_per_adu must be > 0"),
        ({"qe": 80}, "qe must be in"),
        ({"em_gain": 0.5}, "em_gain must be >= 1"),
        ({"offset": "abc"}, "not numbers"),
        ({"pixel_size": float("nan")}, "pixel_size is nan"),
    ],
)
def test_bad_camera_numbers(tmp_path: Path, content: dict, match: str) -> None:
    path = tmp_path / "cam.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SmlmdnError, match=match):
        load_camera(path)


def test_bad_camera_files(tmp_path: Path) -> None:
    with pytest.raises(SmlmdnError, match="does not exist"):
        load_camera(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{offset: ")
    with pytest.raises(SmlmdnError, match="cannot be parsed"):
        load_camera(tmp_path / "bad.json")


def test_photon_conversion_round_trip(rng: np.random.Generator) -> None:
    cam = Camera(offset=100, e_per_adu=2.0, em_gain=50)
    adu = da.from_array(rng.integers(100, 5000, size=(4, 8, 8)).astype(np.uint16), chunks=(2, 8, 8))
    photons = to_photons(adu, cam)
    assert photons.dtype == np.float32
    np.testing.assert_allclose(photons.compute(), (adu.compute().astype(np.float64) - 100) * 2.0 / 50, rtol=1e-6)
    np.testing.assert_array_equal(from_photons(photons, cam, np.uint16).compute(), adu.compute())


def test_movie_validation(rng: np.random.Generator) -> None:
    cam = Camera()
    floats = da.from_array(rng.random((4, 8, 8)).astype(np.float32) + 150, chunks=(2, 8, 8))
    with pytest.warns(UserWarning, match="ADU are integers"):
        movie_to_photons(floats, cam)
    np.testing.assert_array_equal(movie_to_photons(floats, cam, units="photons").compute(), floats.compute())
    bad = floats.compute()
    bad[0, 1, 1] = np.nan
    with pytest.raises(SmlmdnError, match="NaN or Inf"):
        movie_to_photons(da.from_array(bad), cam, units="photons")
    low = da.from_array(np.full((4, 8, 8), 10, np.uint16))
    with pytest.warns(UserWarning, match="below the camera offset"):
        movie_to_photons(low, cam)
    with pytest.raises(SmlmdnError, match="unknown units"):
        movie_to_photons(low, cam, units="electrons")


@pytest.mark.parametrize("camera_type", ["scmos", "emccd"])
def test_camera_estimate_from_a_flat_background(camera_type: str) -> None:
    """Flat-field illumination (issue 12, item 8): frame pairs cannot pin the gain, high spatial
    frequencies can (the fallback says so in ``method`` and states its uncertainty)."""
    from smlmdn.camera import estimate_camera
    from smlmdn.simulate import SimulationParams, simulate

    sim = simulate(SimulationParams(frames=200, size=64, flat_background=True, camera_type=camera_type, seed=1))
    cam = sim.camera
    est = estimate_camera(sim.movie, em_gain=cam.em_gain, read_noise=cam.read_noise)
    assert est.method == "spatial"
    assert est.e_per_adu == pytest.approx(cam.e_per_adu, rel=0.10)
    assert abs(est.e_per_adu - cam.e_per_adu) < 3 * est.e_per_adu_sd
    assert abs(est.offset - cam.offset) < max(3.0, 3 * est.offset_sd)
    assert est.offset_sd < (3.0 if camera_type == "scmos" else 10.0)
    with pytest.raises(SmlmdnError, match="varies too little"):
        estimate_camera(sim.movie, em_gain=cam.em_gain, read_noise=cam.read_noise, spatial_fallback=False)
