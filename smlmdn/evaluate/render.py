"""Super-resolution rendering of localization tables, and saving renders as PNG / TIFF.

Coordinate convention (DESIGN.md): camera pixel (0, 0) covers [0, 1) x [0, 1) pixel units, nm =
pixel coordinate x pixel size. A render pixel (i, j) of size ``r`` nm covers
``y_nm`` in [i r, (i+1) r) and ``x_nm`` in [j r, (j+1) r), so ``x_nm = 150`` at ``r = 100`` falls in
column 1. The render covers the camera field ``shape_px * pixel_size_nm``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import SmlmdnError
from ..io import atomic_file


def render_shape(shape_px: tuple[int, int], pixel_size_nm: float, render_pixel_nm: float) -> tuple[int, int]:
    """(Ys, Xs) of a render covering a ``shape_px`` camera field."""
    ys, xs = (math.ceil(n * pixel_size_nm / render_pixel_nm - 1e-9) for n in shape_px)
    return ys, xs


def histogram_image(
    locs: pd.DataFrame, shape_px: tuple[int, int], pixel_size_nm: float, render_pixel_nm: float
) -> np.ndarray:
    """Count localizations per render pixel, float32 (Ys, Xs); localizations outside are dropped."""
    if pixel_size_nm <= 0 or render_pixel_nm <= 0:
        raise SmlmdnError("pixel sizes must be positive", "pass pixel_size_nm and render_pixel_nm in nm")
    for c in ("x_nm", "y_nm"):
        if c not in locs.columns:
            raise SmlmdnError(f"localization table lacks column {c}", "give a table with x_nm, y_nm in nm")
    ys, xs = render_shape(shape_px, pixel_size_nm, render_pixel_nm)
    col = np.floor(locs["x_nm"].to_numpy(dtype=np.float64) / render_pixel_nm)
    row = np.floor(locs["y_nm"].to_numpy(dtype=np.float64) / render_pixel_nm)
    ok = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < xs) & (row >= 0) & (row < ys)
    flat = row[ok].astype(np.int64) * xs + col[ok].astype(np.int64)
    return np.bincount(flat, minlength=ys * xs).reshape(ys, xs).astype(np.float32)


def default_blur_nm(locs: pd.DataFrame, render_pixel_nm: float) -> float:
    """Median CRLB precision if the table has ``crlb_x_nm`` (and ``crlb_y_nm``), else the render pixel."""
    if "crlb_x_nm" in locs.columns and len(locs):
        from .precision import median_crlb_precision

        value = median_crlb_precision(locs)
        if math.isfinite(value) and value > 0:
            return value
    return float(render_pixel_nm)


def render_image(
    locs: pd.DataFrame,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    render_pixel_nm: float = 10.0,
    blur_nm: float | None = None,
) -> np.ndarray:
    """Render localizations (``x_nm``, ``y_nm``) as a float32 (Ys, Xs) image of ``render_pixel_nm`` pixels.

    A 2D histogram (localizations per render pixel) blurred with a Gaussian of ``blur_nm`` sigma
    (default: the median CRLB precision when the table has ``crlb_x_nm``, else one render pixel;
    0 = no blur). Blurring preserves the total count (zero padding at the edges loses a little).
    """
    image = histogram_image(locs, shape_px, pixel_size_nm, render_pixel_nm)
    blur = default_blur_nm(locs, render_pixel_nm) if blur_nm is None else float(blur_nm)
    if blur > 0:
        image = ndimage.gaussian_filter(image, sigma=blur / render_pixel_nm, mode="constant").astype(np.float32)
    return image


def _display_range(image: np.ndarray, percentile: float) -> tuple[float, float]:
    nonzero = image[image > 0]
    vmax = float(np.percentile(nonzero, percentile)) if nonzero.size else 1.0
    return 0.0, vmax if vmax > 0 else 1.0


def save_render_png(
    image: np.ndarray, path: str | Path, overwrite: bool = False, cmap: str = "hot", percentile: float = 99.5
) -> Path:
    """Write ``image`` (Y, X) as a colour PNG, atomically.

    Display range: 0 to the ``percentile`` of the non-zero pixels (renders are mostly empty, so a
    percentile over all pixels would be 0); brighter pixels saturate.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import image as mpimg

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise SmlmdnError(f"a render must be 2D, got shape {image.shape}", "pass one (Y, X) image")
    vmin, vmax = _display_range(image, percentile)
    with atomic_file(path, overwrite) as tmp:
        mpimg.imsave(tmp, image, cmap=cmap, vmin=vmin, vmax=vmax, origin="upper", format="png")
    return Path(path)


def save_render_tif(image: np.ndarray, path: str | Path, render_pixel_nm: float, overwrite: bool = False) -> Path:
    """Write ``image`` (Y, X) as a float32 ImageJ TIFF whose calibration is ``render_pixel_nm`` nm/pixel."""
    import tifffile

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise SmlmdnError(f"a render must be 2D, got shape {image.shape}", "pass one (Y, X) image")
    res = 1.0 / float(render_pixel_nm)  # pixels per nm
    with atomic_file(path, overwrite) as tmp:
        tifffile.imwrite(tmp, image, imagej=True, resolution=(res, res), metadata={"unit": "nm"})
    return Path(path)


def write_render(
    locs: pd.DataFrame,
    shape_yx: tuple[int, int],
    pixel_size_nm: float,
    render_pixel_nm: float,
    png: str | Path | None,
    tif: str | Path | None,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Render a super-resolution image of ``locs`` to a PNG and/or a float32 TIFF; return the paths written.

    The image is a Gaussian-blurred histogram (:func:`render_image`) of ``locs`` on frames of
    ``shape_yx`` px of ``pixel_size_nm``, with pixels of ``render_pixel_nm``; the TIFF carries the
    nm calibration.
    """
    image = render_image(locs, shape_yx, pixel_size_nm, render_pixel_nm)
    written = []
    if png is not None:
        written.append(save_render_png(image, png, overwrite=overwrite))
    if tif is not None:
        written.append(save_render_tif(image, tif, render_pixel_nm, overwrite=overwrite))
    return written
