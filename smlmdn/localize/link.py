"""Link the localizations of one blink across consecutive frames and pool their positions.

A molecule does not move during a blink, so the localizations it gives in consecutive frames are
independent measurements of one position. Linking (as Picasso's ``link`` and ThunderSTORM's
merging) joins a localization to a *track* still open in the previous ``1 + max_gap`` frames when
the two positions agree within their uncertainties,

    |r - r_track| <= min(max_distance_nm, n_sigma * sqrt(s^2 + s_track^2)),

with ``s`` the localization's CRLB (mean of x and y) and ``s_track`` the standard error of the
track's pooled position so far. The pooled position is the inverse-variance weighted mean of the
members' positions, and its standard error ``1 / sqrt(sum(1 / s_i^2))`` (the maximum-likelihood
combination of independent Gaussian measurements). Each member keeps its own fit and gets the
track's pooled position and precision as extra columns, so per-frame tables stay comparable.

Assignment is greedy by distance within each frame (closest pairs first), each track taking at
most one localization per frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

#: Columns added by :func:`link`: track id (0-based), members in the track, pooled x/y (nm) and
#: the standard error of the pooled position (nm, per axis).
LINK_COLUMNS = ("track", "n_track", "x_linked_nm", "y_linked_nm", "crlb_linked_nm")
#: Default agreement required between a localization and a track, in combined standard errors.
DEFAULT_N_SIGMA = 3.0
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
        raise ValueError(f"need max_distance_nm > 0, n_sigma > 0 and max_gap >= 0, got {max_distance_nm}, {n_sigma}, {max_gap}")
    out = locs.copy()
    n = len(out)
    frame = out["frame"].to_numpy(dtype=np.int64)
    xy = out[["x_nm", "y_nm"]].to_numpy(dtype=np.float64)
    s = out[["crlb_x_nm", "crlb_y_nm"]].to_numpy(dtype=np.float64).mean(axis=1)
    w = np.where(np.isfinite(s) & (s > 0), 1.0 / np.maximum(s, 1e-12) ** 2, 0.0)
    track = np.full(n, -1, dtype=np.int64)
    # per track: weighted sums (for the pooled position), total weight, last frame
    sum_wx: list[float] = []
    sum_wy: list[float] = []
    sum_w: list[float] = []
    last: list[int] = []
    order = np.argsort(frame, kind="stable")
    bounds = np.flatnonzero(np.diff(frame[order])) + 1
    open_tracks = np.zeros(0, dtype=np.int64)
    for rows in np.split(order, bounds) if n else []:
        f = int(frame[rows[0]])
        open_tracks = open_tracks[np.asarray([last[k] for k in open_tracks], dtype=np.int64) >= f - 1 - max_gap] if len(open_tracks) else open_tracks
        if len(open_tracks):
            tw = np.asarray([sum_w[k] for k in open_tracks])
            txy = np.column_stack([[sum_wx[k] for k in open_tracks], [sum_wy[k] for k in open_tracks]]) / np.maximum(tw, 1e-300)[:, None]
            ok_t = tw > 0
            pairs = cKDTree(txy[ok_t]).query_ball_point(xy[rows], r=max_distance_nm) if ok_t.any() else [[] for _ in rows]
            cand_t = np.flatnonzero(ok_t)
            li, ti, dist = [], [], []
            for a, hits in enumerate(pairs):
                for h in hits:
                    k = cand_t[h]
                    d = float(np.hypot(*(xy[rows[a]] - txy[k])))
                    limit = n_sigma * np.sqrt(s[rows[a]] ** 2 + 1.0 / tw[k]) if w[rows[a]] > 0 else -1.0
                    if d <= limit:
                        li.append(a)
                        ti.append(k)
                        dist.append(d)
            used_l: set[int] = set()
            used_t: set[int] = set()
            for j in np.argsort(dist, kind="stable"):
                a, k = li[j], ti[j]
                if a in used_l or k in used_t:
                    continue
                used_l.add(a)
                used_t.add(k)
                track[rows[a]] = open_tracks[k]
        for a, row in enumerate(rows):
            if track[row] < 0:  # start a new track
                track[row] = len(sum_w)
                sum_wx.append(0.0)
                sum_wy.append(0.0)
                sum_w.append(0.0)
                last.append(f)
                open_tracks = np.append(open_tracks, track[row])
            k = track[row]
            sum_wx[k] += w[row] * xy[row, 0]
            sum_wy[k] += w[row] * xy[row, 1]
            sum_w[k] += w[row]
            last[k] = f
    tw = np.asarray(sum_w)[track] if n else np.zeros(0)
    pooled = tw > 0
    out["track"] = track
    out["n_track"] = np.bincount(track, minlength=len(sum_w))[track] if n else np.zeros(0, dtype=np.int64)
    out["x_linked_nm"] = np.where(pooled, np.asarray(sum_wx)[track] / np.maximum(tw, 1e-300), xy[:, 0]) if n else np.zeros(0)
    out["y_linked_nm"] = np.where(pooled, np.asarray(sum_wy)[track] / np.maximum(tw, 1e-300), xy[:, 1]) if n else np.zeros(0)
    out["crlb_linked_nm"] = np.where(pooled, 1.0 / np.sqrt(np.maximum(tw, 1e-300)), s) if n else np.zeros(0)
    return out
