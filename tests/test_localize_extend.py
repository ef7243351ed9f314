"""Blinks extended by a known-position test: dim edge frames found, nothing where the molecule is off."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from smlmdn.camera import Camera
from smlmdn.localize import localize
from smlmdn.localize.extend import extension_candidates, known_position_test, member_keys, own_frames, track_candidates
from smlmdn.localize.link import Tracks
from smlmdn.psf import render_spots

CAMERA = Camera(offset=100.0, e_per_adu=0.5, read_noise=1.5, pixel_size=100.0)


def _movie(
    rng: np.random.Generator, frames: int, size: int, spots: list[tuple[int, float, float, float]]
) -> np.ndarray:
    """Raw photons (T, Y, X): background 15 plus ``spots`` (frame, x px, y px, photons), Poisson + read noise."""
    clean = np.full((frames, size, size), 15.0)
    for f, x, y, n in spots:
        clean[f] += render_spots(np.array([x]), np.array([y]), np.array([n]), 1.3, (size, size))
    return (rng.poisson(clean) + rng.normal(0, CAMERA.read_noise_photons, clean.shape)).astype(np.float32)


def test_candidates_are_the_frames_next_to_each_track_and_its_gaps() -> None:
    locs = pd.DataFrame(
        {
            "frame": [0, 1, 5, 6, 8],
            "track": [0, 0, 1, 1, 1],
            "x_linked_nm": [10.0, 10.0, 50.0, 50.0, 50.0],
            "y_linked_nm": [20.0, 20.0, 60.0, 60.0, 60.0],
        }
    )
    cand = extension_candidates(locs, n_frames=9)
    got = sorted(zip(cand["track"], cand["frame"], strict=True))
    assert got == [(0, 2), (1, 4), (1, 7)]  # frame -1 and 9 lie outside the movie
    assert (cand.loc[cand["track"] == 1, ["x_nm", "y_nm"]].to_numpy() == [50.0, 60.0]).all()


def test_track_candidates_equal_the_definition_on_random_tracks() -> None:
    """Every track's span plus one frame each side, less its members, inside the movie; by frame, then track."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        n_frames, n_tracks = int(rng.integers(1, 25)), int(rng.integers(0, 12))
        frames = [
            np.sort(rng.choice(n_frames, int(rng.integers(1, n_frames + 1)), replace=False)) for _ in range(n_tracks)
        ]
        track = np.repeat(np.arange(n_tracks), [len(f) for f in frames]).astype(np.int64)
        frame = np.concatenate(frames or [np.zeros(0, np.int64)]).astype(np.int64)
        shuffle = rng.permutation(len(track))  # members come in table order, not by track
        tracks = Tracks(
            n=np.array([len(f) for f in frames], dtype=np.int64),
            x_nm=rng.random(n_tracks),
            y_nm=rng.random(n_tracks),
            crlb_nm=rng.random(n_tracks),
        )
        keys = member_keys(track[shuffle], frame[shuffle], n_frames)
        cand = track_candidates(tracks, keys, n_frames)
        assert track_candidates(tracks, np.concatenate([keys, keys[:3]]), n_frames).equals(cand)  # repeats: no change
        want = sorted(
            (g, k)
            for k, f in enumerate(frames)
            for g in range(f[0] - 1, f[-1] + 2)
            if 0 <= g < n_frames and g not in set(f.tolist())
        )
        assert list(cand.columns) == ["track", "frame"]
        assert list(zip(cand["frame"], cand["track"], strict=True)) == want


def test_dim_edge_frames_of_blinks_are_added_at_their_positions_and_nothing_beyond() -> None:
    rng = np.random.default_rng(1)
    spots, edges = [], set()
    for k in range(12):  # one blink every 15 frames: 5 bright frames between two dim edge frames
        x, y, f0 = rng.uniform(6, 18), rng.uniform(6, 18), 15 * k + 5
        spots += [(f, x, y, 1500.0) for f in range(f0, f0 + 5)] + [(f0 - 1, x, y, 60.0), (f0 + 5, x, y, 60.0)]
        edges |= {f0 - 1, f0 + 5}
    raw = _movie(rng, 185, 24, spots)
    locs = localize(raw, CAMERA, progress=False)
    added = locs[locs["extended"]]
    own_edges = edges & set(own_frames(locs)["frame"])
    # the search finds few dim edges, the known-position test most of the rest, and (almost) nothing
    # where the molecule is off: Benjamini-Hochberg at 5 % allows a stray one
    assert len(set(added["frame"]) - edges) <= 1
    assert len(own_edges | set(added["frame"])) >= 0.7 * len(edges) > len(own_edges) + 5
    assert locs.attrs["n_extended"] == len(added)
    # added rows carry their blink's pooled position; the track counts them
    for _, row in added.iterrows():
        members = locs[locs["track"] == row["track"]]
        assert np.allclose(members[["x_linked_nm", "y_linked_nm"]], row[["x_nm", "y_nm"]].to_numpy(float))
        assert (members["n_track"] == len(members)).all()
    assert not localize(raw, CAMERA, progress=False, extend=False)["extended"].any()


def test_p_values_are_uniform_where_the_molecule_is_off_next_to_a_known_neighbour() -> None:
    """Pure background at the tested position, a bright fitted neighbour 2 sigma away: p ~ U(0, 1)."""
    rng = np.random.default_rng(2)
    n, size = 400, 24
    spots = [(f, 12.0 + 2.6, 12.0, 2000.0) for f in range(n)]
    raw = _movie(rng, n, size, spots)
    cand = pd.DataFrame({"track": np.arange(n), "frame": np.arange(n), "x_nm": 1200.0, "y_nm": 1200.0})
    known = pd.DataFrame({"frame": np.arange(n), "x_nm": 1460.0, "y_nm": 1200.0, "photons": 2000.0})
    kw = dict(sigma_px=1.3, box=11, pixel_size_nm=100.0, read_noise_photons=CAMERA.read_noise_photons, excess_noise=1.0)
    p, _, _ = known_position_test(raw.astype(np.float64), 0, cand, known, **kw)
    assert stats.kstest(p, "uniform").pvalue > 0.01
    # without the neighbour's photons in both hypotheses, they would pass for the tracked molecule
    p_blind, _, _ = known_position_test(raw.astype(np.float64), 0, cand, known.iloc[:0], **kw)
    assert np.mean(p_blind < 0.01) > 0.5
