"""The test-and-fit passes' helpers: compiled box gathering equals numpy indexing; the refit tolerance; reused pooled tests."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from smlmdn.localize.detect import Candidates
from smlmdn.localize.fit import fit_spots
from smlmdn.localize.glrt import psf_templates
from smlmdn.localize.passes import REFIT_TOLERANCE, BlockPasses, Spots, acceptance_p_values, boxes
from smlmdn.psf import render_spots


def test_boxes_equal_numpy_indexing_as_float64() -> None:
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(5, 20, 17)).astype(np.float32)
    t, oy, ox = rng.integers(0, 5, 50), rng.integers(0, 14, 50), rng.integers(0, 11, 50)
    ar = np.arange(7)

    got = boxes(frames, t, oy, ox, 7)

    want = frames[t[:, None, None], (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    assert boxes(frames, t[:0], oy[:0], ox[:0], 7).shape == (0, 7, 7)


def _passes(own: np.ndarray, pooled: tuple[np.ndarray, np.ndarray] | None = None) -> BlockPasses:
    return BlockPasses(
        own=own,
        fit_frames=own,
        pooled=pooled,
        box=7,
        tb=11,
        sigma_px=1.3,
        threshold=4.0,
        read_noise_photons=1.5,
        excess_noise=1.0,
        fit_on_raw=True,
        fit_sigma=False,
        fit_device=None,
        max_p=0.05,
        counts=Counter(),
    )


def test_a_refit_below_the_tolerance_would_move_the_fit_by_less_than_that_many_crlbs() -> None:
    # a spot with a neighbour's tail in its box; the neighbour's photons change a little (no refit) or much (refit)
    rng = np.random.default_rng(2)
    x, y = np.full(200, 3.4), np.full(200, 3.6)
    own = 800.0 * psf_templates(x, y, 1.3, 7) + 20.0
    tail = 600.0 * psf_templates(x + 3.5, y - 1.0, 1.3, 7)
    data = rng.poisson(own + tail + 1.5**2) - 1.5**2
    passes = _passes(np.zeros((1, 16, 16), np.float32))
    first = fit_spots(data, 1.3, read_noise_photons=1.5, offset=tail)
    for factor in (1.02, 1.5):  # the neighbour 2 % / 50 % brighter
        moved = passes.offset_moved(first.theta, tail, factor * tail)
        refit = fit_spots(data, 1.3, read_noise_photons=1.5, offset=factor * tail)
        shift = np.abs(refit.theta[:, :4] - first.theta[:, :4]) / first.crlb[:, :4]
        if factor == 1.02:
            assert not moved.any() and np.all(shift < REFIT_TOLERANCE)
        else:
            assert moved.all() and np.median(shift.max(axis=1)) > REFIT_TOLERANCE
    assert passes.offset_moved(first.theta, np.full_like(tail, np.nan), tail).all()  # no fit yet: moved


def test_known_pooled_p_values_are_reused_and_equal_a_fresh_test() -> None:
    rng = np.random.default_rng(3)
    own = rng.poisson(20.0, (6, 24, 24)).astype(np.float32)
    own[2, 10:13, 10:13] += 60.0
    sums, n_frames = own.sum(axis=0, keepdims=True).repeat(6, axis=0), np.full(6, 6)
    t, oy, ox = rng.integers(0, 6, 40), rng.integers(0, 13, 40), rng.integers(0, 13, 40)
    templates = psf_templates(np.full(40, 5.5), np.full(40, 5.5), 1.3, 11)
    kw = {"box": 11, "read_noise_photons": 1.5, "excess_noise": 1.0}
    p, p_frame, p_pool = acceptance_p_values(own, (sums, n_frames), t, oy, ox, templates, **kw)
    known = np.where(np.arange(40) % 2 == 0, p_pool, np.nan)
    again = acceptance_p_values(own, (sums, n_frames), t, oy, ox, templates, p_pool=known, **kw)
    for a, b in zip((p, p_frame, p_pool), again, strict=True):
        np.testing.assert_array_equal(a, b)
    _, _, none = acceptance_p_values(own, None, t, oy, ox, templates, **kw)
    assert np.isnan(none).all()


def test_a_sweep_keeps_a_molecule_fitted_twice_where_refitting_both_at_once_loses_it() -> None:
    # two candidates one pixel apart fit the same bright molecule; refitted both at once (Jacobi), each
    # holds the other's 3,000 photons fixed and is left with the tail; colour by colour, the second
    # holds the first's new fit and takes the molecule back
    rng = np.random.default_rng(4)
    clean = render_spots(np.array([12.4]), np.array([11.7]), np.array([3000.0]), 1.3, (1, 24, 24)) + 20.0
    passes = _passes((rng.poisson(clean + 1.5**2) - 1.5**2).astype(np.float32))
    spots = passes.test_and_fit(Candidates(np.zeros(2, np.int64), np.array([11, 12]), np.array([12, 12]), np.ones(2)))
    assert len(spots) == 2 and np.all(spots.res.theta[:, 2] > 2500)

    at_once = spots.copy()
    passes.refit(at_once, np.arange(2))
    assert np.all(at_once.res.theta[:, 2] < 500)  # the molecule is lost

    swept, n_refit = passes.sweep(spots)
    x, y = swept.xy_px()
    brightest = np.argmax(swept.res.theta[:, 2])
    assert n_refit == 2 and swept.res.theta[:, 2].sum() == pytest.approx(3000, rel=0.1)
    assert abs(x[brightest] - 12.4) < 0.2 and abs(y[brightest] - 11.7) < 0.2


def test_the_spots_a_sweep_refits_together_do_not_reach_each_others_fit_box(monkeypatch: pytest.MonkeyPatch) -> None:
    # refitted together, spots must not hold each other's old fits: no molecule of a colour may put
    # photons into the fit box of another (its centre pixel within the patch radius of that box)
    from smlmdn.localize.detect import detect
    from smlmdn.localize.neighbours import patch_radius

    rng = np.random.default_rng(5)
    n = 60
    frame, x, y = rng.integers(0, 3, n), rng.uniform(2, 46, n), rng.uniform(2, 46, n)
    clean = render_spots(x, y, rng.uniform(1500, 4000, n), 1.3, (3, 48, 48), frame=frame) + 20.0
    passes = _passes((rng.poisson(clean + 1.5**2) - 1.5**2).astype(np.float32))
    spots = passes.test_and_fit(detect(passes.own, 1.3, 7, 4.0))
    groups: list[tuple[np.ndarray, ...]] = []
    refit = BlockPasses.refit

    def recording(self: BlockPasses, sp: Spots, among: np.ndarray, test: bool = False) -> int:
        cx, cy = sp.xy_px()
        groups.append((sp.cand.frame[among], sp.oy[among], sp.ox[among], np.floor(cx[among]), np.floor(cy[among])))
        return refit(self, sp, among, test)

    monkeypatch.setattr(BlockPasses, "refit", recording)
    passes.sweep(spots)

    r, b = patch_radius(1.3), 7
    assert len(groups) > 1 and sum(len(g[0]) for g in groups) == len(spots)
    for f, oy, ox, px, py in groups:
        same = f[:, None] == f[None, :]
        reach_y = (py[None, :] >= oy[:, None] - r) & (py[None, :] <= oy[:, None] + b - 1 + r)
        reach_x = (px[None, :] >= ox[:, None] - r) & (px[None, :] <= ox[:, None] + b - 1 + r)
        hits = same & reach_y & reach_x
        np.fill_diagonal(hits, False)
        assert not hits.any()
