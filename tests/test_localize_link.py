"""Linking the frames of a blink: one track per blink, pooled precision, never beyond the stated distance."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from smlmdn.camera import Camera
from smlmdn.localize import localize
from smlmdn.localize.extend import member_keys, track_candidates
from smlmdn.localize.link import Linker, link
from smlmdn.psf import render_spots

CAMERA = Camera(offset=100.0, e_per_adu=0.5, read_noise=1.5, pixel_size=100.0)


def _table(frame, x, y, crlb) -> pd.DataFrame:
    frame = np.asarray(frame)
    c = np.broadcast_to(np.asarray(crlb, dtype=float), frame.shape)
    return pd.DataFrame(
        {"frame": frame, "x_nm": np.asarray(x, float), "y_nm": np.asarray(y, float), "crlb_x_nm": c, "crlb_y_nm": c}
    )


def test_one_simulated_blink_is_one_track_with_pooled_precision() -> None:
    rng = np.random.default_rng(4)
    frames, size, on = 30, 24, np.arange(10, 16)
    clean = np.full((frames, size, size), 15.0)
    clean[on] += render_spots(np.array([12.3]), np.array([11.6]), np.array([1500.0]), 1.3, (size, size))
    raw = (rng.poisson(clean) + rng.normal(0, CAMERA.read_noise_photons, clean.shape)).astype(np.float32)
    # linking alone: the extension (tests/test_localize_extend.py) may add an edge frame at its 5 % level
    locs = link(localize(raw, CAMERA, progress=False, extend=False))
    blink = locs[locs["frame"].isin(on)]
    assert len(blink) == len(on) and blink["track"].nunique() == 1
    assert (blink["n_track"] == len(on)).all()
    crlb = blink[["crlb_x_nm", "crlb_y_nm"]].to_numpy().mean(axis=1)
    w = 1.0 / crlb**2
    pooled = blink[["x_linked_nm", "y_linked_nm"]].iloc[0].to_numpy()
    chi2 = np.sum(w * np.sum((blink[["x_nm", "y_nm"]].to_numpy() - pooled) ** 2, axis=1))
    birge = np.sqrt(max(1.0, chi2 / (2 * (len(on) - 1))))
    assert blink["crlb_linked_nm"].iloc[0] == pytest.approx(birge / np.sqrt(np.sum(w)))
    err_single = np.hypot(blink["x_nm"] - 1230.0, blink["y_nm"] - 1160.0)
    err_linked = np.hypot(blink["x_linked_nm"].iloc[0] - 1230.0, blink["y_linked_nm"].iloc[0] - 1160.0)
    assert err_linked < 4 * blink["crlb_linked_nm"].iloc[0] and err_linked < err_single.max()


def test_never_links_molecules_farther_apart_than_the_stated_distance() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for pair in range(50):  # pairs of molecules 210-400 nm apart, both on in the same 5 frames
        sep = rng.uniform(210.0, 400.0)
        angle = rng.uniform(0, 2 * np.pi)
        centre = rng.uniform(0, 1e5, 2)
        for mol, sign in enumerate((-0.5, 0.5)):
            pos = centre + sign * sep * np.array([np.cos(angle), np.sin(angle)])
            for f in range(10 * pair, 10 * pair + 5):
                rows.append((f, *(pos + rng.normal(0, 15.0, 2)), 2 * pair + mol))
    t = pd.DataFrame(rows, columns=["frame", "x_nm", "y_nm", "molecule"]).assign(crlb_x_nm=300.0, crlb_y_nm=300.0)
    out = link(t, max_distance_nm=200.0, n_sigma=10.0)  # the sigma test alone would link everything
    assert (out.groupby("track")["molecule"].nunique() == 1).all()
    assert out["track"].nunique() == 100  # and each molecule's blink is one track


def test_gaps_and_disagreeing_positions() -> None:
    t = _table([0, 1, 4, 5], [0.0, 5.0, 0.0, 3.0], [0.0] * 4, 10.0)
    assert link(t, max_gap=1)["track"].tolist() == [0, 0, 1, 1]  # frames 2 and 3 missing: a gap of 2 frames
    assert link(t, max_gap=2)["track"].nunique() == 1
    far = _table([0, 1], [0.0, 100.0], [0.0, 0.0], 10.0)  # 100 nm apart, combined error 14 nm: not one molecule
    assert link(far)["track"].nunique() == 2
    assert len(link(_table([], [], [], 1.0))) == 0


@pytest.mark.parametrize("scatter", [1.0, 3.0])
def test_linked_precision_grows_with_the_scatter_of_the_members(scatter: float) -> None:
    # 400 blinks of 8 frames, each member stating a 10 nm CRLB; members scattered by `scatter` x 10 nm:
    # the stated linked precision follows the real error of the pooled position (Birge ratio)
    rng = np.random.default_rng(int(scatter))
    n, k, s = 400, 8, 10.0
    frame = np.tile(np.arange(k), n) + np.repeat(np.arange(n) * (k + 5), k)
    centre = np.repeat(rng.uniform(0, 1e6, (n, 2)), k, axis=0)
    xy = centre + rng.normal(0.0, scatter * s, (n * k, 2))
    out = link(_table(frame, xy[:, 0], xy[:, 1], s), max_distance_nm=1e3, n_sigma=50.0)
    assert out["track"].nunique() == n
    first = out.groupby("track").head(1)
    err = (first[["x_linked_nm", "y_linked_nm"]].to_numpy() - centre[first.index]) / first[
        ["crlb_linked_nm"]
    ].to_numpy()
    assert 0.8 < np.std(err) < 1.15  # honest: without the Birge ratio, 3.0 at scatter 3


def _reference_tracks(locs: pd.DataFrame, max_distance: float, n_sigma: float, max_gap: int) -> np.ndarray:
    """The linking rule of smlmdn.localize.link written plainly: every localization against every open track."""
    frame = locs["frame"].to_numpy()
    xy = locs[["x_nm", "y_nm"]].to_numpy(float)
    s = locs[["crlb_x_nm", "crlb_y_nm"]].to_numpy(float).mean(axis=1)
    w = np.where(np.isfinite(s) & (s > 0), 1.0 / np.where(s > 0, s, 1.0) ** 2, 0.0)
    track = np.full(len(locs), -1)
    sums: list[list[float]] = []  # per track: sum w x, sum w y, sum w, last frame
    for f in np.unique(frame):
        rows = np.flatnonzero(frame == f)
        live = [k for k, t in enumerate(sums) if t[3] >= f - 1 - max_gap and t[2] > 0]
        pairs = []
        for a, r in enumerate(rows):
            for k in live:
                px, py, pw = sums[k][0] / sums[k][2], sums[k][1] / sums[k][2], sums[k][2]
                d = float(np.hypot(xy[r, 0] - px, xy[r, 1] - py))
                if d <= max_distance and w[r] > 0 and d <= n_sigma * np.sqrt(s[r] ** 2 + 1.0 / pw):
                    pairs.append((d, a, k))
        taken: set[int] = set()
        for _, a, k in sorted(pairs, key=lambda p: p[0]):  # stable: ties in (localization, track) order
            if track[rows[a]] < 0 and k not in taken:
                track[rows[a]] = k
                taken.add(k)
        for r in rows:
            if track[r] < 0:
                track[r] = len(sums)
                sums.append([0.0, 0.0, 0.0, f])
            t = sums[track[r]]
            t[0], t[1], t[2], t[3] = t[0] + w[r] * xy[r, 0], t[1] + w[r] * xy[r, 1], t[2] + w[r], f
    return track


@pytest.mark.parametrize(("max_gap", "n_sigma", "grid"), [(0, 3.0, False), (1, 5.0, True), (2, 50.0, True)])
def test_tracks_equal_the_all_pairs_rule(max_gap: int, n_sigma: float, grid: bool) -> None:
    """The grid-indexed linker assigns exactly what comparing every localization with every open track does.

    Crowded frames over several grid cells, positions on a 50 nm lattice for exact distance ties (``grid``),
    some rows without a finite CRLB, frames shuffled.
    """
    rng = np.random.default_rng(max_gap)
    n = 3000
    frame = rng.integers(0, 40, n)
    x, y = rng.uniform(0, 3000, n), rng.uniform(0, 3000, n)
    if grid:
        x, y = np.round(x / 50) * 50, np.round(y / 50) * 50
    crlb = rng.uniform(5, 60, n)
    crlb[rng.random(n) < 0.02] = np.nan
    locs = _table(frame, x, y, crlb)
    got = link(locs, max_distance_nm=200.0, n_sigma=n_sigma, max_gap=max_gap)["track"].to_numpy()
    np.testing.assert_array_equal(got, _reference_tracks(locs, 200.0, n_sigma, max_gap))


def test_linking_block_by_block_equals_linking_the_whole_table() -> None:
    """:class:`Linker` fed the frames in blocks (rows unsorted inside each) gives the tracks and pooled values of :func:`link`."""
    rng = np.random.default_rng(7)
    n = 4000
    frame = rng.integers(0, 60, n)
    locs = _table(frame, rng.uniform(0, 2000, n), rng.uniform(0, 2000, n), rng.uniform(5, 60, n))
    locs.loc[rng.random(n) < 0.02, "crlb_x_nm"] = np.nan
    whole = link(locs)
    linker = Linker()
    track = np.empty(n, dtype=np.int64)
    for b0, b1 in [(0, 1), (1, 17), (17, 18), (18, 45), (45, 60)]:  # frames [b0, b1), one block empty of rows
        rows = np.flatnonzero((frame >= b0) & (frame < b1))
        track[rows] = linker.add(locs.iloc[rows])
    np.testing.assert_array_equal(track, whole["track"].to_numpy())
    tracks = linker.tracks()
    for column, per_track in [("n_track", tracks.n), ("x_linked_nm", tracks.x_nm), ("crlb_linked_nm", tracks.crlb_nm)]:
        np.testing.assert_array_equal(per_track[track], whole[column].to_numpy())
    with pytest.raises(ValueError, match="in order"):
        linker.add(locs.iloc[:5])


@pytest.mark.parametrize("max_gap", [0, 1, 3])
@pytest.mark.parametrize("on_disk", [False, True])
def test_linker_names_the_pairs_the_extension_tests(max_gap: int, on_disk: bool) -> None:
    """Block by block (per-track arrays in memory or on disk), the linker names the pairs of :func:`track_candidates`.

    Every pair once: the frame before each track, the frames it missed and the frame after it, within the movie.
    """
    rng = np.random.default_rng(11)
    n_frames, rows = 90, []
    for _ in range(300):  # blinks of 1-8 frames, a frame missed now and then, some at the movie's ends
        x, y, f0 = rng.uniform(0, 5000), rng.uniform(0, 5000), int(rng.integers(-3, n_frames))
        rows += [
            (f, x, y) for f in range(max(f0, 0), min(f0 + int(rng.integers(1, 9)), n_frames)) if rng.random() < 0.8
        ]
    frame, x, y = (np.array(c) for c in zip(*rows, strict=True))
    locs = _table(frame, x + rng.normal(0, 5, len(frame)), y + rng.normal(0, 5, len(frame)), 10.0)
    linker = Linker(max_gap=max_gap, capacity=len(locs) if on_disk else None)
    track, named = np.empty(len(locs), dtype=np.int64), []
    try:
        edges = [0, 1, 2, 30, 31, 64, n_frames]  # blocks shorter and longer than the gap
        for b0, b1 in itertools.pairwise(edges):
            at = np.flatnonzero((frame >= b0) & (frame < b1))
            track[at] = linker.add(locs.iloc[at])
            linker.advance(b1) if b1 < n_frames else linker.finish(n_frames)
            named.append(np.stack(linker.pairs()))
            later = np.concatenate(named, axis=1)[1]
            assert later.max(initial=-1) < b1 + 1  # never a frame the linker has not reached
        expected = track_candidates(linker.tracks(), member_keys(track, frame, n_frames), n_frames)
        assert np.array_equal(track, link(locs, max_gap=max_gap)["track"].to_numpy())
    finally:
        linker.close()
    k, f = np.concatenate(named, axis=1)
    order = np.lexsort((k, f))
    np.testing.assert_array_equal(k[order], expected["track"].to_numpy())
    np.testing.assert_array_equal(f[order], expected["frame"].to_numpy())
    with pytest.raises(ValueError, match="in order"):
        linker.advance(5)


def test_linker_on_disk_refuses_more_tracks_than_its_capacity() -> None:
    linker = Linker(capacity=2)
    try:
        with pytest.raises(ValueError, match="capacity"):
            linker.add(_table([0, 0, 0], [0.0, 1000.0, 2000.0], [0.0, 0.0, 0.0], 10.0))
    finally:
        linker.close()


def test_frames_beyond_int32_still_link() -> None:
    frame = np.array([2**31 - 1, 2**31, 2**31 + 1], dtype=np.int64)
    locs = pd.DataFrame(
        {"frame": frame, "x_nm": 100.0, "y_nm": 200.0, "crlb_x_nm": 10.0, "crlb_y_nm": 10.0}, index=range(3)
    )
    assert link(locs)["track"].tolist() == [0, 0, 0]
