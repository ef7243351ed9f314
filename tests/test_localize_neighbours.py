"""The compiled window photons of known molecules equal the rendered movie cut into boxes and filtered, and the render."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from smlmdn.localize.neighbours import Molecules
from smlmdn.psf import render_spots

SIGMA_PX = 1.3
SHAPE = (4, 70, 58)  # several 16 px grid cells per frame: windows see only the cells near them


def _molecules(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Molecules everywhere, some beyond the frame edge, all frames but the last (which stays empty)."""
    frame = rng.integers(0, SHAPE[0] - 1, n)
    x = rng.uniform(-2.0, SHAPE[2] + 2.0, n)
    y = rng.uniform(-2.0, SHAPE[1] + 2.0, n)
    return frame, x, y, rng.uniform(50.0, 3000.0, n)


def _windows(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, ...]:
    """Window corners, some reaching beyond the frame."""
    return (
        rng.integers(0, SHAPE[0], n),
        rng.integers(-size // 2, SHAPE[1] - size // 2, n),
        rng.integers(-size // 2, SHAPE[2] - size // 2, n),
    )


def _cut(movie: np.ndarray, t: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
    """Boxes of ``movie`` (zero beyond its edges)."""
    pad = np.pad(movie, ((0, 0), (size, size), (size, size)))
    ar = np.arange(size)
    return pad[t[:, None, None], (y0[:, None] + size + ar)[:, :, None], (x0[:, None] + size + ar)[:, None, :]]


@pytest.mark.parametrize("size", [7, 13])
def test_window_boxes_equal_boxes_of_the_rendered_movie(size: int) -> None:
    rng = np.random.default_rng(3)
    frame, x, y, photons = _molecules(rng, 300)
    movie = render_spots(x, y, photons, SIGMA_PX, SHAPE, frame=frame)
    mol = Molecules.of(frame, x, y, photons, SHAPE, SIGMA_PX)
    t, y0, x0 = _windows(rng, 200, size)

    got = mol.boxes(t, y0, x0, size)

    np.testing.assert_allclose(got, _cut(movie, t, y0, x0, size), rtol=1e-12, atol=1e-9)


def test_window_boxes_leave_out_the_excluded_molecule() -> None:
    rng = np.random.default_rng(4)
    frame, x, y, photons = _molecules(rng, 40)
    mol = Molecules.of(frame, x, y, photons, SHAPE, SIGMA_PX)
    k = np.arange(40)
    y0, x0 = np.floor(y).astype(int) - 3, np.floor(x).astype(int) - 3
    own = render_spots(x, y, photons, SIGMA_PX, (40, *SHAPE[1:]), frame=k)  # each molecule alone in a frame
    everyone = render_spots(x, y, photons, SIGMA_PX, SHAPE, frame=frame)

    got = mol.boxes(frame, y0, x0, 7, exclude=k)

    np.testing.assert_allclose(got, _cut(everyone, frame, y0, x0, 7) - _cut(own, k, y0, x0, 7), rtol=1e-9, atol=1e-9)


def test_window_sums_equal_the_moving_sums_of_the_rendered_movie() -> None:
    rng = np.random.default_rng(5)
    frame, x, y, photons = _molecules(rng, 300)
    movie = render_spots(x, y, photons, SIGMA_PX, SHAPE, frame=frame)
    sums = ndimage.uniform_filter(movie, size=(1, 13, 13), mode="constant") * 13**2
    mol = Molecules.of(frame, x, y, photons, SHAPE, SIGMA_PX)
    t, r, c = rng.integers(0, SHAPE[0], 300), rng.integers(0, SHAPE[1], 300), rng.integers(0, SHAPE[2], 300)

    got = mol.sums(t, r - 6, c - 6, 13)

    np.testing.assert_allclose(got, sums[t, r, c], rtol=1e-9, atol=1e-9)


def test_no_molecules_and_no_windows() -> None:
    empty = Molecules.of(np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros(0), SHAPE, SIGMA_PX)
    assert np.all(empty.boxes(np.array([1]), np.array([0]), np.array([0]), 5) == 0)
    assert empty.sums(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), 5).shape == (0,)


def _brightest_apart_reference(frame: np.ndarray, x: np.ndarray, y: np.ndarray, photons: np.ndarray, d: float):
    """Brightest first, each kept molecule drops the others of its frame within ``d`` (k-d tree, as written first)."""
    from scipy.spatial import cKDTree

    keep = np.ones(len(x), dtype=bool)
    tree = cKDTree(np.column_stack([x, y, frame * 1e6]))
    for i in np.argsort(-photons, kind="stable"):
        if keep[i]:
            for j in tree.query_ball_point([x[i], y[i], frame[i] * 1e6], d):
                keep[j] = keep[j] and j == i
    return keep


def test_brightest_apart_equals_the_greedy_reference() -> None:
    rng = np.random.default_rng(6)
    frame, x, y, photons = _molecules(rng, 400)  # about 130 per frame: many close pairs and chains
    photons[::7] = photons[3]  # ties
    mol = Molecules.of(frame, x, y, photons, SHAPE, SIGMA_PX)

    keep = mol.brightest_apart(1.5 * SIGMA_PX)

    np.testing.assert_array_equal(keep, _brightest_apart_reference(frame, x, y, photons, 1.5 * SIGMA_PX))
    assert 0 < keep.sum() < len(keep)


def test_render_equals_render_spots() -> None:
    # the residual pass subtracts this movie: the same photons as smlmdn.psf.render_spots, edges included
    rng = np.random.default_rng(6)
    frame, x, y, photons = _molecules(rng, 300)
    got = Molecules.of(frame, x, y, photons, SHAPE, SIGMA_PX).render()
    want = render_spots(x, y, photons, SIGMA_PX, SHAPE, frame=frame)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert not got[-1].any()


def test_colours_part_the_molecules_that_reach_each_other() -> None:
    # Gauss-Seidel sweeps refit one colour at a time: no two molecules of a colour may reach each other
    rng = np.random.default_rng(7)
    frame, x, y, photons = _molecules(rng, 400)
    reach = 8
    colour = Molecules.of(frame, x, y, photons, SHAPE, SIGMA_PX).colours(reach)

    px, py = np.floor(x), np.floor(y)
    near = (
        (frame[:, None] == frame[None, :])
        & (np.abs(px[:, None] - px[None, :]) <= reach)
        & (np.abs(py[:, None] - py[None, :]) <= reach)
    )
    np.fill_diagonal(near, False)
    assert not (near & (colour[:, None] == colour[None, :])).any()
    assert colour.min() == 0 and colour.max() <= near.sum(axis=1).max()  # greedy: at most max degree + 1 colours
    assert set(np.unique(colour)) == set(range(colour.max() + 1))
    assert len(Molecules.of(frame[:0], x[:0], y[:0], photons[:0], SHAPE, SIGMA_PX).colours(reach)) == 0
