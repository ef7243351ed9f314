"""Image metrics: PSNR, SSIM, signal/background masks and background SNR."""

import math

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from smlmdn.errors import SmlmdnError
from smlmdn.evaluate.image import background_snr, psnr, signal_background_masks, ssim


def blobs(shape=(6, 32, 32), seed=0):
    """A clean stack with one Gaussian spot per frame at a known pixel, on background 5."""
    rng = np.random.default_rng(seed)
    t, ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx] + 0.5
    clean = np.full(shape, 5.0)
    pos = []
    for f in range(t):
        x0, y0 = rng.uniform(8, nx - 8), rng.uniform(8, ny - 8)
        clean[f] += 200 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.3**2))
        pos.append((f, x0 * 100, y0 * 100))
    return clean, pd.DataFrame(pos, columns=["frame", "x_nm", "y_nm"])


def test_psnr_identical_is_inf_and_known_mse_gives_known_db():
    ref = np.zeros((2, 4, 4))
    ref[0, 0, 0] = 255.0
    assert psnr(ref, ref) == math.inf
    # every pixel off by 1: MSE = 1, data range 255 -> 20 log10(255) dB
    assert psnr(ref + 1.0, ref) == pytest.approx(20 * math.log10(255.0))
    # explicit data range, MSE = 4
    assert psnr(ref + 2.0, ref, data_range=100.0) == pytest.approx(10 * math.log10(100.0**2 / 4))


def test_dask_input_equals_numpy_input():
    clean, truth = blobs()
    noisy = np.random.default_rng(1).poisson(clean).astype(np.float32)
    dn, dc = da.from_array(noisy, chunks=(2, 32, 32)), da.from_array(clean, chunks=(4, 32, 32))
    assert psnr(dn, dc) == pytest.approx(psnr(noisy, clean), rel=1e-12)
    assert ssim(dn, dc) == pytest.approx(ssim(noisy, clean), rel=1e-12)
    for tr, px in ((None, None), (truth, 100.0)):
        m_np = signal_background_masks(noisy, truth=tr, pixel_size_nm=px)
        m_da = signal_background_masks(dn, truth=tr, pixel_size_nm=px)
        assert isinstance(m_da[0], da.Array)
        np.testing.assert_array_equal(m_np[0], m_da[0].compute())
        np.testing.assert_array_equal(m_np[1], m_da[1].compute())
        assert background_snr(dn, m_da) == pytest.approx(background_snr(noisy, m_np), rel=1e-9)


def test_ssim_one_for_identical_and_lower_with_more_noise():
    clean, _ = blobs()
    rng = np.random.default_rng(2)
    assert ssim(clean, clean) == pytest.approx(1.0)
    mild = ssim(clean + rng.normal(0, 1, clean.shape), clean)
    strong = ssim(clean + rng.normal(0, 5, clean.shape), clean)
    assert 0 < strong < mild < 1


def test_ssim_rejects_tiny_frames_and_shape_mismatch():
    with pytest.raises(SmlmdnError, match="11 x 11"):
        ssim(np.ones((1, 8, 8)), np.ones((1, 8, 8)))
    with pytest.raises(SmlmdnError, match="shapes differ"):
        psnr(np.ones((2, 8, 8)), np.ones((1, 8, 8)))


def test_truth_masks_mark_emitter_pixels_as_signal_and_far_pixels_as_background():
    frame = np.zeros((3, 20, 20))
    truth = pd.DataFrame({"frame": [1], "x_nm": [1050.0], "y_nm": [550.0]})  # pixel (row 5, col 10)
    sig, bg = signal_background_masks(frame, truth=truth, pixel_size_nm=100.0, psf_sigma_nm=100.0)
    assert sig[1, 5, 10] and not bg[1, 5, 10]
    assert sig[1, 5, 12] and not sig[1, 5, 13]  # within 2 sigma = 2 px of the centre (10.5, 5.5)
    assert not bg[1, 5, 14] and bg[1, 5, 15]  # beyond 4 sigma = 4 px is background
    assert not sig[0].any() and bg[0].all() and bg[2].all()  # frames without emitters
    assert not (sig & bg).any()


def test_data_masks_find_the_spots_and_snr_matches_construction():
    clean, truth = blobs()
    noisy = np.random.default_rng(3).poisson(clean).astype(np.float64)
    sig, bg = signal_background_masks(noisy, pixel_size_nm=100.0)
    for f, x, y in truth.itertuples(index=False):
        assert sig[f, int(y // 100), int(x // 100)]
    assert bg.mean() > 0.7 and sig.mean() < 0.1
    snr = background_snr(noisy, (sig, bg))
    # background is Poisson(5): std sqrt(5); signal mean is that of the spots' cores
    expected = (noisy[sig].mean() - noisy[bg].mean()) / noisy[bg].std()
    assert snr == pytest.approx(expected)
    assert noisy[bg].std() == pytest.approx(math.sqrt(5), rel=0.1)
    assert background_snr(noisy + 100.0, (sig, bg)) == pytest.approx(snr)  # offset does not count
    assert background_snr(clean, (sig, bg)) > 10 * snr  # the noise-free movie scores far higher


def test_background_snr_with_single_2d_mask_and_empty_regions():
    x = np.random.default_rng(4).normal(0, 2, (5, 10, 10))
    sig = np.zeros((10, 10), bool)
    sig[4:6, 4:6] = True
    x[:, 4:6, 4:6] += 10
    snr = background_snr(x, (sig, ~sig))
    assert snr == pytest.approx(5.0, rel=0.15)
    assert math.isnan(background_snr(x, (np.zeros_like(sig), ~sig)))


def test_data_masks_find_dim_spots_on_an_uneven_background():
    # 300-photon spots on a background ramp of 10 -> 60 photons/pixel: a frame-wide threshold on a
    # smoothed image sits above the dim side's spots; the band-pass must still find them.
    rng = np.random.default_rng(5)
    t, ny, nx = 20, 48, 48
    yy, xx = np.mgrid[0:ny, 0:nx] + 0.5
    clean = np.broadcast_to(10 + 50 * xx / nx, (t, ny, nx)).copy()
    pos = []
    for f in range(t):
        for x0, y0 in ((8.3, 10.6), (40.2, 36.1)):
            clean[f] += 300 / (2 * np.pi * 1.3**2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.3**2))
            pos.append((f, int(y0), int(x0)))
    noisy = rng.poisson(clean).astype(np.float32)
    sig, _ = signal_background_masks(noisy, pixel_size_nm=100.0)
    found = np.mean([sig[f, r, c] for f, r, c in pos])
    assert found >= 0.8
    assert sig.mean() < 0.05  # and not much else
