"""Extend linked blinks into the frames next to them: a likelihood-ratio test at a known position.

A blink's first and last frames (the molecule switched on or off during the exposure) and frames
inside it whose photon count dipped often hold too few photons to be found by searching the frame,
where every pixel is a hypothesis and the false-discovery rate is controlled over all of them. Their
position, however, is known: the linked track's pooled position (:mod:`smlmdn.localize.link`). One
test per (track, frame) at that position is far more powerful than a search.

For every track, the frame before its first member, the frame after its last and the frames inside
it without a member are tested with the GLRT of :mod:`smlmdn.localize.glrt` (Smith et al. 2015):
H1 ``mu = N g + b + o`` (the PSF ``g`` of known width at the track's position), H0 ``mu = b + o``,
where ``o`` holds the photons of the frame's other localizations rendered from their fits, so a
neighbour's photons are never taken for the tracked molecule. Benjamini-Hochberg at the movie's
false-discovery rate over these tests decides. Accepted frames become rows with ``extended`` set:
their position and precision are the track's pooled ones (the frame adds photons, not a position),
``photons`` and ``bg`` the test's maximum-likelihood estimates, ``p_value``/``p_frame`` the test's.

Measured over the 17-point grid (benchmarks/RESULTS.md, "Temporal evidence: linking settings and
known-position extension"): Jaccard up at every point (+0.4 to +26.9), efficiency of the linked
positions up to +8.3 over linking alone, but down by 0.4-1.3 at the two 2 /um^2 points and at 5,000
photons, where the added frames' pooled positions are poorer; never more than 0.3 below the
per-frame fits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from .glrt import psf_templates
from .glrt_numba import glrt_estimates
from .link import Tracks
from .neighbours import Molecules
from .passes import boxes

#: Tracks with fewer localizations than this are not extended. 1: every track. Measured with 2 (a
#: single fit's position is poorer) at 6 grid points: efficiency -0.2 to -0.8 at the sparse ones
#: (+0.1 at base), +2.1 and +1.3 at the two 2 /um^2 points, where Jaccard fell by 8.4 and 20.8
#: (benchmarks/RESULTS.md, "Temporal evidence").
MIN_TRACK = 1


def own_frames(locs: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of ``locs`` fitted in their own frame (without the rows this extension added)."""
    return locs[~locs["extended"].to_numpy(bool)] if "extended" in locs.columns else locs


def extension_candidates(locs: pd.DataFrame, n_frames: int) -> pd.DataFrame:
    """Return the (track, frame) pairs to test: the frames next to each track and its missing frames.

    ``locs`` is a linked table (``frame``, ``track``, ``x_linked_nm``, ``y_linked_nm``); frames
    outside ``0 .. n_frames - 1`` are dropped. Returns a table with columns ``track``, ``frame`` (int64),
    ``x_nm``, ``y_nm`` (the track's pooled position, nm), sorted by frame (the rule of
    :func:`track_candidates`, for a table in memory).
    """
    track = locs["track"].to_numpy(np.int64)
    frame = locs["frame"].to_numpy(np.int64)
    n_tracks = int(track.max()) + 1 if len(track) else 0
    x, y = np.zeros(n_tracks), np.zeros(n_tracks)
    x[track], y[track] = locs["x_linked_nm"].to_numpy(), locs["y_linked_nm"].to_numpy()
    n = np.bincount(track, minlength=n_tracks)
    tracks = Tracks(n=n, x_nm=x, y_nm=y, crlb_nm=np.full(n_tracks, np.nan))  # CRLB unused
    return with_positions(track_candidates(tracks, member_keys(track, frame, n_frames), n_frames), tracks)


def member_keys(track: np.ndarray, frame: np.ndarray, n_frames: int) -> np.ndarray:
    """One int64 per (track, frame) pair of a movie of ``n_frames`` frames (frames -1 .. n_frames), for :func:`track_candidates`."""
    return track.astype(np.int64) * (n_frames + 2) + frame.astype(np.int64) + 1


def track_candidates(tracks: Tracks, members: np.ndarray, n_frames: int) -> pd.DataFrame:
    """Return the (track, frame) pairs to test for every track of :class:`~smlmdn.localize.link.Tracks`.

    The frame before each track's first member, the frame after its last and the frames in between
    without a member (``members``: :func:`member_keys` of every localization), within ``0 ..
    n_frames - 1``; tracks shorter than :data:`MIN_TRACK` are not extended. Returns a table with columns
    ``track`` and ``frame`` (int64), sorted by frame (stable: by track within a frame); the tracks'
    positions are added by :func:`with_positions`. Memory: 16 bytes per member and 16 per pair. For a
    linked table in memory (:func:`extension_candidates`); a movie's run names the same pairs while it
    links (:meth:`smlmdn.localize.link.Linker.pairs`, tested equal), without the member keys.
    """
    keys = np.sort(members)  # by track, then frame (a repeated key, as from a table linked elsewhere, adds nothing)
    track, frame = _candidate_pairs(keys, n_frames + 2, n_frames, tracks.n, MIN_TRACK)
    return pd.DataFrame({"track": track, "frame": frame}, copy=False)


@njit(cache=True)
def _candidate_pairs(keys, stride, n_frames, n_members, min_track):  # pragma: no cover
    """Return ``(track, frame)`` (int64, by frame, then track) of :func:`track_candidates` from its sorted member keys.

    Each track's frames from one before its first member to one after its last, within the movie, less
    its members: one pass counts them per frame, a second writes each into its frame's place (tracks come
    in id order, so each frame's pairs are in track order: a counting sort, no sorted copies).
    """
    n = keys.shape[0]
    at = np.zeros(n_frames + 1, dtype=np.int64)  # pass 1: pairs per frame; pass 2: where the next one goes
    for fill in range(2):
        if fill:
            for f in range(n_frames):  # at[f + 1] held frame f's count: now frame f's pairs start at at[f]
                at[f + 1] += at[f]
            track, frame = np.empty(at[n_frames], dtype=np.int64), np.empty(at[n_frames], dtype=np.int64)
        i = 0
        while i < n:
            k = keys[i] // stride
            j = i  # the track's members are keys[i:j + 1]
            while j + 1 < n and keys[j + 1] // stride == k:
                j += 1
            if n_members[k] >= min_track:
                first, last = keys[i] % stride - 1, keys[j] % stride - 1  # the track's first and last member frames
                prev = max(first - 2, -1)  # the frame before the first to test
                for m in range(i, j + 2):
                    nxt = keys[m] % stride - 1 if m <= j else min(last + 2, n_frames)  # the next frame not to test
                    for f in range(prev + 1, nxt):  # the frames after the previous member and before this one
                        if fill:
                            track[at[f]], frame[at[f]] = k, f
                            at[f] += 1
                        else:
                            at[f + 1] += 1
                    prev = nxt
            i = j + 1
    return track, frame


def with_positions(cand: pd.DataFrame, tracks: Tracks) -> pd.DataFrame:
    """Return :func:`track_candidates` pairs ``cand`` with their tracks' pooled ``x_nm``, ``y_nm`` (nm) added."""
    k = cand["track"].to_numpy()
    return cand.assign(x_nm=tracks.x_nm[k], y_nm=tracks.y_nm[k])


def known_position_test(
    frames: np.ndarray,
    frame0: int,
    cand: pd.DataFrame,
    known: pd.DataFrame,
    *,
    sigma_px: float,
    box: int,
    pixel_size_nm: float,
    read_noise_photons: float,
    excess_noise: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GLRT of "the tracked molecule is on" for each candidate -> ``(p, photons, bg)``, each float64 (n,).

    ``frames`` (T, Y, X) raw detected photons of movie frames ``frame0 ..``; ``cand`` from
    :func:`extension_candidates`, all within those frames; ``known`` the localizations (``frame``,
    ``x_nm``, ``y_nm``, ``photons``) of the same frames, whose rendered photons enter both hypotheses.
    Windows of side ``box`` px (clipped to the frame) around each position; noise model as
    :func:`smlmdn.localize.glrt.glrt` (compiled: :mod:`smlmdn.localize.glrt_numba`).
    """
    n = len(cand)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    _, ny, nx = frames.shape
    h = box // 2
    t = cand["frame"].to_numpy(np.int64) - frame0
    x, y = cand["x_nm"].to_numpy() / pixel_size_nm, cand["y_nm"].to_numpy() / pixel_size_nm  # px k covers [k, k+1)
    ox = np.clip(np.floor(x).astype(np.int64) - h, 0, nx - box)
    oy = np.clip(np.floor(y).astype(np.int64) - h, 0, ny - box)
    templates = psf_templates(x - ox, y - oy, sigma_px, box)
    # the other localizations' photons in each window, rendered as the multi-emitter pass renders them
    offset = Molecules.of(
        known["frame"].to_numpy(np.int64) - frame0,
        known["x_nm"].to_numpy() / pixel_size_nm,
        known["y_nm"].to_numpy() / pixel_size_nm,
        np.maximum(known["photons"].to_numpy(), 0.0),
        frames.shape,
        sigma_px,
    ).boxes(t, oy, ox, box)
    _, p, n_hat, b_hat = glrt_estimates(
        boxes(frames, t, oy, ox, box),
        templates,
        offset=offset,
        read_noise_photons=read_noise_photons,
        excess_noise=excess_noise,
    )
    return p, n_hat, b_hat


def accepted_extensions(
    cand: pd.DataFrame, p: np.ndarray, photons: np.ndarray, bg: np.ndarray, threshold: float
) -> pd.DataFrame:
    """Return the candidates whose test Benjamini-Hochberg accepts: ``p <= threshold`` and finite photons.

    ``cand`` (rows of :func:`track_candidates`) with their test results ``p``, ``photons``, ``bg`` (n,);
    ``threshold``: :class:`~smlmdn.localize.glrt.StepUp`'s over the p-values of every candidate tested
    (at the movie's false-discovery rate). Returns the accepted rows (in order) with ``p``, ``photons``
    and ``bg`` added.
    """
    keep = (p <= threshold) & np.isfinite(photons)
    return cand[keep].assign(p=p[keep], photons=photons[keep], bg=bg[keep])


def extension_rows(acc: pd.DataFrame, tracks: Tracks, sigma_nm: np.ndarray) -> pd.DataFrame:
    """Localization rows for accepted extensions ``acc`` (:func:`accepted_extensions`).

    ``tracks``: the linked tracks (their pooled position and precision are copied); ``sigma_nm``
    (per track): the PSF width of each track's first localization. Returns a table with the columns
    of a linked table but ``n_track`` (``extended`` True, ``iterations`` 0, ``loglik``/``llr`` and the
    photon/background CRLBs NaN: no fit was made).
    """
    k = acc["track"].to_numpy(np.int64)
    nan = np.full(len(acc), np.nan)
    crlb = tracks.crlb_nm[k]
    p = acc["p"].to_numpy()
    return pd.DataFrame(
        {
            "frame": acc["frame"].to_numpy(np.int64),
            "x_nm": tracks.x_nm[k],
            "y_nm": tracks.y_nm[k],
            "photons": acc["photons"].to_numpy(),
            "bg": acc["bg"].to_numpy(),
            "sigma_nm": sigma_nm[k],
            "crlb_x_nm": crlb,
            "crlb_y_nm": crlb,
            "crlb_photons": nan,
            "crlb_bg": nan,
            "loglik": nan,
            "llr": nan,
            "iterations": np.zeros(len(acc), np.int32),
            "p_value": p,
            "p_frame": p,
            "saturated": np.zeros(len(acc), bool),
            "track": k,
            "x_linked_nm": tracks.x_nm[k],
            "y_linked_nm": tracks.y_nm[k],
            "crlb_linked_nm": crlb,
            "extended": np.ones(len(acc), bool),
        }
    )
