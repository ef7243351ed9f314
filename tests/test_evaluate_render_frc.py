"""Rendering (pixel convention, blur, files) and Fourier ring correlation."""

import math

import numpy as np
import pandas as pd
import pytest
import tifffile

from smlmdn.evaluate.frc import frc_curve, frc_from_images, frc_resolution, split_halves
from smlmdn.evaluate.render import render_image, save_render_png, save_render_tif


def test_single_localization_lands_in_the_pixel_of_the_convention():
    locs = pd.DataFrame({"frame": [0], "x_nm": [150.0], "y_nm": [250.0]})
    img = render_image(locs, (4, 5), pixel_size_nm=100.0, render_pixel_nm=100.0, blur_nm=0)
    assert img.shape == (4, 5) and img.dtype == np.float32
    assert img[2, 1] == 1 and img.sum() == 1  # x 150 nm -> column 1, y 250 nm -> row 2
    fine = render_image(locs, (4, 5), pixel_size_nm=100.0, render_pixel_nm=10.0, blur_nm=0)
    assert fine.shape == (40, 50) and fine[25, 15] == 1


def test_out_of_field_localizations_are_dropped_and_blur_keeps_the_count():
    locs = pd.DataFrame({"x_nm": [1000.0, -1.0, 5000.0], "y_nm": [1000.0, 10.0, 10.0]})
    img = render_image(locs, (20, 20), pixel_size_nm=100.0, render_pixel_nm=10.0, blur_nm=20.0)
    assert img.sum() == pytest.approx(1.0, rel=1e-4)
    assert np.unravel_index(np.argmax(img), img.shape) == (100, 100)
    assert img[100, 100] < 0.1  # blurred: sigma 2 render pixels


def test_default_blur_is_the_median_crlb_precision():
    locs = pd.DataFrame(
        {"x_nm": [1005.0] * 3, "y_nm": [1005.0] * 3, "crlb_x_nm": [30.0, 40.0, 50.0], "crlb_y_nm": [30.0, 40.0, 50.0]}
    )
    img = render_image(locs, (20, 20), pixel_size_nm=100.0, render_pixel_nm=10.0)
    ref = render_image(locs, (20, 20), pixel_size_nm=100.0, render_pixel_nm=10.0, blur_nm=40.0)
    np.testing.assert_allclose(img, ref)
    plain = locs[["x_nm", "y_nm"]]
    np.testing.assert_allclose(
        render_image(plain, (20, 20), 100.0, 10.0), render_image(plain, (20, 20), 100.0, 10.0, blur_nm=10.0)
    )


def test_png_and_tif_are_written_with_calibration(tmp_path):
    img = np.zeros((30, 40), np.float32)
    img[3, 4] = 5.0
    png = save_render_png(img, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tif = save_render_tif(img, tmp_path / "r.tif", render_pixel_nm=10.0)
    with tifffile.TiffFile(tif) as f:
        np.testing.assert_array_equal(f.asarray(), img)
        assert f.imagej_metadata["unit"] == "nm"
        num, den = f.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(0.1)  # 0.1 pixel per nm = 10 nm pixels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.png", "r.tif"]  # no temporary files left


def test_frc_of_identical_images_is_one():
    img = np.random.default_rng(0).poisson(1.0, (64, 64)).astype(float)
    freq, frc = frc_from_images(img, img, pixel_nm=5.0)
    assert np.allclose(frc, 1.0)
    assert freq[-1] == pytest.approx(0.1, rel=0.05)  # Nyquist of 5 nm pixels
    noise = np.random.default_rng(1).poisson(1.0, (64, 64)).astype(float)
    assert abs(np.nanmean(frc_from_images(img, noise, 5.0)[1])) < 0.1  # independent noise: ~0


def test_frc_resolution_interpolates_and_is_nan_without_crossing():
    freq = np.array([0.01, 0.02, 0.03, 0.04])
    assert frc_resolution(freq, np.array([1.0, 0.5, 0.1, 0.0]), threshold=0.3) == pytest.approx(1 / 0.025)
    assert math.isnan(frc_resolution(freq, np.array([1.0, 0.9, 0.8, 0.7])))
    assert math.isnan(frc_resolution(freq, np.array([0.1, 0.0, 0.05, 0.0])))


def lines(sigma_nm, n=20000, seed=0):
    """Localizations along 8 straight lines in a 5 um field, each blurred by ``sigma_nm`` per axis."""
    rng = np.random.default_rng(seed)
    t, k = rng.random(n), rng.integers(0, 8, n)
    ang = np.linspace(0, np.pi, 8, endpoint=False)[k]
    cx, cy = 2500 + 1500 * np.cos(3 * ang), 2500 + 1500 * np.sin(2 * ang)
    return pd.DataFrame(
        {
            "frame": rng.integers(0, 1000, n),
            "x_nm": cx + (t - 0.5) * 4000 * np.cos(ang) + rng.normal(0, sigma_nm, n),
            "y_nm": cy + (t - 0.5) * 4000 * np.sin(ang) + rng.normal(0, sigma_nm, n),
        }
    )


def test_frc_resolution_is_sensible_and_worsens_with_precision():
    res = []
    for sigma in (10.0, 20.0, 40.0):
        freq, frc = frc_curve(lines(sigma), (50, 50), pixel_size_nm=100.0, render_pixel_nm=5.0, seed=0)
        res.append(frc_resolution(freq, frc))
    assert 20 < res[0] < 80  # about 2.5-4 x the precision for dense structures
    assert res[0] < res[1] < res[2]


def test_block_split_keeps_frame_blocks_together():
    locs = pd.DataFrame({"frame": np.arange(1000), "x_nm": 0.0, "y_nm": 0.0})
    a, b = split_halves(locs, split="blocks", block_frames=100, seed=0)
    assert len(a) + len(b) == 1000 and len(a) % 100 == 0
    assert set(a.frame // 100).isdisjoint(set(b.frame // 100))
