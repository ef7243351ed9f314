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

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from .store import DiskArrays, fields

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
#: Half the number of linking grid cells per axis (positions within +-2^30 cells of max_distance_nm).
_HALF_CELLS = 1 << 30


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
    Raises ValueError for a non-positive distance or n_sigma or a negative gap. A movie's table can
    also be linked block by block, in frame order, with :class:`Linker` (same tracks).
    """
    linker = Linker(max_distance_nm=max_distance_nm, n_sigma=n_sigma, max_gap=max_gap)
    out = locs.copy(deep=False)  # new columns only: the input's are shared, not changed
    track = linker.add(out)
    tracks = linker.tracks()
    out["track"] = track
    out["n_track"] = tracks.n[track]
    out["x_linked_nm"] = tracks.x_nm[track]
    out["y_linked_nm"] = tracks.y_nm[track]
    out["crlb_linked_nm"] = tracks.crlb_nm[track]
    return out


@dataclass(frozen=True)
class Tracks:
    """Per track (indexed by track id): members ``n``, pooled ``x_nm``/``y_nm`` and their standard error ``crlb_nm``.

    A track of one localization without a finite CRLB keeps that localization's position and CRLB.
    """

    n: np.ndarray
    x_nm: np.ndarray
    y_nm: np.ndarray
    crlb_nm: np.ndarray


class Linker:
    """Link a movie's localizations block by block, in frame order (the rule of :func:`link`).

    Each :meth:`add` takes the rows of frames after those already added and returns their track ids;
    the open tracks are carried from block to block, so the tracks equal those of one :func:`link`
    over the whole table. Memory: ~45 bytes per track; with ``capacity`` (the most tracks there will
    be, e.g. the number of localizations), the per-track arrays are :class:`~smlmdn.localize.store.DiskArrays`
    (temporary files, mapped only while a block is linked: memory flat in the number of tracks; call
    :meth:`close`). Raises ValueError for a non-positive distance or n_sigma or a negative gap.

    The linker also names the (track, frame) pairs the known-position extension tests
    (:func:`smlmdn.localize.extend.track_candidates`: the frame before each track, the frames inside it
    without a member, the frame after it), as the tracks reach them: :meth:`pairs` returns those named so
    far. A track's last pair is named when it can no longer be continued (:meth:`advance`, :meth:`finish`).
    """

    def __init__(
        self,
        *,
        max_distance_nm: float = DEFAULT_MAX_DISTANCE_NM,
        n_sigma: float = DEFAULT_N_SIGMA,
        max_gap: int = DEFAULT_MAX_GAP,
        capacity: int | None = None,
    ) -> None:
        if not max_distance_nm > 0 or not n_sigma > 0 or max_gap < 0:
            raise ValueError(
                f"need max_distance_nm > 0, n_sigma > 0 and max_gap >= 0, got {max_distance_nm}, {n_sigma}, {max_gap}"
            )
        self._rule = (float(max_distance_nm), float(n_sigma), int(max_gap))
        self._n_tracks = 0
        self._open = np.zeros(0, dtype=np.int64)  # the tracks that may still be continued, in id order
        self._last_frame = -(2**62)
        self._pairs: list[np.ndarray] = []  # (2, n) track, frame of the extension pairs named so far
        self._disk = None if capacity is None else DiskArrays(capacity, _TRACK_FIELDS)
        self._state = _track_state(0)

    @contextmanager
    def _mapped(self, n_new: int, *names: str) -> Iterator[dict[str, np.ndarray]]:
        """Yield the per-track arrays (on disk: ``names`` only, all without) with room for ``n_new`` more tracks."""
        if self._disk is None:
            if self._n_tracks + n_new > len(self._state["sum_w"]):
                self._state = _track_state(2 * (self._n_tracks + n_new), self._state, self._n_tracks)
            yield self._state
            return
        if self._n_tracks + n_new > self._disk.length:
            raise ValueError(f"more than capacity={self._disk.length} tracks")
        with self._disk.mapped(*names) as state:
            yield state

    def add(self, locs: pd.DataFrame) -> np.ndarray:
        """Link the rows of ``locs`` (columns as :func:`link`) -> their track ids, int64 (n,).

        Raises ValueError when a row's frame is not after every frame added before.
        """
        # own contiguous, writable copies: one compiled signature of _assign, whatever the table's layout
        frame = np.array(locs["frame"].to_numpy(dtype=np.int64), order="C")
        n = len(frame)
        if n and frame.min() <= self._last_frame:
            raise ValueError(f"frames must come in order: frame {frame.min()} after frame {self._last_frame}")
        xy = np.array(locs[["x_nm", "y_nm"]].to_numpy(dtype=np.float64), order="C")
        s = locs[["crlb_x_nm", "crlb_y_nm"]].to_numpy(dtype=np.float64).mean(axis=1)
        w = np.where(np.isfinite(s) & (s > 0), 1.0 / np.where(s > 0, s, 1.0) ** 2, 0.0)
        track = np.full(n, -1, dtype=np.int64)
        order = np.argsort(frame, kind="stable")
        n_open = len(self._open)
        open_tracks = np.empty(n_open + n, dtype=np.int64)  # room for a new track per row
        open_tracks[:n_open] = self._open
        pairs = np.empty((2, max(16, 2 * n)), dtype=np.int64)
        with self._mapped(n) as st:
            # fmt: off
            n_open, self._n_tracks, pairs, n_pairs = _assign(
                frame, order, xy, s, w, *self._rule,  # inputs
                track, st["last"], open_tracks, st["taken"],  # outputs and carried state
                st["sum_wxy"], st["sum_w"], st["sum_wrr"], st["n"], n_open, self._n_tracks, pairs,
            )
            # fmt: on
        self._pairs.append(pairs[:, :n_pairs].copy())
        self._open = open_tracks[:n_open].copy()
        if n:
            self._last_frame = int(frame.max())
        return track

    def advance(self, frame: int) -> None:
        """Close the tracks that rows of ``frame`` or later cannot continue (their last pair is named).

        Raises ValueError for a ``frame`` not after every frame added.
        """
        if frame <= self._last_frame:
            raise ValueError(f"frames must come in order: frame {frame} after frame {self._last_frame}")
        with self._mapped(0, "last") as st:
            last = st["last"][self._open]
        done = last < frame - 1 - self.max_gap
        self._pairs.append(np.stack([self._open[done], last[done] + 1]))
        self._open = self._open[~done]
        self._last_frame = frame - 1  # rows before frame would name pairs already passed

    def finish(self, n_frames: int) -> None:
        """Close every track of a movie of ``n_frames`` frames (the frame after each, if inside the movie, is named)."""
        with self._mapped(0, "last") as st:
            last = st["last"][self._open]
        inside = last + 1 < n_frames
        self._pairs.append(np.stack([self._open[inside], last[inside] + 1]))
        self._open = self._open[:0]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the (track, frame) pairs named since the last call, int64 (n,) each, in no particular order."""
        both = np.concatenate(self._pairs, axis=1) if self._pairs else np.zeros((2, 0), dtype=np.int64)
        self._pairs = []
        return both[0], both[1]

    @property
    def max_gap(self) -> int:
        """Return the frames a track may miss and still be continued."""
        return self._rule[2]

    @property
    def n_tracks(self) -> int:
        """Return the number of tracks so far."""
        return self._n_tracks

    def tracks(self) -> Tracks:
        """Return every track so far: members, pooled position and its Birge-inflated standard error."""
        k = self._n_tracks
        with self._mapped(0) as st:
            return Tracks(*_pooled(st["n"][:k], st["sum_w"][:k], st["sum_wxy"][:k], st["sum_wrr"][:k]))

    def tracks_to(self, out: DiskArrays, chunk: int = 2**18) -> None:
        """Write :meth:`tracks` into ``out``'s arrays ``n``, ``x_nm``, ``y_nm``, ``crlb_nm`` (at least as long), chunk by chunk."""
        for c0 in range(0, self._n_tracks, chunk):
            c1 = min(c0 + chunk, self._n_tracks)
            with (
                self._mapped(0, "n", "sum_w", "sum_wxy", "sum_wrr") as st,
                out.mapped(*_TRACKS) as dst,
            ):
                pooled = _pooled(st["n"][c0:c1], st["sum_w"][c0:c1], st["sum_wxy"][c0:c1], st["sum_wrr"][c0:c1])
                for name, values in zip(_TRACKS, pooled, strict=True):
                    dst[name][c0:c1] = values

    def close(self) -> None:
        """Remove the per-track files (with ``capacity``)."""
        if self._disk is not None:
            self._disk.close()


#: The fields of :class:`Tracks`, in order (the arrays :meth:`Linker.tracks_to` writes).
_TRACKS = ("n", "x_nm", "y_nm", "crlb_nm")
#: The per-track arrays of :class:`Linker`: last frame with a member, taken in the current frame,
#: weighted position sums, total weight, weighted sum of squared positions (for the scatter; a track
#: without weight holds its one localization's x, y in sum_wxy and its CRLB in sum_wrr), members.
_TRACK_FIELDS = {
    "last": np.int64,
    "taken": np.bool_,
    "sum_wxy": (np.float64, (2,)),
    "sum_w": np.float64,
    "sum_wrr": np.float64,
    "n": np.int32,
}


def _pooled(
    n: np.ndarray, sum_w: np.ndarray, sum_wxy: np.ndarray, sum_wrr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per track -> ``(n, x_nm, y_nm, crlb_nm)``: members (int64), pooled position and its Birge-inflated standard error."""
    n = n.astype(np.int64)
    pooled = sum_w > 0
    sw = np.where(pooled, sum_w, 1.0)  # a track without weight: its sums are its one localization's x, y, CRLB
    # in place, one array at a time (8 bytes per track each; a long movie has millions of tracks); the
    # results for the tracks without weight are replaced below, whatever their sums gave
    with np.errstate(invalid="ignore", over="ignore"):
        chi2 = sum_wxy[:, 0] ** 2  # chi2 = sum w r^2 - |sum w r|^2 / sum w, over both axes
        chi2 += sum_wxy[:, 1] ** 2
        chi2 /= sw
        np.subtract(sum_wrr, chi2, out=chi2)
        np.maximum(chi2, 0.0, out=chi2)
        chi2 /= np.maximum(2 * (n - 1), 1)
        crlb = np.sqrt(np.maximum(chi2, 1.0, out=chi2), out=chi2)  # the Birge ratio
        crlb /= np.sqrt(sw)
    np.copyto(crlb, sum_wrr, where=~pooled)
    return n, sum_wxy[:, 0] / sw, sum_wxy[:, 1] / sw, crlb


def _track_state(size: int, old: dict[str, np.ndarray] | None = None, used: int = 0) -> dict[str, np.ndarray]:
    """Per-track arrays of :class:`Linker` (:data:`_TRACK_FIELDS`) for ``size`` tracks in memory, the first ``used`` copied from ``old``."""
    state = {name: np.zeros((size, *tail), dtype=dtype) for name, (dtype, tail) in fields(_TRACK_FIELDS).items()}
    if old is not None:
        for key, arr in state.items():
            arr[:used] = old[key][:used]
    return state


@njit(cache=True, nogil=True)
def _assign(  # pragma: no cover
    frame, order, xy, s, w, max_distance, n_sigma, max_gap,
    track, last, open_tracks, taken, sum_wxy, sum_w, sum_wrr, n_members, n_open, n_tracks, named,
):  # fmt: skip
    """Assign every localization to a track, frame by frame (the rule of :func:`link`) -> ``(n_open, n_tracks, named, n_named)``.

    ``order`` sorts ``frame`` (stably); ``track`` (n,), the per-track arrays (room for ``n_tracks + n``
    tracks) and ``open_tracks`` (room for ``n_open + n``) are filled in, carrying ``n_open`` open tracks and
    ``n_tracks`` tracks from earlier frames. ``named`` (2, m) (grown when full, so returned) receives the
    (track, frame) pairs of the extension (:class:`Linker`): the frame before a new track, the frames a
    continued track missed, and the frame after a track that can no longer be continued. In each frame
    the tracks still open are the candidates; pairs that agree are assigned closest first (ties: in
    localization, then track id order), each localization and each track at most once, and the
    localizations left start new tracks. The open tracks of a frame are indexed by grid cells of side
    ``max_distance`` around their pooled positions, so each localization is compared only with those of
    the 3 x 3 cells around it, not with every open track (O(m log m), not O(m^2), per frame).
    """
    n = frame.shape[0]
    n_named = 0
    side = max_distance * (1.0 + 1e-9)  # a hair wider: positions max_distance apart are never 2 cells apart
    # candidate pairs of a frame (localization, track, distance), grown as needed and reused by later frames
    pair_a, pair_k, pair_d = np.empty(16, dtype=np.int64), np.empty(16, dtype=np.int64), np.empty(16)
    near = np.empty(open_tracks.shape[0], dtype=np.int64)  # the live tracks near one localization
    start = 0
    while start < n:
        f = frame[order[start]]
        stop = start
        while stop < n and frame[order[stop]] == f:
            stop += 1
        rows = order[start:stop]
        # the tracks open in this frame: seen in the last 1 + max_gap frames, with a finite weight
        kept = 0
        for q in range(n_open):
            k = open_tracks[q]
            if last[k] >= f - 1 - max_gap:
                open_tracks[kept] = k
                kept += 1
            else:  # closed: the frame after its last
                named, n_named = _pair(named, n_named, k, last[k] + 1)
        n_open = kept
        live = np.empty(n_open, dtype=np.int64)
        n_live = 0
        for q in range(n_open):
            if sum_w[open_tracks[q]] > 0:
                live[n_live] = open_tracks[q]
                n_live += 1
        live = live[:n_live]
        # the live tracks' grid cells (pooled position / side), sorted by cell
        cell_key = np.empty(n_live, dtype=np.int64)
        for q in range(n_live):
            k = live[q]
            cell_key[q] = _cell_key(_cell(sum_wxy[k, 1] / sum_w[k], side), _cell(sum_wxy[k, 0] / sum_w[k], side))
        by_cell = np.argsort(cell_key, kind="mergesort")
        sorted_key = cell_key[by_cell]
        # candidate pairs in (localization, track id) order, then closest first (stable)
        n_pairs = 0
        for a in range(len(rows)):
            r = rows[a]
            if not w[r] > 0:
                continue
            cy, cx = _cell(xy[r, 1], side), _cell(xy[r, 0], side)
            m = 0
            for dy in range(-1, 2):
                lo = np.searchsorted(sorted_key, _cell_key(cy + dy, cx - 1))
                hi = np.searchsorted(sorted_key, _cell_key(cy + dy, cx + 1), side="right")
                for i in range(lo, hi):
                    near[m] = live[by_cell[i]]
                    m += 1
            near[:m].sort()  # track id order, as over all live tracks
            for q in range(m):
                k = near[q]
                d = math.hypot(xy[r, 0] - sum_wxy[k, 0] / sum_w[k], xy[r, 1] - sum_wxy[k, 1] / sum_w[k])
                if d <= max_distance and d <= n_sigma * math.sqrt(s[r] ** 2 + 1.0 / sum_w[k]):
                    if n_pairs == len(pair_d):  # grow the pair buffers
                        pair_a, pair_k, pair_d = _grown(pair_a), _grown(pair_k), _grown(pair_d)
                    pair_a[n_pairs] = a
                    pair_k[n_pairs] = k
                    pair_d[n_pairs] = d
                    n_pairs += 1
        for p in np.argsort(pair_d[:n_pairs], kind="mergesort"):
            r, k = rows[pair_a[p]], pair_k[p]
            if track[r] < 0 and not taken[k]:
                track[r] = k
                taken[k] = True
        for p in range(n_pairs):  # reset for the next frame
            taken[pair_k[p]] = False
        for r in rows:
            if track[r] < 0:
                track[r] = n_tracks
                open_tracks[n_open] = n_tracks
                n_open += 1
                n_tracks += 1
                if f > 0:  # the frame before a new track
                    named, n_named = _pair(named, n_named, track[r], f - 1)
            else:
                for g in range(last[track[r]] + 1, f):  # the frames a continued track missed
                    named, n_named = _pair(named, n_named, track[r], g)
            k = track[r]
            if w[r] > 0:
                sum_wxy[k, 0] += w[r] * xy[r, 0]
                sum_wxy[k, 1] += w[r] * xy[r, 1]
                sum_w[k] += w[r]
                sum_wrr[k] += w[r] * (xy[r, 0] ** 2 + xy[r, 1] ** 2)
            else:  # a track of its own, never continued
                sum_wxy[k, 0], sum_wxy[k, 1], sum_wrr[k] = xy[r, 0], xy[r, 1], s[r]
            n_members[k] += 1
            last[k] = f
        start = stop
    return n_open, n_tracks, named, n_named


@njit(cache=True, nogil=True)
def _pair(pairs, n_pairs, k, f):  # pragma: no cover
    """Append the pair (``k``, ``f``) to ``pairs`` (2, m), grown when full -> ``(pairs, n_pairs)``."""
    if n_pairs == pairs.shape[1]:
        grown = np.empty((2, 2 * pairs.shape[1]), dtype=pairs.dtype)
        grown[:, :n_pairs] = pairs
        pairs = grown
    pairs[0, n_pairs] = k
    pairs[1, n_pairs] = f
    return pairs, n_pairs + 1


@njit(cache=True, nogil=True)
def _cell(position, side):  # pragma: no cover
    """Grid cell index of a ``position`` (nm) for cells of ``side`` nm."""
    return np.int64(math.floor(position / side))


@njit(cache=True, nogil=True)
def _cell_key(cy, cx):  # pragma: no cover
    """One sortable integer per grid cell (row-major, rows and columns within +-2^30 cells)."""
    return (cy + _HALF_CELLS) * (2 * _HALF_CELLS) + (cx + _HALF_CELLS)


@njit(cache=True, nogil=True)
def _grown(a):  # pragma: no cover
    """Return ``a`` copied into an array twice as long."""
    out = np.empty(2 * len(a), dtype=a.dtype)
    out[: len(a)] = a
    return out


def linked_positions(locs: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of a linked table (see :func:`link`) whose ``x_nm``/``y_nm`` and CRLB columns are the blink's pooled ones."""
    return locs.assign(
        x_nm=locs["x_linked_nm"],
        y_nm=locs["y_linked_nm"],
        crlb_x_nm=locs["crlb_linked_nm"],
        crlb_y_nm=locs["crlb_linked_nm"],
    )
