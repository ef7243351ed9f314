"""Candidate detection: band-pass filter, local maxima with non-maximum suppression, adaptive threshold.

The band-pass is a difference of Gaussians: a matched filter (Gaussian of the PSF width) minus a
wide Gaussian (3x the PSF width) that removes the smooth background. The noise of the filtered
frame is estimated robustly per frame (1.4826 x median absolute deviation, insensitive to the
sparse molecules), and a pixel is a candidate when it is the maximum of its ``box x box``
neighbourhood and its filtered value exceeds ``threshold`` such noise standard deviations.

The default threshold adapts to the frame size: it is the Gaussian quantile that allows on average
:data:`FALSE_MAXIMA_PER_FRAME` noise maxima per frame among the roughly ``Y*X / box^2`` independent
neighbourhoods (a Bonferroni-style significance), and never below :data:`MIN_THRESHOLD`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import norm

#: Expected number of pure-noise candidates per frame that the default threshold allows.
FALSE_MAXIMA_PER_FRAME = 0.02
#: Floor for the default threshold (in robust standard deviations of the band-passed frame).
MIN_THRESHOLD = 4.0
#: Width of the background Gaussian of the band-pass, in PSF sigmas.
BACKGROUND_SIGMA_FACTOR = 3.0


@dataclass
class Candidates:
    """Detected candidates: indices into the block (frame, row, column) and their significance."""

    frame: np.ndarray  # int64 (n,), index within the block
    row: np.ndarray  # int64 (n,), pixel row (y)
    col: np.ndarray  # int64 (n,), pixel column (x)
    significance: np.ndarray  # float32 (n,), filtered value / robust noise std

    def __len__(self) -> int:
        return len(self.frame)


def default_threshold(frame_shape: tuple[int, int], box: int) -> float:
    """The adaptive default threshold (robust noise standard deviations) for frames of ``frame_shape``."""
    windows = max(1.0, frame_shape[0] * frame_shape[1] / float(box * box))
    return float(max(MIN_THRESHOLD, norm.isf(FALSE_MAXIMA_PER_FRAME / windows)))


def band_pass(frames: np.ndarray, sigma_px: float) -> np.ndarray:
    """Difference-of-Gaussians band-pass of ``frames`` (T, Y, X) photons -> float32 (T, Y, X)."""
    frames = np.asarray(frames, dtype=np.float32)
    small = ndimage.gaussian_filter(frames, (0, sigma_px, sigma_px), mode="nearest")
    big = ndimage.gaussian_filter(frames, (0, BACKGROUND_SIGMA_FACTOR * sigma_px, BACKGROUND_SIGMA_FACTOR * sigma_px), mode="nearest")
    return small - big


def robust_std(filtered: np.ndarray) -> np.ndarray:
    """Per-frame robust standard deviation (1.4826 x MAD) of ``filtered`` (T, Y, X) -> (T,)."""
    flat = filtered.reshape(filtered.shape[0], -1)
    med = np.median(flat, axis=1, keepdims=True)
    return 1.4826 * np.median(np.abs(flat - med), axis=1)


def detect(frames: np.ndarray, sigma_px: float, box: int, threshold: float | None = None) -> Candidates:
    """Find candidate molecules in ``frames`` (T, Y, X) photons (raw or denoised).

    ``sigma_px``: PSF sigma in pixels. ``box``: side of the non-maximum-suppression neighbourhood
    (the fit box). ``threshold``: significance in robust noise standard deviations of the
    band-passed frame (None: :func:`default_threshold`). Candidates anywhere in the frame are
    returned, including next to the edge (the fit shifts its box to stay inside the frame).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, Y, X), got {frames.shape}")
    if threshold is None:
        threshold = default_threshold(frames.shape[1:], box)
    filtered = band_pass(frames, sigma_px)
    noise = robust_std(filtered)
    # A frame with no noise at all (e.g. constant) has no candidates; avoid dividing by zero.
    noise = np.where(noise > 0, noise, np.inf).astype(np.float32)
    significance = filtered / noise[:, None, None]
    local_max = ndimage.maximum_filter(filtered, size=(1, box, box), mode="nearest") == filtered
    mask = local_max & (significance > threshold)
    t, r, c = np.nonzero(mask)
    return Candidates(t.astype(np.int64), r.astype(np.int64), c.astype(np.int64), significance[t, r, c].astype(np.float32))
