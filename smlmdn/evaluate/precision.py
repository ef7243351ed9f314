"""Localization precision without ground truth: NeNA and the median CRLB."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit
from scipy.spatial import cKDTree

from ..errors import SmlmdnError

MIN_NENA_PAIRS = 30


def _need(locs: pd.DataFrame, cols: tuple[str, ...], why: str) -> None:
    missing = [c for c in cols if c not in locs.columns]
    if missing:
        raise SmlmdnError(
            f"{why} needs column(s) {', '.join(missing)} in the localization table",
            f"give a table with {', '.join(cols)}",
        )


def median_crlb_precision(locs: pd.DataFrame) -> float:
    """Median of ``sqrt((crlb_x_nm^2 + crlb_y_nm^2) / 2)`` in nm (``crlb_x_nm`` alone if no y column).

    nan for an empty table or when no finite value exists.
    """
    _need(locs, ("crlb_x_nm",), "the CRLB precision")
    cx = locs["crlb_x_nm"].to_numpy(dtype=np.float64)
    cy = locs["crlb_y_nm"].to_numpy(dtype=np.float64) if "crlb_y_nm" in locs.columns else cx
    p = np.sqrt((cx**2 + cy**2) / 2.0)
    p = p[np.isfinite(p)]
    return float(np.median(p)) if p.size else math.nan


def adjacent_frame_distances(locs: pd.DataFrame, max_distance_nm: float) -> np.ndarray:
    """For each localization in frame t, the distance (nm) to its nearest localization in frame t + 1.

    Only distances <= ``max_distance_nm`` are returned (localizations without a neighbour that close
    in the next frame contribute nothing).
    """
    _need(locs, ("frame", "x_nm", "y_nm"), "NeNA")
    if len(locs) == 0:
        return np.zeros(0)
    f = locs["frame"].to_numpy(dtype=np.int64)
    x = locs["x_nm"].to_numpy(dtype=np.float64)
    y = locs["y_nm"].to_numpy(dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    f, x, y = f[ok], x[ok], y[ok]
    # frames are separated along a third axis by more than max_distance: one query for all frames
    sep = 4.0 * max_distance_nm + 1.0
    f = f - f.min() if len(f) else f
    tree = cKDTree(np.column_stack([x, y, f * sep]))
    d, _ = tree.query(np.column_stack([x, y, (f + 1) * sep]), k=1, distance_upper_bound=max_distance_nm)
    return d[np.isfinite(d)]


def nena_pdf(d: np.ndarray, s: float) -> np.ndarray:
    """NeNA distance density ``d / (2 s^2) exp(-d^2 / (4 s^2))`` (nm^-1) for precision ``s`` nm."""
    return d / (2 * s * s) * np.exp(-d * d / (4 * s * s))


def nena_precision(
    locs: pd.DataFrame,
    pixel_size_nm: float | None = None,
    max_distance_nm: float | None = None,
    linear_term: bool = True,
    bins: int = 100,
) -> float:
    """NeNA localization precision in nm (Endesfelder et al. 2014, Histochem Cell Biol 141:629).

    Distances between each localization and its nearest neighbour in the next frame (the same
    molecule localized twice, each with precision ``s``) follow ``p(d) = d / (2 s^2) exp(-d^2/(4 s^2))``.
    Their histogram on [0, ``max_distance_nm``] (default 2 camera pixels when ``pixel_size_nm`` is
    given, else 200 nm) is fitted by least squares with ``A p(d) + c d`` (the linear term models
    neighbours that are other molecules; ``linear_term=False`` drops it); returns ``s``.
    nan when fewer than 30 distances are available or the fit fails.
    """
    if max_distance_nm is None:
        max_distance_nm = 2.0 * pixel_size_nm if pixel_size_nm else 200.0
    if not max_distance_nm > 0:
        raise SmlmdnError(f"max_distance_nm must be positive, got {max_distance_nm}", "use e.g. 200")
    d = adjacent_frame_distances(locs, max_distance_nm)
    if d.size < MIN_NENA_PAIRS:
        return math.nan
    counts, edges = np.histogram(d, bins=bins, range=(0.0, max_distance_nm))
    centres = 0.5 * (edges[:-1] + edges[1:])
    density = counts / (d.size * (edges[1] - edges[0]))
    # start from the Rayleigh median: median(d) = 2 s sqrt(ln 2)
    s0 = max(float(np.median(d)) / (2 * math.sqrt(math.log(2))), 1e-3 * max_distance_nm)

    def model(r, a, s, c=0.0):  # curve_fit fits as many parameters as p0 has: c only with the linear term
        return a * nena_pdf(r, s) + c * r

    if linear_term:
        p0, lower, upper = [1.0, s0, 0.0], [0.0, 1e-6, 0.0], [np.inf, np.inf, np.inf]
    else:
        p0, lower, upper = [1.0, s0], [0.0, 1e-6], [np.inf, np.inf]
    try:
        popt, _ = curve_fit(model, centres, density, p0=p0, bounds=(lower, upper), maxfev=10000)
    except (RuntimeError, ValueError):
        return math.nan
    s = float(popt[1])
    return s if math.isfinite(s) else math.nan
