"""The calibrated acceptance test: GLRT p-values on photon counts and FDR control over a movie."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage, stats

from smlmdn.camera import Camera
from smlmdn.localize import localize
from smlmdn.localize.glrt import StepUp, benjamini_hochberg, glrt, glrt_estimates, psf_templates
from smlmdn.psf import render_spots

BOX = 7
SIGMA_PX = 1.3


def _noise_boxes(rng: np.random.Generator, n: int, bg: float, read_noise: float, frames: int = 1) -> np.ndarray:
    """Pure background boxes (n, B, B) in photons: Poisson plus Gaussian read noise, summed over ``frames``."""
    return sum(rng.poisson(bg, (n, BOX, BOX)) + rng.normal(0.0, read_noise, (n, BOX, BOX)) for _ in range(frames))


def _centred(n: int) -> np.ndarray:
    return psf_templates(np.full(n, BOX / 2), np.full(n, BOX / 2), SIGMA_PX, BOX)


@pytest.mark.parametrize(("bg", "read_noise", "frames"), [(30.0, 1.5, 1), (4.0, 1.5, 1), (20.0, 3.0, 3)])
def test_p_values_are_uniform_on_pure_noise(bg: float, read_noise: float, frames: int) -> None:
    rng = np.random.default_rng(int(bg * 10 + frames))
    n = 4000
    z, p = glrt(
        _noise_boxes(rng, n, bg, read_noise, frames), _centred(n), read_noise_photons=read_noise, n_frames=frames
    )
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert abs(np.mean(z)) < 0.1 and abs(np.std(z) - 1.0) < 0.1


def test_emccd_p_values_are_uniform() -> None:
    # excess noise factor 2: detected photons y with y / 2 ~ Poisson(mu / 2), the model the fit uses
    rng = np.random.default_rng(5)
    n = 4000
    y = 2.0 * rng.poisson(25.0 / 2.0, (n, BOX, BOX))
    _, p = glrt(y, _centred(n), excess_noise=2.0)
    assert stats.kstest(p, "uniform").pvalue > 0.01


def test_a_molecule_gives_a_small_p_value_and_a_dip_does_not() -> None:
    rng = np.random.default_rng(2)
    n = 500
    g = _centred(n)
    _, p_spot = glrt(rng.poisson(20.0 + 300.0 * g).astype(float), g)
    _, p_dip = glrt(rng.poisson(np.maximum(20.0 - 300.0 * g, 0.5)).astype(float), g)
    assert np.median(p_spot) < 1e-6
    assert np.all(p_dip >= 0.5)  # one-sided: less light than background is not a molecule


def test_benjamini_hochberg_rejects_the_step_up_set() -> None:
    p = np.array([0.001, 0.2, 0.011, 0.02, 0.9])
    # m = 5, q = 0.05: thresholds 0.01, 0.02, 0.03, 0.04, 0.05 -> the largest k with p_(k) <= kq/m is 3
    assert benjamini_hochberg(p, 5, 0.05).tolist() == [True, False, True, True, False]
    # more hypotheses tested (pixels without a candidate) make it stricter
    assert benjamini_hochberg(p, 500, 0.05).tolist() == [False] * 5
    with pytest.raises(ValueError):
        benjamini_hochberg(p, 5, 1.5)


def _step_up_by_sorting(p: np.ndarray, m: int, fdr: float) -> np.ndarray:
    """The definition: sort, reject up to the largest k with p_(k) <= fdr k / m."""
    order = np.argsort(p, kind="stable")
    below = np.flatnonzero(p[order] <= fdr * np.arange(1, len(p) + 1) / m)
    keep = np.zeros(len(p), dtype=bool)
    keep[order[: below[-1] + 1] if len(below) else []] = True
    return keep


def test_step_up_given_in_parts_rejects_what_sorting_all_rejects() -> None:
    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(0, 300))
        p = np.where(rng.random(n) < 0.5, rng.random(n) ** rng.uniform(1, 30), rng.random(n))
        if trial % 3 == 0:
            p = np.round(p, 2)  # ties, also at the threshold and at 0
        if trial % 7 == 0 and n:
            p[rng.integers(0, n)] = np.nan  # never rejected
        m, fdr = n + int(rng.integers(0, 3000)), float(rng.uniform(0.01, 0.5))
        expected = _step_up_by_sorting(p, m, fdr)
        assert np.array_equal(benjamini_hochberg(p, m, fdr), expected)
        step_up = StepUp(m, fdr)
        for part in np.split(p, np.sort(rng.integers(0, n + 1, size=int(rng.integers(0, 6))))):
            step_up.add(part)
        assert np.array_equal(p <= step_up.threshold, expected)
        assert len(step_up._open) <= np.sum(p <= fdr)  # only the undecided p-values are held


def test_step_up_refuses_more_p_values_than_tests() -> None:
    step_up = StepUp(3, 0.05)
    step_up.add(np.array([0.01, 0.5]))
    with pytest.raises(ValueError, match="4 p-values for a family of 3 tests"):
        step_up.add(np.array([0.2, 0.3]))


CAMERA = Camera(offset=100.0, e_per_adu=0.5, read_noise=1.5, pixel_size=100.0)


def _noise_movie(rng: np.random.Generator, frames: int = 40, size: int = 32, bg: float = 20.0) -> np.ndarray:
    return (
        rng.poisson(bg, (frames, size, size)) + rng.normal(0, CAMERA.read_noise_photons, (frames, size, size))
    ).astype(np.float32)


@pytest.mark.filterwarnings("ignore:no molecules found")  # expected on pure noise: the user-facing warning
@pytest.mark.parametrize("pool", [0, 1])
def test_pure_noise_movies_respect_the_false_discovery_rate(pool: int) -> None:
    # With no molecule at all every discovery is false, so FDR = P(any discovery): at most fdr per movie.
    rng = np.random.default_rng(11 + pool)
    movies_with_false = sum(
        len(localize(_noise_movie(rng), CAMERA, fdr=0.1, pool=pool, progress=False)) > 0 for _ in range(20)
    )
    assert movies_with_false <= 6  # expected <= 2 of 20; P(> 6 | rate 0.1) < 0.3 %


@pytest.mark.filterwarnings("ignore:no molecules found")  # pure-noise movie: the expected outcome
def test_a_denoiser_cannot_invent_localizations() -> None:
    rng = np.random.default_rng(3)
    raw = _noise_movie(rng, frames=30)
    # A 'denoiser' that smooths the noise (correlated residuals, the failure mode of a threshold in noise
    # standard deviations) and one that paints bright spots where the raw frames hold only background.
    smoothed = ndimage.gaussian_filter(raw, (1.0, 1.5, 1.5))
    painted = smoothed + render_spots(
        np.array([10.5, 22.5]), np.array([9.5, 20.5]), np.array([500.0, 500.0]), SIGMA_PX, raw.shape[1:]
    )
    n_raw = len(localize(raw, CAMERA, fdr=0.05, progress=False))
    for den in (smoothed, painted):
        hybrid = localize(raw, CAMERA, detect_on=den, fdr=0.05, progress=False)
        assert len(hybrid) <= n_raw + 1
        assert hybrid.attrs["n_candidates"] > len(hybrid)  # it proposed, the raw photons refused


def test_pooling_finds_a_dim_blink_that_single_frames_miss() -> None:
    rng = np.random.default_rng(0)
    frames, size = 60, 32
    clean = np.full((frames, size, size), 30.0)
    spot = render_spots(np.array([16.5]), np.array([15.5]), np.array([150.0]), SIGMA_PX, (size, size))
    on = np.arange(20, 26)
    clean[on] += spot
    raw = (rng.poisson(clean) + rng.normal(0, CAMERA.read_noise_photons, clean.shape)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no molecules found" is expected for some single-frame runs
        single = localize(raw, CAMERA, pool=0, progress=False)
    pooled = localize(raw, CAMERA, pool=1, progress=False)
    assert set(pooled["frame"]) <= set(on)  # no spill into frames where the molecule is off
    assert pooled["frame"].isin(on).sum() > single["frame"].isin(on).sum()


def test_saturated_localizations_are_flagged_and_dropped_by_default() -> None:
    from smlmdn.camera import saturation_photons, to_photons

    rng = np.random.default_rng(9)
    frames, size = 10, 40
    clean = np.full((frames, size, size), 20.0)
    clean += render_spots(
        np.array([10.5, 28.5]), np.array([12.5, 27.5]), np.array([1500.0, 1.0e6]), SIGMA_PX, (size, size)
    )
    photons = rng.poisson(clean) + rng.normal(0, CAMERA.read_noise_photons, clean.shape)
    adu = np.clip(np.round(photons / CAMERA.e_per_adu + CAMERA.offset), 0, 65535).astype(np.uint16)  # the bead clips
    assert (adu == 65535).any()
    ph = np.asarray(to_photons(adu, CAMERA))
    level = saturation_photons(adu.dtype, CAMERA)
    dropped = localize(ph, CAMERA, saturation_photons=level, progress=False)
    kept = localize(ph, CAMERA, saturation_photons=level, keep_saturated=True, progress=False)
    assert dropped.attrs["n_saturated"] == kept["saturated"].sum() == frames
    assert not dropped["saturated"].any() and (dropped["x_nm"] < 2000).all()  # only the normal molecule
    assert (kept.loc[kept["saturated"], "x_nm"] > 2000).all()
    # the bead's frames are never added by the known-position extension either: their counts are clipped
    assert not (kept["extended"] & (kept["x_nm"] > 2000)).any()
    assert (
        saturation_photons(np.float32, CAMERA) is None
        and saturation_photons(np.uint16, CAMERA, units="photons") is None
    )


def test_p_values_stay_uniform_with_a_known_neighbour_as_offset() -> None:
    # a bright molecule 2.5 px from the box centre, known from an earlier fit: with it as offset the
    # test of "another molecule at the centre" is calibrated; without it, it fires on the neighbour's tail
    rng = np.random.default_rng(11)
    n, bg = 4000, 20.0
    neighbour = 3000.0 * psf_templates(np.full(n, BOX / 2 + 2.5), np.full(n, BOX / 2), SIGMA_PX, BOX)
    spots = rng.poisson(bg + neighbour).astype(np.float64)
    _, p_known = glrt(spots, _centred(n), offset=neighbour)
    _, p_blind = glrt(spots, _centred(n))
    assert stats.kstest(p_known, "uniform").pvalue > 0.01
    assert np.mean(p_blind < 0.01) > 0.5


@pytest.mark.parametrize(
    ("read_noise", "excess", "frames"), [(0.0, 1.0, 1), (1.5, 1.0, 1), (0.0, 2.0, 1), (3.0, 1.0, np.array([1, 3]))]
)
def test_compiled_test_equals_the_numpy_reference(read_noise: float, excess: float, frames: int | np.ndarray) -> None:
    from smlmdn.localize import glrt_numba

    rng = np.random.default_rng(11)
    n, box = 600, 9
    centres = rng.uniform(3.5, 5.5, (2, n))
    g = psf_templates(centres[0], centres[1], SIGMA_PX, box)
    # molecules of every brightness (dips too) on background, and boxes of a single bright pixel
    y = rng.poisson(np.maximum(15.0 + rng.uniform(-200, 800, (n, 1, 1)) * g, 0.2)).astype(float) - rng.normal(
        0, read_noise, (n, box, box)
    )
    y[::50] = 0.0
    y[::50, 4, 4] = 500.0
    n_frames = np.resize(frames, n) if isinstance(frames, np.ndarray) else frames
    kw = dict(read_noise_photons=read_noise, excess_noise=excess, n_frames=n_frames)
    z_ref, p_ref = glrt(y, g, **kw)
    z, p = glrt_numba.glrt(y, g, **kw)
    np.testing.assert_allclose(z, z_ref, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(p, p_ref, rtol=1e-6, atol=1e-12)
    assert glrt_numba.glrt(y[:0], g[:0])[0].shape == (0,)
    # known neighbour photons (the residual pass), and an all-zero offset that is no offset
    offset = 50.0 * np.roll(g, 3, axis=2)
    np.testing.assert_allclose(
        glrt_numba.glrt(y, g, offset=offset, **kw)[0], glrt(y, g, offset=offset, **kw)[0], rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(glrt_numba.glrt(y, g, offset=np.zeros_like(g), **kw)[0], z, rtol=1e-12, atol=1e-12)
    # the H1 estimates (photons, background) the known-position extension reports
    for got, ref in zip(
        glrt_numba.glrt_estimates(y, g, offset=offset, **kw)[2:],
        glrt_estimates(y, g, offset=offset, **kw)[2:],
        strict=True,
    ):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_step_up_rejects_what_rounds_up_to_the_last_step() -> None:
    # fdr m / m can round one step above fdr: a p-value there is rejected when every test passes
    p = np.array([0.01, 0.02, np.nextafter(0.1, 1.0)])
    assert 0.1 * 3 / 3 > 0.1
    assert _step_up_by_sorting(p, 3, 0.1).all()
    assert benjamini_hochberg(p, 3, 0.1).all()
    assert benjamini_hochberg(np.zeros(0), 0, 0.1).shape == (0,)
