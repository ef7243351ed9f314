"""Photons of known molecules in the windows of other spots, compiled: what the multi-emitter pass holds fixed.

A known molecule ``j`` (frame ``t_j``, centre ``(x_j, y_j)`` px, ``N_j`` photons) puts

    ``N_j Ey_r(y_j) Ex_c(x_j)``,  ``Ex_c(x) = (erf((c + 1 - x) / (sqrt(2) s)) - erf((c - x) / (sqrt(2) s))) / 2``

photons into pixel ``(r, c)`` of its frame, for pixels of the frame within :func:`patch_radius` of
its centre pixel and none elsewhere: exactly what :func:`smlmdn.psf.render_spots` draws into a movie.
The passes of :mod:`smlmdn.localize.passes` need that rendered movie only in small windows (the fit
and test boxes of the spots): :func:`window_boxes` and :func:`window_sums` sum the molecules of the
window's frame that reach it, instead of rendering every frame and cutting boxes out of it (or
filtering it for the sums). They equal boxes cut from the rendered movie, and its ``size x size``
moving sums, to float round-off (tested against both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

from ..psf import RENDER_TRUNCATE

_SQRT2 = math.sqrt(2.0)
#: Side (px) of the grid cells that index each frame's molecules: a window looks only at the molecules
#: of the cells its reach overlaps, not at all m of its frame (m windows x m molecules per frame before:
#: 25 % of the time on 512 x 512 px frames with ~560 molecules).
_CELL_PX = 16


def patch_radius(sigma_px: float, truncate: float = RENDER_TRUNCATE) -> int:
    """Half-side (px) of the square around a molecule's centre pixel that :func:`smlmdn.psf.render_spots` draws."""
    return int(np.ceil(truncate * float(sigma_px))) + 1


@dataclass(frozen=True)
class Molecules:
    """Known molecules of one block, sorted by frame so those of frame ``t`` are ``start[t]:start[t + 1]``.

    ``frame`` (n,) int64 block frame; ``x``, ``y`` (n,) centres in frame pixel coordinates (pixel (0, 0)
    covers [0, 1)^2); ``photons`` (n,); ``index`` (n,): each molecule's position in the arrays given to
    :meth:`of`; ``start`` (T + 1,); ``shape`` (T, Y, X) of the block; ``sigma_px`` the PSF sigma.
    """

    frame: np.ndarray
    x: np.ndarray
    y: np.ndarray
    photons: np.ndarray
    index: np.ndarray
    start: np.ndarray
    shape: tuple[int, int, int]
    sigma_px: float

    @classmethod
    def of(
        cls,
        frame: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        photons: np.ndarray,
        shape: tuple[int, ...],
        sigma_px: float,
    ) -> Molecules:
        """Molecules at block frames ``frame`` (n,), centres (``x``, ``y``) px, ``photons`` (n,), in a block of ``shape`` (T, Y, X)."""
        order = np.argsort(frame, kind="stable")
        f = np.ascontiguousarray(frame, dtype=np.int64)[order]
        start = np.searchsorted(f, np.arange(int(shape[0]) + 1)).astype(np.int64)
        return cls(
            f,
            np.ascontiguousarray(x, dtype=np.float64)[order],
            np.ascontiguousarray(y, dtype=np.float64)[order],
            np.ascontiguousarray(photons, dtype=np.float64)[order],
            order.astype(np.int64),
            start,
            (int(shape[0]), int(shape[1]), int(shape[2])),
            float(sigma_px),
        )

    def boxes(
        self, frame: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int, exclude: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the photons (n, size, size) float64 of the molecules in the windows at frames ``frame`` (n,).

        The windows have corners (``y0``, ``x0``) (n,) px; molecule ``exclude[k]`` (an index into the
        arrays given to :meth:`of`, -1 for none) is left out of window ``k``.
        """
        n = len(frame)
        skip = np.full(n, -1, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
        out = np.zeros((n, size, size))
        if n:
            t, qy, qx = _queries(frame, y0, x0)
            # fmt: off
            _window_boxes(t, qy, qx, skip, size,  # the windows
                          self.x, self.y, self.photons, self.index, self.sigma_px, self.radius,  # the molecules
                          *self._grid, self.shape[1], self.shape[2], out)
            # fmt: on
        return out

    def sums(self, frame: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
        """Return the photons (n,) float64 of all the molecules in the ``size x size`` windows at frames ``frame``.

        The windows have corners (``y0``, ``x0``) (windows may reach beyond the frame, which holds no
        photons there).
        """
        out = np.zeros(len(frame))
        if len(frame):
            t, qy, qx = _queries(frame, y0, x0)
            # fmt: off
            _window_sums(t, qy, qx, size,  # the windows
                         self.x, self.y, self.photons, self.sigma_px, self.radius,  # the molecules
                         *self._grid, self.shape[1], self.shape[2], out)
            # fmt: on
        return out

    def render(self) -> np.ndarray:
        """Return the molecules' photons in every pixel of the block (T, Y, X) float64.

        :func:`smlmdn.psf.render_spots` of the molecules, compiled: the same patches, summed per pixel in
        the same order (equal to float round-off of ``erf``).
        """
        out = np.zeros(self.shape)
        _render(self.frame, self.x, self.y, self.photons, self.sigma_px, self.radius, out)
        return out

    def brightest_apart(self, distance_px: float) -> np.ndarray:
        """Return which molecules (bool (n,), in the order given to :meth:`of`) remain after thinning.

        Brightest first, every molecule drops the dimmer ones of its frame within ``distance_px`` (ties:
        the one given first stays).
        """
        rank = np.lexsort((self.index, -self.photons, self.frame))  # per frame, brightest first
        keep = np.ones(len(self.frame), dtype=bool)
        _brightest_apart(self.start, rank, self.x, self.y, float(distance_px) ** 2, keep)
        out = np.empty_like(keep)
        out[self.index] = keep
        return out

    def colours(self, reach_px: int) -> np.ndarray:
        """Return a colour (int64 (n,), in the order given to :meth:`of`) per molecule, for Gauss-Seidel sweeps.

        Two molecules of one frame whose centre pixels lie within ``reach_px`` of each other along both
        axes get different colours, so the fits of one colour can be updated together, each holding the
        others' latest fits (greedy colouring in order of frame, then row; colours 0, 1, ... in order of use).
        """
        rank = np.lexsort((self.index, np.floor(self.y), self.frame))
        colour = np.empty(len(self.frame), dtype=np.int64)
        _greedy_colours(self.frame[rank], np.floor(self.y[rank]), np.floor(self.x[rank]), int(reach_px), colour)
        out = np.empty_like(colour)
        out[self.index[rank]] = colour
        return out

    @property
    def radius(self) -> int:
        """:func:`patch_radius` of these molecules."""
        return patch_radius(self.sigma_px)

    @cached_property
    def _grid(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Index of the molecules by frame and :data:`_CELL_PX` grid cell of their centre pixel.

        Returns ``(members, cell_start, ncy, ncx)``: the molecules of cell ``(cy, cx)`` of frame ``t`` are
        ``members[cell_start[i]:cell_start[i + 1]]`` with ``i = (t ncy + cy) ncx + cx``, ascending; centres
        outside the frame count in its edge cells.
        """
        ncy, ncx = -(-self.shape[1] // _CELL_PX), -(-self.shape[2] // _CELL_PX)
        cy = np.clip(np.floor(self.y) // _CELL_PX, 0, ncy - 1).astype(np.int64)
        cx = np.clip(np.floor(self.x) // _CELL_PX, 0, ncx - 1).astype(np.int64)
        key = (self.frame * ncy + cy) * ncx + cx
        members = np.argsort(key, kind="stable").astype(np.int64)
        cell_start = np.searchsorted(key[members], np.arange(self.shape[0] * ncy * ncx + 1)).astype(np.int64)
        return members, cell_start, ncy, ncx


def _queries(frame: np.ndarray, y0: np.ndarray, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window frames and corners as contiguous int64 arrays for the kernels."""
    return tuple(np.ascontiguousarray(a, dtype=np.int64) for a in (frame, y0, x0))  # type: ignore[return-value]


@njit(cache=True)
def _axis_weights(centre: float, sigma: float, radius: int, lo: int, size: int, n_frame: int, w: np.ndarray) -> None:
    """Compute the axis weights ``w[k] = E_{lo + k}(centre)`` (module docstring).

    For the ``size`` pixels from ``lo`` on that are inside the frame (``[0, n_frame)``) and within
    ``radius`` of the centre pixel, 0 for the others.
    """
    inv = 1.0 / (_SQRT2 * sigma)
    c0 = math.floor(centre)
    first, last = _drawn(c0, radius, lo, size, n_frame)
    for k in range(size):
        w[k] = 0.0
    below = math.erf((first - centre) * inv)
    for p in range(first, last + 1):  # each pixel edge's erf once: the upper edge of p is the lower edge of p + 1
        above = math.erf((p + 1.0 - centre) * inv)
        w[p - lo] = 0.5 * (above - below)
        below = above


@njit(cache=True)
def _axis_sum(centre: float, sigma: float, radius: int, lo: int, size: int, n_frame: int) -> float:
    """Return the sum of the weights :func:`_axis_weights` returns: the integral over the pixels drawn, two erfs."""
    inv = 1.0 / (_SQRT2 * sigma)
    first, last = _drawn(math.floor(centre), radius, lo, size, n_frame)
    if last < first:
        return 0.0
    return 0.5 * (math.erf((last + 1.0 - centre) * inv) - math.erf((first - centre) * inv))


@njit(cache=True)
def _drawn(c0: int, radius: int, lo: int, size: int, n_frame: int) -> tuple[int, int]:
    """Return the first and last pixel of ``lo .. lo + size - 1`` inside the frame and within ``radius`` of pixel ``c0``.

    Last < first: none.
    """
    return max(lo, 0, c0 - radius), min(lo + size - 1, n_frame - 1, c0 + radius)


@njit(cache=True)
def _reaches(centre: float, radius: int, lo: int, size: int) -> bool:
    """Whether the patch of a molecule centred at ``centre`` overlaps the pixels ``lo .. lo + size - 1`` of one axis."""
    c0 = math.floor(centre)
    return c0 + radius >= lo and c0 - radius <= lo + size - 1


@njit(cache=True, nogil=True)
def _near(t, y0, x0, size, radius, members, cell_start, ncy, ncx, out):  # pragma: no cover
    """Fill ``out`` with the molecules of frame ``t`` in the grid cells the window's reach overlaps, ascending.

    The window has corner (``y0``, ``x0``) and side ``size``; a molecule whose centre pixel lies within
    ``radius`` of it can reach it (:func:`_reaches`). Returns how many were written.
    """
    n = 0
    y_lo, y_hi = _cell_span(y0 - radius, y0 + size - 1 + radius, ncy)
    x_lo, x_hi = _cell_span(x0 - radius, x0 + size - 1 + radius, ncx)
    for cy in range(y_lo, y_hi + 1):
        first = (t * ncy + cy) * ncx
        for i in range(cell_start[first + x_lo], cell_start[first + x_hi + 1]):
            out[n] = members[i]
            n += 1
    out[:n].sort()  # ascending: the sums run over the molecules in the same order as over the whole frame
    return n


@njit(cache=True, nogil=True)
def _cell_span(lo, hi, n_cells):  # pragma: no cover
    """First and last grid cell (clipped to the frame's ``n_cells``) of the pixels ``lo .. hi``."""
    return min(max(lo // _CELL_PX, 0), n_cells - 1), min(max(hi // _CELL_PX, 0), n_cells - 1)


@njit(cache=True, nogil=True)
def _window_boxes(
    q_frame, q_y0, q_x0, q_skip, size, x, y, photons, index, sigma, radius, members, cell_start, ncy, ncx, ny, nx, out
):  # pragma: no cover
    """Compute ``out[k] = sum_j N_j Ey(y_j) Ex(x_j)`` over the window of query ``k``.

    The sum runs over the molecules ``j`` of its frame other than ``q_skip[k]`` (those of the grid cells
    near the window, :func:`_near`; the others put no photons into it).
    """
    wx = np.empty(size)
    wy = np.empty(size)
    near = np.empty(x.shape[0], dtype=np.int64)
    for k in range(q_frame.shape[0]):
        for a in range(_near(q_frame[k], q_y0[k], q_x0[k], size, radius, members, cell_start, ncy, ncx, near)):
            j = near[a]
            if index[j] == q_skip[k]:
                continue
            if not (_reaches(x[j], radius, q_x0[k], size) and _reaches(y[j], radius, q_y0[k], size)):
                continue
            _axis_weights(x[j], sigma, radius, q_x0[k], size, nx, wx)
            _axis_weights(y[j], sigma, radius, q_y0[k], size, ny, wy)
            for r in range(size):
                w = photons[j] * wy[r]
                for c in range(size):
                    out[k, r, c] += w * wx[c]


@njit(cache=True, nogil=True)
def _window_sums(
    q_frame, q_y0, q_x0, size, x, y, photons, sigma, radius, members, cell_start, ncy, ncx, ny, nx, out
):  # pragma: no cover
    """Compute ``out[k] = sum_j N_j (sum_r Ey_r(y_j)) (sum_c Ex_c(x_j))`` over the window of query ``k``.

    Separable, and each sum telescopes to two erfs; the sum runs over the molecules ``j`` of its frame
    near the window (:func:`_near`).
    """
    near = np.empty(x.shape[0], dtype=np.int64)
    for k in range(q_frame.shape[0]):
        total = 0.0
        for a in range(_near(q_frame[k], q_y0[k], q_x0[k], size, radius, members, cell_start, ncy, ncx, near)):
            j = near[a]
            if not (_reaches(x[j], radius, q_x0[k], size) and _reaches(y[j], radius, q_y0[k], size)):
                continue
            sx = _axis_sum(x[j], sigma, radius, q_x0[k], size, nx)
            sy = _axis_sum(y[j], sigma, radius, q_y0[k], size, ny)
            total += photons[j] * sy * sx
        out[k] = total


@njit(cache=True, nogil=True)
def _render(frame, x, y, photons, sigma, radius, out):  # pragma: no cover
    """Add ``N_j Ey_r(y_j) Ex_c(x_j)`` into ``out[frame_j, r, c]`` for every molecule ``j`` and pixel of its patch."""
    n_y, n_x = out.shape[1], out.shape[2]
    side = 2 * radius + 1
    wx = np.empty(side)
    wy = np.empty(side)
    for j in range(frame.shape[0]):
        x0 = math.floor(x[j]) - radius
        y0 = math.floor(y[j]) - radius
        _axis_weights(x[j], sigma, radius, x0, side, n_x, wx)
        _axis_weights(y[j], sigma, radius, y0, side, n_y, wy)
        for i in range(side):
            r = y0 + i
            if r < 0 or r >= n_y:
                continue
            for k in range(side):
                c = x0 + k
                if 0 <= c < n_x:
                    out[frame[j], r, c] += wy[i] * (wx[k] * photons[j])


@njit(cache=True, nogil=True)
def _brightest_apart(start, rank, x, y, distance2, keep):  # pragma: no cover
    """Thin the molecules of each frame, brightest first.

    Per frame ``t`` (molecules ``rank[start[t]:start[t + 1]]``, brightest first): each molecule still
    kept drops every other one closer than ``sqrt(distance2)`` from ``keep``.
    """
    for t in range(start.shape[0] - 1):
        for a in range(start[t], start[t + 1]):
            i = rank[a]
            if not keep[i]:
                continue
            for b in range(start[t], start[t + 1]):
                j = rank[b]
                if j != i and (x[j] - x[i]) ** 2 + (y[j] - y[i]) ** 2 <= distance2:
                    keep[j] = False


@njit(cache=True, nogil=True)
def _greedy_colours(frame, y, x, reach, out):  # pragma: no cover
    """Colour molecules sorted by frame, then row: each takes the smallest colour no earlier one within ``reach`` has."""
    lo = 0
    used = np.zeros(len(frame) + 1, dtype=np.bool_)
    for i in range(len(frame)):
        while frame[lo] != frame[i] or y[i] - y[lo] > reach:
            lo += 1
        for j in range(lo, i):
            if abs(x[j] - x[i]) <= reach:
                used[out[j]] = True
        c = 0
        while used[c]:
            c += 1
        out[i] = c
        for j in range(lo, i):
            used[out[j]] = False
