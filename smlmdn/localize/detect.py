"""Candidate detection: variance-stabilised band-pass, local maxima with non-maximum suppression.

1. Variance stabilisation: the Anscombe transform ``2 sqrt(d + 3/8)`` of the photon counts
   ``d = max(y + r^2, 0) / excess`` (the same sCMOS shift / EMCCD scaling as the fit) makes the noise
   roughly Gaussian with unit variance whatever the background, so one threshold means the same
   significance in dim and bright regions and the Poisson skew at low background does not produce
   false maxima.
2. Band-pass: a difference of Gaussians, a matched filter (Gaussian of the PSF width) minus a wide
   Gaussian (3x the PSF width) that removes the smooth background, divided by its exact noise gain
   per pixel (:func:`noise_gain`) so frame edges are not noisier than the interior.
3. Per-frame noise: 1.4826 x median absolute deviation of the filtered frame (robust to the sparse
   molecules). For raw photons with a known camera model (``unit_noise``) the stabilised noise is 1
   by construction, and a MAD above 1 only means molecules cover much of the frame (dense data), so
   the noise is capped at 1; measured on 2 molecules/um^2 (grid points density-2 and
   dense-bright-wide of ``benchmarks/localize_grid.py``): Jaccard 26.5 -> 28.2 and 17.0 -> 22.1. A pixel is a candidate when it is the maximum of its neighbourhood (:func:`nms_size`)
   and exceeds ``threshold`` such standard deviations.

By default (:func:`smlmdn.localize.localize`) the candidates are only *proposals*, taken at a low
threshold; whether one is a molecule is decided by the calibrated test of :mod:`smlmdn.localize.glrt`
on the raw photon counts. The threshold below is the expert override.

The classic threshold controls the density of false candidates: the expected number of noise
maxima above ``u`` per pixel of a smooth Gaussian field is about ``lam / (2 pi)^1.5 * u *
exp(-u^2 / 2)`` (the Euler-characteristic density of random field theory, with ``lam = 1 / (2
sigma^2)`` the curvature of the matched filter); the default solves this for
:data:`FALSE_MAXIMA_PER_PIXEL` (about 4.2 for sigma = 1.3 px) and is never below
:data:`MIN_THRESHOLD`. Measured on pure Poisson noise (64 x 64 px, sigma 1.3 px) the prediction
is within a factor 1.5 of the observed count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit
from scipy import ndimage

#: Expected number of pure-noise candidates per pixel that the default threshold allows
#: (1e-5: 0.04 per 64 x 64 frame, 10 per 1024 x 1024 frame). Measured on simulated filaments and sparse
#: emitters, this gave a higher SMLM efficiency overall than 5e-5 (threshold 3.8): much better on sparse
#: data (fewer noise candidates), within 1 point on dense low-SNR data.
FALSE_MAXIMA_PER_PIXEL = 1e-5
#: Floor for the default threshold (in robust standard deviations of the band-passed frame).
MIN_THRESHOLD = 3.5
#: Width of the background Gaussian of the band-pass, in PSF sigmas.
BACKGROUND_SIGMA_FACTOR = 3.0
#: Histogram bins of :func:`row_medians`' first pass.
_MEDIAN_BINS = 256


@dataclass
class Candidates:
    """Detected candidates: indices into the block (frame, row, column) and their significance."""

    frame: np.ndarray  # int64 (n,), index within the block
    row: np.ndarray  # int64 (n,), pixel row (y)
    col: np.ndarray  # int64 (n,), pixel column (x)
    significance: np.ndarray  # float32 (n,), filtered value / robust noise std

    def __len__(self) -> int:
        """Return the number of candidates."""
        return len(self.frame)

    def subset(self, keep: np.ndarray) -> Candidates:
        """Return the candidates where the boolean (n,) ``keep`` is True (or at the indices ``keep``)."""
        return Candidates(self.frame[keep], self.row[keep], self.col[keep], self.significance[keep])


def default_threshold(sigma_px: float) -> float:
    """Return the default threshold (robust noise standard deviations of the band-passed frame) for a PSF of ``sigma_px``."""
    lam = 1.0 / (2.0 * sigma_px**2)
    scale = lam / (2.0 * np.pi) ** 1.5

    def expected(u: float) -> float:
        return scale * u * np.exp(-0.5 * u * u)

    lo, hi = 1.0, 12.0  # expected() decreases for u > 1: bisect
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if expected(mid) > FALSE_MAXIMA_PER_PIXEL else (lo, mid)
    return float(max(MIN_THRESHOLD, hi))


def stabilise(frames: np.ndarray, read_noise_photons: float = 0.0, excess_noise: float = 1.0) -> np.ndarray:
    """Anscombe transform of photons (T, Y, X) with the sCMOS shift / EMCCD scaling -> ~unit-variance float32."""
    d = np.maximum(np.asarray(frames, dtype=np.float32) + np.float32(read_noise_photons**2), 0) / np.float32(
        excess_noise
    )
    return 2.0 * np.sqrt(d + np.float32(3.0 / 8.0))


def _filter_matrix(n: int, sigma: float) -> np.ndarray:
    """Return the (n, n) matrix of a 1D Gaussian filter with 'nearest' edges (row i: weights of output i)."""
    return ndimage.gaussian_filter1d(np.eye(n), sigma, axis=0, mode="nearest")


@lru_cache(maxsize=8)
def noise_gain(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Return the standard deviation (Y, X) of the band-pass output for unit white noise input.

    Exact for the separable filters used: at the frame edge the 'nearest' padding reuses pixels,
    which raises the output noise by ~25 %; dividing by this map keeps the false-positive rate of
    the threshold the same at the edge as inside.
    """
    parts = []
    for n in shape:
        a1 = _filter_matrix(n, sigma_px)
        a2 = _filter_matrix(n, BACKGROUND_SIGMA_FACTOR * sigma_px)
        parts.append(((a1 * a1).sum(1), (a1 * a2).sum(1), (a2 * a2).sum(1)))
    (y11, y12, y22), (x11, x12, x22) = parts
    var = np.outer(y11, x11) - 2 * np.outer(y12, x12) + np.outer(y22, x22)
    return np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)


def band_pass(frames: np.ndarray, sigma_px: float) -> np.ndarray:
    """Band-pass ``frames`` (T, Y, X) with a difference of Gaussians -> float32 (T, Y, X).

    The output is in units of the output noise for unit white noise input (see :func:`noise_gain`).
    The Gaussians are ``scipy.ndimage.gaussian_filter(frames, (0, s, s), mode="nearest")``, to the bit
    (:func:`_difference_of_gaussians`).
    """
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    out = np.empty_like(frames)
    small, big = _gaussian_weights(float(sigma_px)), _gaussian_weights(BACKGROUND_SIGMA_FACTOR * float(sigma_px))
    _difference_of_gaussians(frames, small, big, noise_gain(frames.shape[1:], float(sigma_px)), out)
    return out


@lru_cache(maxsize=8)
def _gaussian_weights(sigma: float) -> np.ndarray:
    """Return the weights of ``scipy.ndimage.gaussian_filter1d(..., sigma)`` (its response to a unit impulse)."""
    radius = int(4.0 * sigma + 0.5)  # scipy's default truncate 4
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant")


def robust_std(filtered: np.ndarray, at_most: float | None = None) -> np.ndarray:
    """Per-frame robust standard deviation (1.4826 x MAD) of ``filtered`` (T, Y, X) -> (T,).

    With ``at_most``, frames whose estimate exceeds it get ``at_most`` instead (the same as
    ``np.minimum(robust_std(filtered), at_most)``), found by counting the absolute deviations below
    ``at_most / 1.4826`` rather than by their median (a second partition of every frame): when at
    most ``(n - 1) // 2`` of the ``n`` deviations lie below that cut, the lower middle one does not, so
    the MAD is above it.
    """
    flat = np.ascontiguousarray(filtered.reshape(filtered.shape[0], -1))
    med = row_medians(flat)
    if at_most is None:
        return 1.4826 * row_medians(np.abs(flat - med[:, None]))
    # a hair above the cut, so that 1.4826 x MAD lies above at_most after float32 rounding too
    near = np.empty(len(flat), dtype=np.int64)
    _count_near(flat, med, np.float32(at_most / 1.4826 * (1 + 1e-6)), near)
    above = near <= (flat.shape[1] - 1) // 2
    out = np.full(len(flat), at_most, dtype=np.float32)
    if not above.all():
        out[~above] = np.minimum(1.4826 * row_medians(np.abs(flat[~above] - med[~above, None])), at_most)
    return out


def row_medians(a: np.ndarray) -> np.ndarray:
    """Return the median of each row of ``a`` (T, N) float -> (T,), equal to ``np.median(a, axis=1)`` to the bit.

    A row's median is selected among the values of the histogram bins that hold its middle ranks (two
    passes over the row and a selection among a few hundred values) instead of partitioning the whole
    row: 4x faster than numpy on 128 x 128 px frames. NaN in a row gives NaN, as numpy does.
    """
    a = np.ascontiguousarray(a, dtype=a.dtype if a.dtype.kind == "f" else np.float64)
    out = np.empty(a.shape[0], dtype=a.dtype)
    if a.shape[1]:
        _row_medians(a, out)
    else:
        out[:] = np.nan
    return out


def nms_size(sigma_px: float, box: int) -> int:
    """Side (odd, px) of the non-maximum-suppression window: ``2 ceil(1.5 sigma) + 1``, at most ``box``.

    Two molecules closer than about 3 sigma merge into one peak of the matched-filtered frame anyway;
    farther apart they give two maxima, and suppressing one of them (as a window as large as the
    fit box did) loses close pairs in dense data. Measured on a dense movie (0.8 molecules/um^2 per
    frame, sigma 1.3 px): recall 37.5 % with a 7 px window, 40.3 % with 5 px, precision unchanged.
    """
    return int(min(box, 2 * math.ceil(1.5 * sigma_px) + 1))


def detect(
    frames: np.ndarray,
    sigma_px: float,
    box: int,
    threshold: float | None = None,
    *,
    read_noise_photons: float = 0.0,
    excess_noise: float = 1.0,
    unit_noise: bool = False,
) -> Candidates:
    """Find candidate molecules in ``frames`` (T, Y, X) photons (raw or denoised).

    ``sigma_px``: PSF sigma in pixels. ``box``: the fit box side (px); the non-maximum suppression
    uses the window of :func:`nms_size`. ``threshold``: significance in robust noise standard deviations of the
    band-passed, variance-stabilised frame (None: :func:`default_threshold`). ``read_noise_photons``
    and ``excess_noise`` as in :func:`smlmdn.localize.fit.fit_spots`; ``unit_noise``: ``frames`` are
    photons with that camera model, so the noise estimate is capped at its known value 1. Candidates anywhere in the
    frame are returned, including next to the edge (the fit shifts its box to stay inside the frame).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, Y, X), got {frames.shape}")
    if threshold is None:
        threshold = default_threshold(sigma_px)
    filtered = band_pass(stabilise(frames, read_noise_photons, excess_noise), sigma_px)
    noise = robust_std(filtered, at_most=1.0 if unit_noise else None)
    # A frame with no noise at all (e.g. constant) has no candidates; avoid dividing by zero.
    noise = np.where(noise > 0, noise, np.inf).astype(np.float32)
    significance = filtered / noise[:, None, None]
    mask = np.empty(filtered.shape, dtype=bool)
    _peaks(filtered, significance, np.float32(threshold), nms_size(sigma_px, box) // 2, mask)
    t, r, c = np.nonzero(mask)
    return Candidates(
        t.astype(np.int64), r.astype(np.int64), c.astype(np.int64), significance[t, r, c].astype(np.float32)
    )


@njit(cache=True, nogil=True)
def _peaks(filtered, significance, threshold, half, mask):  # pragma: no cover
    """Set ``mask`` (T, Y, X) where ``significance > threshold`` and ``filtered`` is the maximum of its window.

    The window is ``2 half + 1`` px square within the frame: the same as ``maximum_filter(filtered, size=(1, 2
    half + 1, 2 half + 1), mode="nearest") == filtered`` (edge padding repeats pixels already in the window),
    but only the pixels above the threshold are looked at.
    """
    n_t, n_y, n_x = filtered.shape
    for t in range(n_t):
        for r in range(n_y):
            for c in range(n_x):
                mask[t, r, c] = False
                if not significance[t, r, c] > threshold:
                    continue
                v = filtered[t, r, c]
                top = True
                for i in range(max(r - half, 0), min(r + half, n_y - 1) + 1):
                    for j in range(max(c - half, 0), min(c + half, n_x - 1) + 1):
                        if filtered[t, i, j] > v:
                            top = False
                            break
                    if not top:
                        break
                mask[t, r, c] = top


@njit(cache=True, nogil=True)
def _difference_of_gaussians(frames, small, big, gain, out):  # pragma: no cover
    """``out[t] = (G_small frames[t] - G_big frames[t]) / gain`` in float32, frame by frame.

    Each Gaussian as ``scipy.ndimage.gaussian_filter(frame, s, mode="nearest")`` computes it (edge pixels
    repeated), to the bit: each axis sums in float64 the centre tap and then the pairs of taps,
    farthest first, and rounds to float32 between the axes. Both filters run over one padded copy of
    the frame, one output row at a time (the y sums of a row stay in cache, and each pair of rows is
    added once for both filters, as their taps share the farthest-first order); ``small`` is the
    narrower of the two weight vectors.
    """
    n_t, n_y, n_x = frames.shape
    rb, rs = (big.shape[0] - 1) // 2, (small.shape[0] - 1) // 2
    rows = np.empty((n_y + 2 * rb, n_x))
    col_s, col_b = np.empty(n_x), np.empty(n_x)
    line = np.empty(n_x + 2 * rb)
    out_s, out_b = np.empty(n_x), np.empty(n_x)
    for t in range(n_t):
        for i in range(n_y + 2 * rb):
            src = min(max(i - rb, 0), n_y - 1)
            for c in range(n_x):
                rows[i, c] = frames[t, src, c]
        for y in range(n_y):
            centre = rows[y + rb]
            for c in range(n_x):
                col_s[c] = centre[c] * small[rs]
                col_b[c] = centre[c] * big[rb]
            for k in range(rb, 0, -1):
                above, below = rows[y + rb - k], rows[y + rb + k]
                wb = big[rb - k]
                if k <= rs:
                    ws = small[rs - k]
                    for c in range(n_x):
                        pair = above[c] + below[c]
                        col_b[c] += pair * wb
                        col_s[c] += pair * ws
                else:
                    for c in range(n_x):
                        col_b[c] += (above[c] + below[c]) * wb
            _gaussian_x(col_s, small, line, out_s)
            _gaussian_x(col_b, big, line, out_b)
            for c in range(n_x):
                out[t, y, c] = (np.float32(out_s[c]) - np.float32(out_b[c])) / gain[y, c]


@njit(cache=True, nogil=True)
def _gaussian_x(row, w, line, out):  # pragma: no cover
    """Filter one ``row`` (X,) of y sums along x with the symmetric weights ``w`` -> ``out`` (X,) float64 sums.

    The row is rounded to float32 first (scipy's output of the y axis), padded by repeating its end
    pixels into the work buffer ``line`` (at least ``X + 2 r``, ``r`` the radius of ``w``).
    """
    n_x = row.shape[0]
    r = (w.shape[0] - 1) // 2
    first, last = np.float32(row[0]), np.float32(row[n_x - 1])
    for i in range(r):
        line[i] = first
        line[n_x + r + i] = last
    for c in range(n_x):
        line[c + r] = np.float32(row[c])
    for c in range(n_x):
        out[c] = line[c + r] * w[r]
    for k in range(r, 0, -1):
        wk = w[r - k]
        for c in range(n_x):
            out[c] += (line[c + r - k] + line[c + r + k]) * wk


@njit(cache=True, nogil=True)
def _row_medians(a, out):  # pragma: no cover
    """``out[t]`` = the median of row ``a[t]`` (:func:`row_medians`)."""
    work = np.empty(a.shape[1], dtype=a.dtype)
    counts = np.zeros(_MEDIAN_BINS, dtype=np.int64)
    for t in range(a.shape[0]):
        out[t] = _median(a[t], work, counts)


@njit(cache=True, nogil=True)
def _median(row, work, counts):  # pragma: no cover
    """Median of ``row`` (N,) as numpy computes it (even N: the mean of the two middle values in the row's dtype).

    First pass: the row's range; second: a histogram over it (bins are monotone in the value); the values
    of the bins holding the middle ranks go into ``work`` and the middle ones are selected there.
    """
    n = row.shape[0]
    k = n // 2
    lo = hi = row[0]
    for x in row:
        if x != x:
            return np.nan
        lo, hi = min(lo, x), max(hi, x)
    if lo == hi:
        return lo
    span = np.float64(hi) - np.float64(lo)
    scale = _MEDIAN_BINS / span if np.isfinite(span) else 0.0
    counts[:] = 0
    for x in row:
        counts[_bin(x, lo, scale)] += 1
    below, b0 = 0, 0  # values in the bins before b0, the bin of the lower middle rank
    lower_rank = k - 1 if n % 2 == 0 else k
    while below + counts[b0] <= lower_rank:
        below += counts[b0]
        b0 += 1
    b1, upto = b0, below + counts[b0]  # b1: the bin of rank k
    while upto <= k:
        b1 += 1
        upto += counts[b1]
    m = 0
    for x in row:
        if b0 <= _bin(x, lo, scale) <= b1:
            work[m] = x
            m += 1
    _select(work, m, k - below)
    upper = work[k - below]
    if n % 2:
        return upper
    lower = work[0]  # the largest value before the selected one (k - below >= 1 for even n)
    for i in range(1, k - below):
        lower = max(lower, work[i])
    return (lower + upper) / 2


@njit(cache=True, nogil=True)
def _bin(x, lo, scale):  # pragma: no cover
    """Histogram bin of value ``x`` for a range from ``lo`` (``scale``: bins per unit; 0 puts every value in bin 0)."""
    return 0 if scale == 0.0 else min(int((np.float64(x) - lo) * scale), _MEDIAN_BINS - 1)


@njit(cache=True, nogil=True)
def _select(a, n, k):  # pragma: no cover
    """Reorder ``a[:n]`` so that ``a[k]`` holds its k-th smallest value and no larger value lies before it (Hoare)."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@njit(cache=True, nogil=True)
def _count_near(a, centre, cut, out):  # pragma: no cover
    """``out[t]`` = how many ``|a[t, i] - centre[t]| < cut`` (the count of :func:`robust_std`, without the deviations)."""
    for t in range(a.shape[0]):
        c = 0
        for x in a[t]:
            if abs(x - centre[t]) < cut:
                c += 1
        out[t] = c
