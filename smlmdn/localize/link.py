"""Link the localizations of one blink across consecutive frames and pool their positions.

A molecule does not move during a blink, so the localizations it gives in consecutive frames are
independent measurements of one position. Linking (as Picasso's ``link`` and ThunderSTORM's
merging) joins a localization to a *track* still open in the previous ``1 + max_gap`` frames when
the two positions agree within their uncertainties,

    |r - r_track| <= min(max_distance_nm, n_sigma * sqrt(s^2 + s_track^2)),

with ``s`` the localization's CRLB (mean of x and y) and ``s_track`` the standard error of the
track's pooled position so far. The pooled position is the inverse-variance weighted mean of the
members' positions, and its standard error ``1 / sqrt(sum(1 / s_i^2))`` (the maximum-likelihood
combination of independent Gaussian measurements), inflated by the Birge ratio
``sqrt(max(1, chi2 / (2 (n - 1))))`` where ``chi2 = sum((r_i - r_pooled)^2 / s_i^2)`` over both axes
(Birge 1932): when the members scatter more than their CRLBs say (the per-frame CRLB is not attained
at low photon counts, or a blink's frames hold a neighbour's photons), the stated precision grows
with the scatter instead of shrinking with ``1 / sqrt(n)`` regardless. Each member keeps its own fit and gets the
track's pooled position and precision as extra columns, so per-frame tables stay comparable.

Assignment is greedy by distance within each frame (closest pairs first), each track taking at
most one localization per frame.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

#: Columns added by :func:`link`: track id (0-based), members in the track, pooled x/y (nm) and
#: the standard error of the pooled position (nm, per axis).
LINK_COLUMNS = ("track", "n_track", "x_linked_nm", "y_linked_nm", "crlb_linked_nm")
#: Default agreement required between a localization and a track, in combined standard errors.
#: Chosen over the 17-point grid (benchmarks/RESULTS.md, "Temporal evidence"): efficiency of the
#: linked positions against n_sigma 3 (max_gap 1): 5 -> +1.47 on average, never lower (+0.07 to
#: +3.4); 4 -> +1.04; 6 -> +1.54 but -0.36 at 1-frame blinks; 8 -> -2.2 there. The per-frame CRLB
#: understates the error of dim fits, so 3 standard errors split blinks into short tracks.
DEFAULT_N_SIGMA = 5.0
#: Default largest distance ever linked, nm.
DEFAULT_MAX_DISTANCE_NM = 200.0
#: Default number of frames a track may miss and still be continued.
DEFAULT_MAX_GAP = 1


def link(
    locs: pd.DataFrame,
    *,
    max_distance_nm: float = DEFAULT_MAX_DISTANCE_NM,
    n_sigma: float = DEFAULT_N_SIGMA,
    max_gap: int = DEFAULT_MAX_GAP,
) -> pd.DataFrame:
    """Return a copy of ``locs`` with :data:`LINK_COLUMNS` added (see the module docstring).

    ``locs`` needs ``frame`` (0-based), ``x_nm``, ``y_nm``, ``crlb_x_nm``, ``crlb_y_nm``; rows with a
    non-finite CRLB form tracks of their own. ``max_distance_nm`` caps the linking distance (two
    localizations farther apart are never linked); ``n_sigma`` is the agreement test in combined
    standard errors; ``max_gap`` the number of frames a track may miss (0: consecutive frames only).
    Raises ValueError for a non-positive distance or n_sigma or a negative gap.
    """
    if not max_distance_nm > 0 or not n_sigma > 0 or max_gap < 0:
        raise ValueError(
            f"need max_distance_nm > 0, n_sigma > 0 and max_gap >= 0, got {max_distance_nm}, {n_sigma}, {max_gap}"
        )
    out = locs.copy()
    n = len(out)
    frame = out["frame"].to_numpy(dtype=np.int64)
    xy = out[["x_nm", "y_nm"]].to_numpy(dtype=np.float64)
    s = out[["crlb_x_nm", "crlb_y_nm"]].to_numpy(dtype=np.float64).mean(axis=1)
    w = np.where(np.isfinite(s) & (s > 0), 1.0 / np.where(s > 0, s, 1.0) ** 2, 0.0)
    track = np.full(n, -1, dtype=np.int64)
    # per track (at most one per localization): weighted position sums, total weight, last frame
    sum_wxy, sum_w, last = np.zeros((n, 2)), np.zeros(n), np.zeros(n, dtype=np.int64)
    sum_wrr = np.zeros(n)  # weighted sums of squared positions, for the scatter about the pooled position
    n_tracks = 0
    order = np.argsort(frame, kind="stable")
    # the tracks of the last max_gap + 1 frames holding localizations: every track that can still be live
    recent: deque[np.ndarray] = deque(maxlen=max_gap + 1)
    for rows in np.split(order, np.flatnonzero(np.diff(frame[order])) + 1) if n else []:
        f = int(frame[rows[0]])
        near = np.unique(np.concatenate(recent)) if recent else np.zeros(0, np.int64)
        live = near[(last[near] >= f - 1 - max_gap) & (sum_w[near] > 0)]
        if len(live):
            t_xy = sum_wxy[live] / sum_w[live, None]
            hits = cKDTree(t_xy).query_ball_point(xy[rows], r=max_distance_nm)
            li = np.repeat(np.arange(len(rows)), [len(h) for h in hits])
            ti = np.fromiter((k for h in hits for k in h), dtype=np.int64, count=len(li))
            d = np.hypot(*(xy[rows[li]] - t_xy[ti]).T)
            ok = (w[rows[li]] > 0) & (d <= n_sigma * np.sqrt(s[rows[li]] ** 2 + 1.0 / sum_w[live[ti]]))
            for a, k in _closest_first(li[ok], ti[ok], d[ok]):
                track[rows[a]] = live[k]
        new = rows[track[rows] < 0]
        track[new] = np.arange(n_tracks, n_tracks + len(new))
        n_tracks += len(new)
        np.add.at(sum_wxy, track[rows], w[rows, None] * xy[rows])
        np.add.at(sum_w, track[rows], w[rows])
        np.add.at(sum_wrr, track[rows], w[rows] * np.sum(xy[rows] ** 2, axis=1))
        last[track[rows]] = f
        recent.append(track[rows])
    tw = sum_w[track]
    pooled = tw > 0
    safe = np.where(pooled, tw, 1.0)
    n_track = np.bincount(track, minlength=n_tracks)
    sw = np.where(sum_w[:n_tracks] > 0, sum_w[:n_tracks], 1.0)
    chi2 = np.maximum(sum_wrr[:n_tracks] - np.sum(sum_wxy[:n_tracks] ** 2, axis=1) / sw, 0.0)
    birge = np.sqrt(np.maximum(1.0, chi2 / np.maximum(2 * (n_track - 1), 1)))
    out["track"] = track
    out["n_track"] = n_track[track]
    out["x_linked_nm"] = np.where(pooled, sum_wxy[track, 0] / safe, xy[:, 0])
    out["y_linked_nm"] = np.where(pooled, sum_wxy[track, 1] / safe, xy[:, 1])
    out["crlb_linked_nm"] = np.where(pooled, birge[track] / np.sqrt(safe), s)
    return out


def _closest_first(left: np.ndarray, right: np.ndarray, dist: np.ndarray) -> list[tuple[int, int]]:
    """Greedy one-to-one assignment of candidate pairs ``(left[j], right[j])``, closest pairs first."""
    used_l: set[int] = set()
    used_r: set[int] = set()
    pairs = []
    for j in np.argsort(dist, kind="stable"):
        a, b = int(left[j]), int(right[j])
        if a not in used_l and b not in used_r:
            used_l.add(a)
            used_r.add(b)
            pairs.append((a, b))
    return pairs


def linked_positions(locs: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of a linked table (see :func:`link`) whose ``x_nm``/``y_nm`` and CRLB columns are the blink's pooled ones."""
    return locs.assign(
        x_nm=locs["x_linked_nm"],
        y_nm=locs["y_linked_nm"],
        crlb_x_nm=locs["crlb_linked_nm"],
        crlb_y_nm=locs["crlb_linked_nm"],
    )
