"""Detection and the streaming pipeline on small simulated movies."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from smlmdn.camera import Camera
from smlmdn.errors import SmlmdnError
from smlmdn.localize import LOC_COLUMNS, localize
from smlmdn.localize.detect import (
    band_pass,
    default_threshold,
    detect,
    nms_size,
    noise_gain,
    robust_std,
    row_medians,
    stabilise,
)
from smlmdn.psf import render_spots

PIXEL_NM = 100.0
SIGMA_PX = 1.3
CAMERA = Camera(offset=100.0, e_per_adu=0.5, read_noise=1.5, pixel_size=PIXEL_NM)


def _movie(frames: int = 30, size: int = 64, photons: float = 1500.0, bg: float = 15.0, seed: int = 0):
    """Well-separated emitters (jittered grid, 9 px spacing, about half on per frame), Poisson + read noise."""
    rng = np.random.default_rng(seed)
    centres = np.arange(6, size - 5, 9) + 0.5
    gx, gy = np.meshgrid(centres, centres)
    rows = []
    movie = np.empty((frames, size, size), np.float32)
    for t in range(frames):
        on = rng.random(gx.size) < 0.5
        x = gx.ravel()[on] + rng.uniform(-1.5, 1.5, on.sum())
        y = gy.ravel()[on] + rng.uniform(-1.5, 1.5, on.sum())
        clean = render_spots(x, y, np.full(on.sum(), photons), SIGMA_PX, (size, size)) + bg
        movie[t] = rng.poisson(clean) + rng.normal(0, CAMERA.read_noise_photons, clean.shape)
        rows.append(pd.DataFrame({"frame": t, "x_nm": x * PIXEL_NM, "y_nm": y * PIXEL_NM}))
    return movie, pd.concat(rows, ignore_index=True)


def _match(locs: pd.DataFrame, truth: pd.DataFrame, tol_nm: float = 250.0) -> tuple[int, int, int, np.ndarray]:
    """Greedy per-frame nearest matching (enough for well-separated emitters): TP, FP, FN, errors (nm)."""
    tp = fp = fn = 0
    errors = []
    for t, tr in truth.groupby("frame"):
        lo = locs[locs.frame == t]
        if len(lo) == 0:
            fn += len(tr)
            continue
        d, j = cKDTree(tr[["x_nm", "y_nm"]].to_numpy()).query(lo[["x_nm", "y_nm"]].to_numpy())
        ok = d < tol_nm
        matched = np.unique(j[ok])
        tp += len(matched)
        fp += int(len(lo) - len(matched))
        fn += len(tr) - len(matched)
        errors.append(d[ok])
    fp += int(np.sum(~locs.frame.isin(truth.frame)))
    return tp, fp, fn, np.concatenate(errors) if errors else np.zeros(0)


def test_detection_recall_and_false_positives_on_separated_emitters() -> None:
    movie, truth = _movie()

    locs = localize(da.from_array(movie, chunks=(8, -1, -1)), CAMERA, progress=False)

    tp, fp, fn, err = _match(locs, truth)
    recall = tp / (tp + fn)
    fp_rate = fp / max(1, len(locs))
    assert recall >= 0.95, f"recall {recall:.3f}"
    assert fp_rate < 0.05, f"false positives {fp_rate:.3f}"
    assert np.sqrt(np.mean(err**2)) < 15.0  # 1500 photons: CRLB ~ 4 nm; loose bound on matching
    assert list(locs.columns) == list(LOC_COLUMNS)
    assert locs.attrs["n_candidates"] >= len(locs)
    assert locs["frame"].between(0, len(movie) - 1).all()


def test_detection_finds_nothing_in_pure_noise() -> None:
    rng = np.random.default_rng(5)
    noise = rng.poisson(20.0, size=(40, 64, 64)).astype(np.float32)

    cand = detect(noise, SIGMA_PX, 7)

    # the default threshold allows ~1e-5 false maxima per pixel, i.e. ~2 in these 40 frames
    assert len(cand) <= 6


def test_default_threshold_is_a_sensible_significance() -> None:
    assert 4.0 <= default_threshold(1.3) < 4.5
    assert default_threshold(0.8) > default_threshold(2.0)  # a sharper filter has more noise maxima


def test_candidates_at_the_frame_edge_are_fitted_with_a_shifted_box() -> None:
    rng = np.random.default_rng(2)
    x, y = np.array([0.9, 30.0]), np.array([20.0, 31.2])  # one emitter 0.9 px from the left edge
    clean = render_spots(x, y, np.array([3000.0, 3000.0]), SIGMA_PX, (32, 32)) + 10.0
    movie = rng.poisson(np.broadcast_to(clean, (6, 32, 32))).astype(np.float32)

    locs = localize(da.from_array(movie), Camera(read_noise=0.0, pixel_size=PIXEL_NM), progress=False)

    near_edge = locs[locs.x_nm < 500]
    assert len(near_edge) == 6
    assert np.abs(near_edge.x_nm - 90.0).max() < 20.0 and np.abs(near_edge.y_nm - 2000.0).max() < 20.0


def test_hybrid_and_denoised_modes_use_the_detection_movie() -> None:
    movie, truth = _movie(frames=10)
    clean = np.empty_like(movie)
    # a perfect "denoiser": the expected image (detection becomes trivial)
    for t, g in truth.groupby("frame"):
        clean[t] = (
            render_spots(g.x_nm / PIXEL_NM, g.y_nm / PIXEL_NM, np.full(len(g), 1500.0), SIGMA_PX, movie.shape[1:])
            + 15.0
        )
    raw = da.from_array(movie, chunks=(4, -1, -1))

    # single-emitter: the residual pass proposes on the raw photons, which would mix the modes here
    hybrid = localize(
        raw, CAMERA, detect_on=da.from_array(clean, chunks=(3, -1, -1)), multi_emitter=False, progress=False
    )
    denoised = localize(raw, CAMERA, detect_on=da.from_array(clean), fit_on="detect", progress=False)

    assert hybrid.attrs["mode"] == "hybrid" and denoised.attrs["mode"] == "denoised"
    tp, fp, fn, err = _match(hybrid, truth)
    assert tp / (tp + fn) > 0.97 and fp == 0
    # fitting the noise-free image gives (almost) exact positions
    tp, fp, fn, err = _match(denoised, truth)
    assert tp / (tp + fn) > 0.97 and np.sqrt(np.mean(err**2)) < 1.0


def test_no_molecules_gives_an_empty_valid_table_and_a_warning() -> None:
    flat = da.from_array(np.random.default_rng(0).poisson(10.0, (4, 32, 32)).astype(np.float32))

    with pytest.warns(UserWarning, match="no molecules"):
        locs = localize(flat, CAMERA, progress=False, threshold=50.0)

    assert len(locs) == 0 and list(locs.columns) == list(LOC_COLUMNS)
    assert locs.attrs["n_candidates"] == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"box": 41}, "larger than the frame"),
        ({"box": 6}, "odd"),
        ({"psf_sigma_nm": 0.0}, "psf sigma"),
        ({"psf_sigma_nm": 900.0}, "wider than"),
        ({"threshold": -1.0}, "threshold"),
        ({"detect_on": da.zeros((4, 32, 30), dtype=np.float32)}, "shape"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs: dict, match: str) -> None:
    movie = da.zeros((4, 32, 32), dtype=np.float32)
    with pytest.raises(SmlmdnError, match=match):
        localize(movie, CAMERA, progress=False, **kwargs)


def test_close_pairs_are_both_detected() -> None:
    # two molecules 3 px apart in x and in y (4.2 px, 3.3 PSF sigmas): one 7 px fit box holds both, and a
    # 7 px suppression window suppressed one of them; each must be its own candidate
    rng = np.random.default_rng(7)
    clean = (
        render_spots(np.array([20.5, 23.5]), np.array([20.5, 23.5]), np.array([2000.0, 2000.0]), SIGMA_PX, (40, 40))
        + 10.0
    )
    frames = rng.poisson(np.broadcast_to(clean, (20, 40, 40))).astype(np.float32)
    cand = detect(frames, SIGMA_PX, 7)
    per_frame = np.bincount(cand.frame, minlength=20)
    assert np.all(per_frame <= 2) and np.mean(per_frame == 2) >= 0.7  # noise merges the two peaks now and then
    two = np.flatnonzero(per_frame == 2)[0]
    assert set(cand.col[cand.frame == two].tolist()) == {20, 23}


def test_multi_emitter_pass_separates_a_merged_pair() -> None:
    # two molecules 2.6 px apart (2 PSF sigmas): the matched filter shows one peak, fitted as one molecule
    # in between; the multi-emitter pass finds the second in the residual and refits both
    rng = np.random.default_rng(8)
    xs, ys = np.array([20.2, 22.8]), np.array([20.5, 20.5])
    clean = render_spots(xs, ys, np.array([2000.0, 2000.0]), SIGMA_PX, (40, 40)) + 10.0
    frames = rng.poisson(np.broadcast_to(clean, (20, 40, 40))).astype(np.float32)
    camera = Camera(offset=0.0, e_per_adu=1.0, read_noise=0.0, pixel_size=PIXEL_NM)
    truth = np.column_stack([xs, ys]) * PIXEL_NM

    def recall(multi: bool) -> tuple[float, int]:  # fraction of (frame, molecule) found within 60 nm; localizations
        locs = localize(frames, camera, psf_sigma_nm=SIGMA_PX * PIXEL_NM, multi_emitter=multi, progress=False)
        hits = 0
        for t in range(20):
            xy = locs.loc[locs.frame == t, ["x_nm", "y_nm"]].to_numpy()
            hits += int(np.sum(cKDTree(xy).query(truth)[0] < 60.0)) if len(xy) else 0
        return hits / 40, len(locs)

    single, n_single = recall(False)
    multi, n_multi = recall(True)
    assert single < 0.2 and n_single <= 22  # one fit in between the two
    # most frames: both, each where it is (measured 0.75; a refit leaves a fit in between now and then)
    assert multi >= 0.6 and n_multi <= 60


@pytest.mark.parametrize(("shape", "sigma"), [((6, 48, 40), 1.3), ((4, 32, 32), 0.9), ((3, 7, 9), 1.6)])
def test_band_pass_and_local_maxima_equal_scipy_to_the_bit(shape: tuple[int, int, int], sigma: float) -> None:
    # the compiled filters and peak search must give scipy's numbers and candidates exactly (frames smaller
    # than the wide Gaussian included)
    rng = np.random.default_rng(4)
    frames = stabilise(rng.poisson(rng.uniform(1, 100, shape)).astype(np.float32))
    small = ndimage.gaussian_filter(frames, (0, sigma, sigma), mode="nearest")
    big = ndimage.gaussian_filter(frames, (0, 3 * sigma, 3 * sigma), mode="nearest")
    expected = (small - big) / noise_gain(shape[1:], sigma)
    filtered = band_pass(frames, sigma)
    assert np.array_equal(filtered, expected)
    # candidates: local maxima of their nms_size window above the threshold, as maximum_filter finds them
    photons = rng.poisson(rng.uniform(1, 100, shape)).astype(np.float32)
    cand = detect(photons, sigma, 7, 1.0)
    filtered = band_pass(stabilise(photons), sigma)
    significance = filtered / robust_std(filtered).astype(np.float32)[:, None, None]
    size = nms_size(sigma, 7)
    peaks = (ndimage.maximum_filter(filtered, size=(1, size, size), mode="nearest") == filtered) & (significance > 1.0)
    assert len(cand) > 0 and np.array_equal(np.stack([cand.frame, cand.row, cand.col]), np.stack(np.nonzero(peaks)))


@pytest.mark.parametrize("shape", [(40, 16, 16), (40, 15, 17)])  # even and odd pixel counts
def test_capped_noise_estimate_equals_the_minimum_of_the_full_one(shape: tuple[int, int, int]) -> None:
    """The count shortcut of robust_std(at_most=...) gives np.minimum(robust_std(...), at_most) to the bit."""
    rng = np.random.default_rng(12)
    # per-frame scales put the estimates on both sides of the cap, some a float32 step from it
    scale = np.r_[np.linspace(0.8, 1.2, shape[0] - 4), 1.0, 1.0 + 1e-7, 1.0 - 1e-7, 1.0][:, None, None]
    frames = (rng.normal(0, 1, shape) * scale).astype(np.float32)
    frames[-1] = 0.0  # no noise at all
    full = robust_std(frames)
    for cap in (1.0, 0.9, float(np.median(full))):
        capped = robust_std(frames, at_most=cap)
        assert capped.dtype == np.float32
        np.testing.assert_array_equal(capped, np.minimum(full, np.float32(cap)))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 17, 1000, 4096])
def test_row_medians_equal_numpy_to_the_bit(n: int) -> None:
    """Histogram-then-select medians equal np.median: ties, skewed and wide rows, float32/float64/int, NaN, inf."""
    rng = np.random.default_rng(n)
    rows = [
        rng.standard_normal((6, n)).astype(np.float32),
        np.round(rng.standard_normal((6, n)) * 2).astype(np.float32),  # ties
        (rng.exponential(1.0, (6, n)) ** 4 * 1e3).astype(np.float32),  # skewed over decades
        rng.standard_normal((6, n)) * 1e-30,
        rng.integers(0, 5, (6, n)),
        np.full((6, n), 2.5, np.float32),
    ]
    special = rng.standard_normal((3, n)).astype(np.float32)
    special[0, 0], special[1, -1], special[2, 0] = np.nan, np.inf, -np.inf
    for a in [*rows, special]:
        np.testing.assert_array_equal(row_medians(a), np.median(a, axis=1))
        assert row_medians(a).dtype == np.median(a, axis=1).dtype
