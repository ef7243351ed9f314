"""The torch fitter reproduces the numba fitter (same model, update, status rules, CRLB) on CPU."""

from __future__ import annotations

import numpy as np
import pytest

from smlmdn.localize.fit import CONVERGED, MAX_ITER, OUTSIDE, FitResult, fit_spots
from smlmdn.localize.fit_torch import fit_spots_torch
from smlmdn.psf import integrated_gaussian

BOX = 7
SIGMA_PX = 1.3


def _spots(n: int, seed: int, read_noise: float = 0.0, emccd: bool = False) -> np.ndarray:
    """Mixed spots: wide photon range, centres up to 1.5 px off-centre (some leave the box), bg 2-20."""
    rng = np.random.default_rng(seed)
    x = BOX / 2 + rng.uniform(-1.5, 1.5, n)
    y = BOX / 2 + rng.uniform(-1.5, 1.5, n)
    photons = rng.uniform(30.0, 3000.0, n)[:, None, None]
    bg = rng.uniform(2.0, 20.0, n)[:, None, None]
    mu = photons * integrated_gaussian(x, y, SIGMA_PX, (BOX, BOX)) + bg
    counts = rng.poisson(mu).astype(np.float64)
    if emccd:  # EM register: Gamma(counts, 1) output has the excess-noise factor 2
        counts = rng.gamma(np.maximum(counts, 1e-12)) * (counts > 0)
    return (counts + rng.normal(0.0, read_noise, mu.shape)).astype(np.float32)


def _assert_agree(a: FitResult, b: FitResult, npar: int) -> None:
    assert (a.status == b.status).mean() >= 0.99
    both = (a.status == CONVERGED) & (b.status == CONVERGED)
    assert both.mean() > 0.9
    np.testing.assert_allclose(b.theta[both, :2], a.theta[both, :2], rtol=0, atol=1e-3)
    np.testing.assert_allclose(b.theta[both, 2:npar], a.theta[both, 2:npar], rtol=1e-3)
    np.testing.assert_allclose(b.crlb[both, :npar], a.crlb[both, :npar], rtol=1e-3)
    np.testing.assert_allclose(b.loglik[both], a.loglik[both], rtol=1e-6)
    np.testing.assert_allclose(b.llr[both], a.llr[both], rtol=1e-4, atol=1e-6)
    if npar == 4:
        assert np.all(np.isnan(b.crlb[:, 4])) and np.all(b.theta[:, 4] == SIGMA_PX)
    assert b.theta.dtype == np.float64 and b.iterations.dtype == np.int32 and b.status.dtype == np.int8


@pytest.mark.parametrize(
    "case,kwargs",
    [
        ("poisson", {}),
        ("scmos", {"read_noise_photons": 3.0}),
        ("emccd", {"excess_noise": 2.0}),
        ("free_sigma", {"fit_sigma": True, "read_noise_photons": 1.5}),
    ],
)
def test_torch_cpu_matches_numba(case: str, kwargs: dict) -> None:
    spots = _spots(400, seed=11, read_noise=kwargs.get("read_noise_photons", 0.0), emccd=case == "emccd")
    sigma_start = 1.1 if kwargs.get("fit_sigma") else SIGMA_PX

    a = fit_spots(spots, sigma_start, **kwargs)
    b = fit_spots_torch(spots, sigma_start, device="cpu", **kwargs)

    _assert_agree(a, b, 5 if kwargs.get("fit_sigma") else 4)


def test_status_codes_and_chunking_match() -> None:
    """Capped iterations (MAX_ITER), spots centred outside the box (OUTSIDE), empty boxes; chunked run."""
    rng = np.random.default_rng(5)
    spots = _spots(300, seed=2)
    spots[:20] = 0.0
    x = rng.choice([-1.0, BOX + 1.0], 30)
    extra = rng.poisson(800 * integrated_gaussian(x, np.full(30, BOX / 2), SIGMA_PX, (BOX, BOX)) + 5).astype(np.float32)
    spots = np.concatenate([spots, extra])
    for max_iter in (2, 100):
        a = fit_spots(spots, SIGMA_PX, max_iter=max_iter)
        b = fit_spots_torch(spots, SIGMA_PX, max_iter=max_iter, chunk=97)
        np.testing.assert_array_equal(b.status, a.status)
        np.testing.assert_array_equal(b.iterations, a.iterations)
        # the comparison covers the non-converged codes too
        assert np.any(a.status == (MAX_ITER if max_iter == 2 else OUTSIDE))
        if max_iter == 100:
            _assert_agree(a, b, 4)


def test_empty_and_bad_shape() -> None:
    res = fit_spots_torch(np.empty((0, BOX, BOX), np.float32), SIGMA_PX)
    assert res.theta.shape == (0, 5) and res.status.shape == (0,)
    with pytest.raises(ValueError):
        fit_spots_torch(np.zeros((3, 5, 6)), SIGMA_PX)


def test_pipeline_block_fits_the_same_with_the_torch_backend():
    from smlmdn.localize.pipeline import localize_block
    from smlmdn.psf import render_spots

    rng = np.random.default_rng(7)
    xy = np.array([[8.3, 9.6], [20.5, 14.2], [13.1, 24.8]])
    clean = render_spots(xy[:, 0], xy[:, 1], np.full(3, 1500.0), 1.3, (32, 32)) + 10.0
    frames = rng.poisson(np.broadcast_to(clean, (4, 32, 32))).astype(np.float32)
    settings = dict(
        box=7,
        sigma_px=1.3,
        fit_sigma=False,
        threshold=4.0,
        read_noise_photons=0.0,
        excess_noise=1.0,
        pixel_size_nm=100.0,
        detect_on_raw=True,
    )
    numba_table, numba_counts = localize_block(frames, frames, **settings)
    torch_table, torch_counts = localize_block(frames, frames, fit_device="cpu", **settings)
    assert len(numba_table) == 12 and numba_counts == torch_counts
    np.testing.assert_allclose(
        torch_table[["x_nm", "y_nm", "photons", "crlb_x_nm"]].to_numpy(),
        numba_table[["x_nm", "y_nm", "photons", "crlb_x_nm"]].to_numpy(),
        rtol=1e-6,
    )


def test_torch_matches_numba_with_a_neighbour_offset() -> None:
    spots = _spots(300, seed=21, read_noise=1.5)
    rng = np.random.default_rng(22)
    offset = rng.uniform(0.0, 500.0, (300, 1, 1)) * integrated_gaussian(
        np.full(300, BOX / 2 + 2.5), np.full(300, BOX / 2), SIGMA_PX, (BOX, BOX)
    )
    spots = spots + rng.poisson(offset).astype(np.float32)
    kw = dict(read_noise_photons=1.5, offset=offset)
    _assert_agree(fit_spots(spots, SIGMA_PX, **kw), fit_spots_torch(spots, SIGMA_PX, **kw), npar=4)
