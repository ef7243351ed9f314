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

from .glrt import benjamini_hochberg, psf_templates
from .glrt_numba import glrt_estimates
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

    ``locs`` is a linked table (``frame``, ``track``, ``x_linked_nm``, ``y_linked_nm``); frames outside
    ``0 .. n_frames - 1`` are dropped. Returns a table with columns ``track``, ``frame`` (int64),
    ``x_nm``, ``y_nm`` (the track's pooled position, nm), sorted by frame.
    """
    if len(locs) == 0:
        return pd.DataFrame({"track": [], "frame": [], "x_nm": [], "y_nm": []}).astype(
            {"track": np.int64, "frame": np.int64}
        )
    locs = locs[[c for c in ("track", "frame", "x_linked_nm", "y_linked_nm", "n_track") if c in locs.columns]]
    locs = locs[locs["n_track"].to_numpy() >= MIN_TRACK] if "n_track" in locs.columns else locs
    g = locs.groupby("track", sort=True)
    span_of = g["frame"].agg(["min", "max"])
    tracks, first, last = span_of.index.to_numpy(), span_of["min"].to_numpy(), span_of["max"].to_numpy()
    span = last - first + 3  # one frame before and one after
    track = np.repeat(tracks, span)
    frame = np.repeat(first - 1, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
    # (track, frame) pairs as one integer each (frames -1 .. n_frames): is the track in that frame already?
    member = locs["track"].to_numpy(np.int64) * (n_frames + 2) + locs["frame"].to_numpy(np.int64) + 1
    keep = (frame >= 0) & (frame < n_frames) & ~np.isin(track * (n_frames + 2) + frame + 1, member)
    pos = g[["x_linked_nm", "y_linked_nm"]].first()
    out = pd.DataFrame({"track": track[keep], "frame": frame[keep]})
    out["x_nm"] = pos["x_linked_nm"].reindex(out["track"]).to_numpy()
    out["y_nm"] = pos["y_linked_nm"].reindex(out["track"]).to_numpy()
    return out.sort_values("frame", kind="stable").reset_index(drop=True)


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


def extension_rows(
    cand: pd.DataFrame,
    p: np.ndarray,
    photons: np.ndarray,
    bg: np.ndarray,
    locs: pd.DataFrame,
    fdr: float,
) -> pd.DataFrame:
    """Rows for the candidates Benjamini-Hochberg accepts at ``fdr`` over all ``len(cand)`` tests.

    ``cand`` (:func:`extension_candidates`) with its test results ``p``, ``photons``, ``bg`` (n,); ``locs``
    the linked table (the tracks' pooled precision and PSF width are copied from it). Returns a table
    with the columns of ``locs`` (``extended`` True, ``iterations`` 0, ``loglik``/``llr`` and the
    photon/background CRLBs NaN: no fit was made).
    """
    keep = benjamini_hochberg(p, len(p), fdr) & np.isfinite(photons)
    acc = cand[keep]
    per_track = locs.groupby("track")[["crlb_linked_nm", "x_linked_nm", "y_linked_nm", "sigma_nm"]].first()
    tr = per_track.reindex(acc["track"].to_numpy())
    nan = np.full(len(acc), np.nan)
    rows = pd.DataFrame(
        {
            "frame": acc["frame"].to_numpy(np.int64),
            "x_nm": acc["x_nm"].to_numpy(),
            "y_nm": acc["y_nm"].to_numpy(),
            "photons": photons[keep],
            "bg": bg[keep],
            "sigma_nm": tr["sigma_nm"].to_numpy(),
            "crlb_x_nm": tr["crlb_linked_nm"].to_numpy(),
            "crlb_y_nm": tr["crlb_linked_nm"].to_numpy(),
            "crlb_photons": nan,
            "crlb_bg": nan,
            "loglik": nan,
            "llr": nan,
            "iterations": np.zeros(len(acc), np.int32),
            "p_value": p[keep],
            "p_frame": p[keep],
            "saturated": np.zeros(len(acc), bool),
            "track": acc["track"].to_numpy(np.int64),
            "x_linked_nm": tr["x_linked_nm"].to_numpy(),
            "y_linked_nm": tr["y_linked_nm"].to_numpy(),
            "crlb_linked_nm": tr["crlb_linked_nm"].to_numpy(),
            "extended": np.ones(len(acc), bool),
        }
    )
    return rows
