"""Fourier ring correlation (FRC) resolution of a localization table (Nieuwenhuizen et al. 2013).

The localizations are split into two halves, each half is rendered as a histogram image (no blur),
and the normalised cross-correlation of the two Fourier transforms is computed in rings of equal
spatial frequency. The resolution is ``1 / f`` where the (smoothed) curve first drops below 1/7.

Split: ``"random"`` (default) assigns each localization to a half at random (seeded). Caveat: a
molecule localized in several frames then appears in both halves, which correlates the halves beyond
the true resolution and makes the estimate optimistic; ``"blocks"`` assigns whole blocks of
``block_frames`` consecutive frames to a half at random (as Nieuwenhuizen et al. recommend), which
avoids this when molecules blink for fewer frames than a block. Use the same split and settings for
every method you compare.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import SmlmdnError
from .render import histogram_image

FRC_THRESHOLD = 1.0 / 7.0
FRC_SPLIT_SALT = 0x46524353  # "FRCS"


def frc_from_images(a: np.ndarray, b: np.ndarray, pixel_nm: float, smooth: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """FRC of two same-shape (Y, X) images with ``pixel_nm`` nm pixels.

    Rings are ``1 / (min(Y, X) * pixel_nm)`` nm^-1 wide, from the first non-zero ring up to Nyquist
    ``1 / (2 pixel_nm)``. Returns (ring-mean spatial frequency in nm^-1, FRC); rings where either
    image has no power give nan. ``smooth`` > 0 applies a centred moving average of that half-width
    to the FRC values (rings at the ends average over the points available).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise SmlmdnError(
            f"FRC needs two same-shape 2D images, got {a.shape} and {b.shape}", "render both halves alike"
        )
    ny, nx = a.shape
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    fy = np.fft.fftfreq(ny, d=pixel_nm)[:, None]
    fx = np.fft.fftfreq(nx, d=pixel_nm)[None, :]
    freq = np.hypot(fy, fx)
    width = 1.0 / (min(ny, nx) * pixel_nm)
    ring = np.rint(freq / width).astype(np.int64).ravel()
    n_rings = math.floor(0.5 / pixel_nm / width) + 1
    keep = ring < n_rings
    ring = ring[keep]

    def ring_sum(v: np.ndarray) -> np.ndarray:
        return np.bincount(ring, weights=v.ravel()[keep], minlength=n_rings)

    cross = ring_sum((fa * np.conj(fb)).real)
    pa, pb = ring_sum(np.abs(fa) ** 2), ring_sum(np.abs(fb) ** 2)
    f_mean = ring_sum(freq) / np.maximum(np.bincount(ring, minlength=n_rings), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = cross / np.sqrt(pa * pb)
    frc[(pa <= 0) | (pb <= 0)] = np.nan
    f_mean, frc = f_mean[1:], frc[1:]  # ring 0 is the mean intensity
    if smooth > 0:
        frc = _moving_average(frc, smooth)
    return f_mean, frc


def _moving_average(v: np.ndarray, half: int) -> np.ndarray:
    out = np.empty_like(v)
    for i in range(len(v)):
        window = v[max(0, i - half) : i + half + 1]
        window = window[np.isfinite(window)]
        out[i] = window.mean() if window.size else np.nan
    return out


def split_halves(
    locs: pd.DataFrame, split: str = "random", block_frames: int = 100, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a localization table in two halves (``"random"`` per localization or ``"blocks"`` of frames)."""
    # salted so the split never coincides with a simulation drawn from the same seed
    rng = np.random.default_rng([int(seed), FRC_SPLIT_SALT])
    if split == "random":
        first = rng.random(len(locs)) < 0.5
    elif split == "blocks":
        if "frame" not in locs.columns:
            raise SmlmdnError("a block split needs the frame column", "give a table with a frame column")
        block = locs["frame"].to_numpy(dtype=np.int64) // int(block_frames)
        ub, inv = np.unique(block, return_inverse=True)
        first = (rng.random(len(ub)) < 0.5)[inv]
    else:
        raise SmlmdnError(f"unknown FRC split {split!r}", "use 'random' or 'blocks'")
    return locs[first], locs[~first]


def frc_curve(
    locs: pd.DataFrame,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    render_pixel_nm: float = 5.0,
    seed: int = 0,
    split: str = "random",
    block_frames: int = 100,
    smooth: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """FRC curve of a localization table: (spatial frequency in nm^-1, FRC), smoothed.

    Halves are rendered as histograms with ``render_pixel_nm`` pixels over the camera field
    ``shape_px * pixel_size_nm``. ``smooth`` is the moving-average half-width in rings (default: 1/40
    of the number of rings, at least 1).
    """
    a, b = split_halves(locs, split=split, block_frames=block_frames, seed=seed)
    img_a = histogram_image(a, shape_px, pixel_size_nm, render_pixel_nm)
    img_b = histogram_image(b, shape_px, pixel_size_nm, render_pixel_nm)
    if smooth is None:
        smooth = max(1, min(img_a.shape) // 80)
    return frc_from_images(img_a, img_b, render_pixel_nm, smooth=smooth)


def frc_resolution(freq: np.ndarray, frc: np.ndarray, threshold: float = FRC_THRESHOLD) -> float:
    """Resolution in nm: ``1 / f`` at the first crossing of ``frc`` below ``threshold`` (linear interpolation).

    nan if the curve never rises above the threshold or never falls below it.
    """
    freq, frc = np.asarray(freq, dtype=np.float64), np.asarray(frc, dtype=np.float64)
    ok = np.isfinite(frc) & np.isfinite(freq)
    freq, frc = freq[ok], frc[ok]
    above = frc >= threshold
    if not above.any():
        return math.nan
    start = int(np.argmax(above))
    below = np.flatnonzero(~above[start:])
    if below.size == 0:
        return math.nan
    k = start + int(below[0])
    f0, f1, c0, c1 = freq[k - 1], freq[k], frc[k - 1], frc[k]
    f = f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)
    return 1.0 / f if f > 0 else math.nan
