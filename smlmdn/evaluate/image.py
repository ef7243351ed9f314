"""Image-quality metrics for denoised movies: PSNR, SSIM and background SNR.

Inputs are (T, Y, X) or (Y, X) arrays, numpy or dask. Dask inputs are streamed frame block by frame
block (the block size follows the dask chunks along T), so a movie is never loaded whole; all sums
are accumulated in float64.

The default ``data_range`` of PSNR and SSIM is ``ref.max() - ref.min()`` over the *whole* reference
stack (one number for all frames), so every frame and every estimate is scored on the same scale.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import SmlmdnError
from ..parallel import frame_blocks

NUMPY_BLOCK_FRAMES = 64


def _as_stack(a: Any, name: str) -> Any:
    if not isinstance(a, (np.ndarray, da.Array)):
        a = np.asarray(a)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise SmlmdnError(
            f"{name} must be a (T, Y, X) or (Y, X) image stack, got shape {a.shape}", "pass a movie or a single frame"
        )
    return a


def _block_bounds(n: int, *arrays: Any) -> list[tuple[int, int]]:
    """Frame ranges following the T chunks of the first dask array (else fixed-size blocks)."""
    for a in arrays:
        if isinstance(a, da.Array):
            return [(s, e) for _, s, e in frame_blocks(a.chunks[0])]
    return [(s, min(s + NUMPY_BLOCK_FRAMES, n)) for s in range(0, n, NUMPY_BLOCK_FRAMES)]


def _iter_blocks(*arrays: Any) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield (first frame, [block of each array]) as numpy, computing dask blocks together.

    Arrays of shape (1, Y, X) (single masks) are broadcast to every block.
    """
    n = max(a.shape[0] for a in arrays)
    for a in arrays:
        if a.shape[0] not in (1, n):
            raise SmlmdnError(
                f"stacks have different numbers of frames ({a.shape[0]} vs {n})", "compare movies of the same length"
            )
    for s, e in _block_bounds(n, *[a for a in arrays if a.shape[0] == n]):
        parts = [a if a.shape[0] == 1 else a[s:e] for a in arrays]
        lazy = [i for i, p in enumerate(parts) if isinstance(p, da.Array)]
        if lazy:
            computed = da.compute(*[parts[i] for i in lazy])
            for i, c in zip(lazy, computed, strict=True):
                parts[i] = c
        yield s, [np.asarray(p) for p in parts]


def _check_same_shape(x: Any, ref: Any) -> None:
    if tuple(x.shape) != tuple(ref.shape):
        raise SmlmdnError(
            f"image shapes differ: {tuple(x.shape)} vs reference {tuple(ref.shape)}",
            "compare an estimate with the reference movie it was made from",
        )


def data_range_of(ref: Any) -> float:
    """``ref.max() - ref.min()`` over the whole stack (streams dask input)."""
    ref = _as_stack(ref, "reference")
    lo, hi = math.inf, -math.inf
    for _, (r,) in _iter_blocks(ref):
        lo, hi = min(lo, float(r.min())), max(hi, float(r.max()))
    return hi - lo


def psnr(x: Any, ref: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``x`` against ``ref`` in dB: ``10 log10(data_range^2 / MSE)``.

    ``x`` and ``ref``: same-shape (T, Y, X) or (Y, X), numpy or dask (streamed). The MSE is pooled over
    all pixels of all frames. ``data_range`` defaults to ``ref.max() - ref.min()`` over the whole
    stack. Identical inputs give ``inf``.
    """
    x, ref = _as_stack(x, "image"), _as_stack(ref, "reference")
    _check_same_shape(x, ref)
    sse, count = 0.0, 0
    lo, hi = math.inf, -math.inf
    for _, (xb, rb) in _iter_blocks(x, ref):
        diff = xb.astype(np.float64) - rb.astype(np.float64)
        sse += float(np.sum(diff * diff))
        count += diff.size
        lo, hi = min(lo, float(rb.min())), max(hi, float(rb.max()))
    dr = (hi - lo) if data_range is None else float(data_range)
    if not dr > 0:
        raise SmlmdnError(
            f"PSNR needs a positive data range, got {dr}", "pass data_range explicitly when the reference is constant"
        )
    mse = sse / count
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(dr * dr / mse)


def ssim(x: Any, ref: Any, data_range: float | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004) of ``x`` against ``ref`` over frames.

    Each frame is scored with ``skimage.metrics.structural_similarity`` using the paper's settings
    (11x11 Gaussian window, sigma 1.5, population covariance), then the per-frame values are averaged.
    ``data_range`` defaults to ``ref.max() - ref.min()`` over the whole stack (an extra streamed pass
    for dask input). Frames must be at least 11 x 11 pixels. Returns 1.0 for identical inputs.
    """
    from skimage.metrics import structural_similarity

    x, ref = _as_stack(x, "image"), _as_stack(ref, "reference")
    _check_same_shape(x, ref)
    if min(ref.shape[1:]) < 11:
        raise SmlmdnError(
            f"SSIM needs frames of at least 11 x 11 pixels, got {ref.shape[1:]}",
            "score larger frames (SSIM uses an 11 x 11 Gaussian window)",
        )
    dr = data_range_of(ref) if data_range is None else float(data_range)
    if not dr > 0:
        raise SmlmdnError(
            f"SSIM needs a positive data range, got {dr}", "pass data_range explicitly when the reference is constant"
        )
    total, count = 0.0, 0
    for _, (xb, rb) in _iter_blocks(x, ref):
        for xf, rf in zip(xb.astype(np.float64), rb.astype(np.float64), strict=True):
            total += structural_similarity(
                xf, rf, data_range=dr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            count += 1
    return total / count


# --------------------------------------------------------------------------------------------------
# Signal / background regions and background SNR


def _distance_to_points(
    n_frames: int, shape: tuple[int, int], t: np.ndarray, x_px: np.ndarray, y_px: np.ndarray, max_px: float
) -> np.ndarray:
    """(T, Y, X) distance in pixels from each pixel centre to the nearest point of its frame.

    Points are (frame t, x_px, y_px) in pixel coordinates (pixel (0, 0) covers [0, 1)^2, centre 0.5).
    Distances beyond ``max_px`` are reported as ``inf``.
    """
    ny, nx = shape
    dist = np.full((n_frames, ny, nx), np.inf, dtype=np.float32)
    if len(t) == 0:
        return dist
    k = math.ceil(max_px) + 1
    off = np.arange(-k, k + 1)
    oy, ox = (o.ravel() for o in np.meshgrid(off, off, indexing="ij"))
    iy = np.floor(y_px).astype(np.int64)[:, None] + oy[None, :]
    ix = np.floor(x_px).astype(np.int64)[:, None] + ox[None, :]
    d = np.hypot(ix + 0.5 - x_px[:, None], iy + 0.5 - y_px[:, None])
    tt = np.broadcast_to(t[:, None], d.shape)
    ok = (d <= max_px) & (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    np.minimum.at(dist, (tt[ok], iy[ok], ix[ok]), d[ok].astype(np.float32))
    return dist


def _peaks_from_data(block: np.ndarray, smooth_px: float, threshold_sigma: float):
    """3x3 local maxima of each frame's difference of Gaussians above median + k * robust std.

    DoG = Gaussian(``smooth_px``) - Gaussian(4 x ``smooth_px``): the wide Gaussian removes uneven
    background (a plain smoothed image with a frame-wide threshold misses most spots at low SNR when
    the background varies across the field). Robust std = 1.4826 x median absolute deviation.
    """
    b = block.astype(np.float32)
    s = ndimage.gaussian_filter(b, sigma=(0, smooth_px, smooth_px), mode="nearest") - ndimage.gaussian_filter(
        b, sigma=(0, 4 * smooth_px, 4 * smooth_px), mode="nearest"
    )
    med = np.median(s, axis=(1, 2), keepdims=True)
    noise = 1.4826 * np.median(np.abs(s - med), axis=(1, 2), keepdims=True)
    # a flat frame (mad 0) has no peaks: require a strictly positive margin
    thr = med + threshold_sigma * np.maximum(noise, np.finfo(np.float32).tiny)
    is_max = s == ndimage.maximum_filter(s, size=(1, 3, 3), mode="nearest")
    t, y, x = np.nonzero(is_max & (s > thr))
    return t, x + 0.5, y + 0.5


def _region_labels(
    block: np.ndarray,
    t0: int,
    truth: pd.DataFrame | None,
    pixel_size_nm: float | None,
    sigma_px: float,
    signal_radius: float,
    background_radius: float,
    threshold_sigma: float,
) -> np.ndarray:
    """uint8 labels for a frame block: 1 signal, 2 background, 0 neither."""
    n, ny, nx = block.shape
    if truth is not None:
        sel = truth[(truth["frame"] >= t0) & (truth["frame"] < t0 + n)]
        t = sel["frame"].to_numpy(dtype=np.int64) - t0
        x = sel["x_nm"].to_numpy(dtype=np.float64) / pixel_size_nm
        y = sel["y_nm"].to_numpy(dtype=np.float64) / pixel_size_nm
    else:
        t, x, y = _peaks_from_data(block, sigma_px, threshold_sigma)
    r_sig, r_bg = signal_radius * sigma_px, background_radius * sigma_px
    dist = _distance_to_points(n, (ny, nx), t, x, y, r_bg)
    labels = np.zeros(dist.shape, dtype=np.uint8)
    labels[dist <= r_sig] = 1
    labels[dist > r_bg] = 2
    return labels


def signal_background_masks(
    reference_or_raw: Any,
    truth: pd.DataFrame | None = None,
    pixel_size_nm: float | None = None,
    psf_sigma_nm: float = 130.0,
    signal_radius: float = 2.0,
    background_radius: float = 4.0,
    threshold_sigma: float = 5.0,
) -> tuple[Any, Any]:
    """Boolean (signal, background) masks with the shape of ``reference_or_raw`` ((T, Y, X) or (Y, X)).

    Regions are defined around emitter positions with the PSF sigma ``s`` (pixels) =
    ``psf_sigma_nm / pixel_size_nm`` (1.3 px when ``pixel_size_nm`` is not given):
    signal = pixel centres within ``signal_radius * s`` of an emitter in that frame, background =
    pixel centres farther than ``background_radius * s`` from every emitter in that frame; pixels in
    between belong to neither.

    - With ``truth`` (frame, x_nm, y_nm; needs ``pixel_size_nm``): the true emitter positions.
    - Without: emitters found in the data, frame by frame (deterministic, independent of chunking):
      band-pass each frame with a difference of Gaussians (``s`` minus ``4 s`` pixels), keep 3x3
      local maxima above the frame's median + ``threshold_sigma`` x robust std (1.4826 x median
      absolute deviation) of the band-passed frame. On simulated low-SNR data (300 photons on 30
      background photons/pixel) this finds ~60 % of the true emitters, with ~0.2 false peaks per
      64 x 64 pure-noise frame at the default threshold of 5. Compute the masks once on the *raw*
      movie and score every estimate with the same masks.

    Dask input gives lazy dask masks (same chunks); numpy input gives numpy masks.
    """
    a = reference_or_raw
    if not isinstance(a, (np.ndarray, da.Array)):
        a = np.asarray(a)
    if a.ndim not in (2, 3):
        raise SmlmdnError(f"masks need a (T, Y, X) or (Y, X) image, got shape {a.shape}", "pass a movie")
    if truth is not None:
        if pixel_size_nm is None:
            raise SmlmdnError("masks from ground truth need the pixel size", "pass pixel_size_nm")
        missing = [c for c in ("frame", "x_nm", "y_nm") if c not in truth.columns]
        if missing:
            raise SmlmdnError(
                f"ground-truth table lacks column(s) {', '.join(missing)}",
                "give a table with columns frame, x_nm, y_nm",
            )
    if pixel_size_nm is not None and not pixel_size_nm > 0:
        raise SmlmdnError(f"pixel size must be positive, got {pixel_size_nm}", "pass the pixel size in nm")
    if not 0 < signal_radius <= background_radius:
        raise SmlmdnError("need 0 < signal_radius <= background_radius", "choose e.g. 2 and 4 (PSF sigmas)")
    sigma_px = psf_sigma_nm / pixel_size_nm if pixel_size_nm else 1.3
    squeeze = a.ndim == 2
    stack = a[None] if squeeze else a
    region_labels = functools.partial(
        _region_labels,
        truth=truth,
        pixel_size_nm=pixel_size_nm,
        sigma_px=sigma_px,
        signal_radius=signal_radius,
        background_radius=background_radius,
        threshold_sigma=threshold_sigma,
    )
    if isinstance(stack, da.Array):
        stack = stack.rechunk({1: -1, 2: -1})

        def block_labels(block: np.ndarray, block_info: Any = None) -> np.ndarray:
            t0 = block_info[0]["array-location"][0][0] if block_info else 0
            return region_labels(np.asarray(block), t0)

        labels = stack.map_blocks(block_labels, dtype=np.uint8)
    else:
        labels = region_labels(stack, 0)
    if squeeze:
        labels = labels[0]
    return labels == 1, labels == 2


def background_snr(x: Any, masks: tuple[Any, Any]) -> float:
    """Background SNR ``(mean(x[signal]) - mean(x[background])) / std(x[background])``.

    ``masks`` = (signal, background) booleans from :func:`signal_background_masks`, shaped like ``x``
    ((T, Y, X) or (Y, X)) or (Y, X) for all frames. Means and the (population) standard deviation are
    pooled over all masked pixels of all frames (float64, streamed for dask). The background mean is
    subtracted so an added offset does not raise the score; the result is unitless. nan when either
    region is empty or the background is perfectly flat.
    """
    x = _as_stack(x, "image")
    sig, bg = (_as_stack(m, "mask") for m in masks)
    for m in (sig, bg):
        if tuple(m.shape[1:]) != tuple(x.shape[1:]) or m.shape[0] not in (1, x.shape[0]):
            raise SmlmdnError(
                f"mask shape {tuple(m.shape)} does not fit image shape {tuple(x.shape)}",
                "build the masks from the same movie",
            )
    n_s, sum_s = 0, 0.0
    n_b, mean_b, m2_b = 0, 0.0, 0.0  # Chan et al. parallel variance merge
    for _, (xb, sb, bb) in _iter_blocks(x, sig, bg):
        xb = xb.astype(np.float64)
        sb = np.broadcast_to(sb.astype(bool), xb.shape)
        bb = np.broadcast_to(bb.astype(bool), xb.shape)
        vs, vb = xb[sb], xb[bb]
        n_s += vs.size
        sum_s += float(vs.sum())
        if vb.size:
            mb = float(vb.mean())
            m2 = float(np.sum((vb - mb) ** 2))
            n = n_b + vb.size
            delta = mb - mean_b
            mean_b += delta * vb.size / n
            m2_b += m2 + delta * delta * n_b * vb.size / n
            n_b = n
    if n_s == 0 or n_b == 0:
        return math.nan
    std_b = math.sqrt(m2_b / n_b)
    if std_b == 0:
        return math.nan
    return (sum_s / n_s - mean_b) / std_b
