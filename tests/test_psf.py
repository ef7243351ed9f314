"""The pixel-integrated Gaussian PSF: normalisation, pixel convention, vectorisation."""

import numpy as np
import pytest

from smlmdn.psf import integrated_gaussian, integrated_gaussian_1d, render_spots


def test_centred_spot_sums_to_one():
    img = integrated_gaussian(10.0, 10.0, 1.3, (20, 20))
    assert img.shape == (20, 20)
    assert img.sum() == pytest.approx(1.0, abs=1e-9)


def test_pixel_convention_centre_of_pixel_is_half():
    # A spot at (x, y) = (6.5, 7.5) sits at the centre of pixel (row 7, col 6): symmetric about it.
    img = integrated_gaussian(6.5, 7.5, 1.0, (16, 14))
    assert np.unravel_index(np.argmax(img), img.shape) == (7, 6)
    np.testing.assert_allclose(img[7, 5], img[7, 7], rtol=1e-12)
    np.testing.assert_allclose(img[6, 6], img[8, 6], rtol=1e-12)
    # The centroid in pixel coordinates (pixel k has centre k + 0.5) is the spot position.
    yy, xx = np.mgrid[0:16, 0:14] + 0.5
    assert (img * xx).sum() / img.sum() == pytest.approx(6.5, abs=1e-6)
    assert (img * yy).sum() / img.sum() == pytest.approx(7.5, abs=1e-6)


def test_spot_on_pixel_edge_splits_evenly():
    # x = 5.0 is the boundary between columns 4 and 5.
    img = integrated_gaussian(5.0, 5.5, 0.8, (11, 10))
    np.testing.assert_allclose(img[5, 4], img[5, 5], rtol=1e-12)


def test_vectorised_matches_scalar_and_sigma_array():
    x = np.array([2.2, 7.9, 4.0])
    y = np.array([3.1, 1.0, 6.6])
    sig = np.array([0.9, 1.3, 2.0])
    stack = integrated_gaussian(x, y, sig, (9, 10))
    assert stack.shape == (3, 9, 10)
    for i in range(3):
        np.testing.assert_allclose(stack[i], integrated_gaussian(x[i], y[i], sig[i], (9, 10)), rtol=1e-12)


def test_1d_profile_is_erf_difference():
    p = integrated_gaussian_1d(2.5, 1.0, 5)
    from scipy.stats import norm

    expected = norm.cdf(np.arange(1, 6), 2.5, 1.0) - norm.cdf(np.arange(0, 5), 2.5, 1.0)
    np.testing.assert_allclose(p, expected, atol=1e-12)


def test_render_spots_is_weighted_sum():
    x = np.array([3.3, 8.1])
    y = np.array([4.4, 2.0])
    n = np.array([100.0, 50.0])
    img = render_spots(x, y, n, 1.2, (12, 14))
    ref = (integrated_gaussian(x, y, 1.2, (12, 14)) * n[:, None, None]).sum(0)
    np.testing.assert_allclose(img, ref, rtol=1e-10, atol=1e-12)
    assert render_spots(np.zeros(0), np.zeros(0), np.zeros(0), 1.0, (3, 4)).shape == (3, 4)


def test_render_spots_at_the_border_loses_flux_without_wrapping():
    x = np.array([0.3, 13.9])
    y = np.array([11.8, 0.1])
    n = np.array([1000.0, 500.0])
    img = render_spots(x, y, n, 1.3, (12, 14))
    ref = (integrated_gaussian(x, y, 1.3, (12, 14)) * n[:, None, None]).sum(0)
    np.testing.assert_allclose(img, ref, rtol=1e-8, atol=1e-9)
    assert img.sum() < 0.5 * n.sum()
