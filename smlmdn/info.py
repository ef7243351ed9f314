"""Describe a movie.

Layout and files, shape, storage, frame statistics, data problems (NaN/Inf, saturation,
truncation) and camera numbers from the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from .camera import estimate_camera, saturation_level
from .errors import SmlmdnError


def size_on_disk(path: str | Path) -> int:
    """Bytes used by a file, or by all files under a folder (Zarr stores, TIFF series)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return 0


def scan_movie(movie: da.Array) -> dict[str, Any]:
    """Check every frame of a (T, Y, X) movie in one streaming pass (memory: one block).

    Returns ``nonfinite_pixels`` and ``nonfinite_frames`` (NaN/Inf; 0 for integer movies),
    ``saturation_level`` (ADU; the dtype's maximum for integer movies, None for float),
    ``saturated_pixels`` and ``saturated_frames`` (frames holding at least one such pixel), and
    ``first_frames`` (up to 10 frame numbers for each problem).
    """
    level = saturation_level(movie.dtype)
    parts: dict[str, da.Array] = {}
    if movie.dtype.kind == "f":
        parts["nonfinite"] = (~da.isfinite(movie)).sum(axis=(1, 2))
    if level is not None:
        parts["saturated"] = (movie >= level).sum(axis=(1, 2))
    values = dict(zip(parts, dask.compute(*parts.values()), strict=True)) if parts else {}
    out: dict[str, Any] = {"saturation_level": level}
    for name in ("nonfinite", "saturated"):
        per_frame = np.asarray(values.get(name, np.zeros(movie.shape[0], np.int64)))
        hit = np.flatnonzero(per_frame)
        out[f"{name}_pixels"] = int(per_frame.sum())
        out[f"{name}_frames"] = int(hit.size)
        out[f"{name}_first_frames"] = [int(f) for f in hit[:10]]
    return out


def movie_info(
    movie: da.Array,
    path: str | Path,
    em_gain: float = 1.0,
    read_noise: float = 1.5,
    n_sample: int = 10,
    source: Any = None,
    psf_sigma_px: float = 1.3,
) -> dict[str, Any]:
    """Summarize a raw movie (T, Y, X).

    The summary holds storage facts, checks of every frame, sampled frame statistics (ADU) and a
    camera estimate.

    ``frame_stats`` lists ``frame, min, median, mean, max, std`` (NaN-aware) for ``n_sample`` frames
    spread over the movie. ``finite`` and the saturation counts cover *all* frames (see
    :func:`scan_movie`). ``source`` (a :class:`smlmdn.io.MovieSource`) adds the layout, the files
    read, the frames the metadata promise and notes. ``camera_estimate`` is None (with
    ``camera_estimate_error``) when the data do not allow a photon-transfer fit (``psf_sigma_px``, the
    PSF sigma in pixels, tells the fit on a flat background which spatial frequencies hold only noise). ``warnings`` lists
    data problems in words.
    """
    t = movie.shape[0]
    frames = np.unique(np.linspace(0, t - 1, min(n_sample, t)).astype(int))
    sample = np.asarray(movie[frames].compute(), dtype=np.float64)
    scan = scan_movie(movie)
    stats = [
        {
            "frame": int(f),
            "min": float(np.nanmin(s)) if np.isfinite(s).any() else float("nan"),
            "median": float(np.nanmedian(s)) if np.isfinite(s).any() else float("nan"),
            "mean": float(np.nanmean(s[np.isfinite(s)])) if np.isfinite(s).any() else float("nan"),
            "max": float(np.nanmax(s)) if np.isfinite(s).any() else float("nan"),
            "std": float(np.std(s[np.isfinite(s)])) if np.isfinite(s).any() else float("nan"),
        }
        for f, s in zip(frames, sample, strict=True)
    ]
    info: dict[str, Any] = {
        "path": os.fspath(path),
        "shape": list(movie.shape),
        "dtype": str(movie.dtype),
        "chunks": [int(c[0]) for c in movie.chunks],
        "n_blocks": len(movie.chunks[0]),
        "size_on_disk_bytes": size_on_disk(path),
        "size_in_memory_bytes": int(movie.nbytes),
        "finite": scan["nonfinite_pixels"] == 0,
        "finite_checked": "all frames",
        **scan,
        "frame_stats": stats,
        "camera_estimate": None,
    }
    if source is not None:
        info.update(
            layout=source.layout,
            files=list(source.files),
            frames_promised=source.frames_promised,
            notes=list(source.notes),
            camera_from_movie=dict(source.camera),
        )
    warnings_: list[str] = []
    if scan["nonfinite_pixels"]:
        warnings_.append(
            f"{scan['nonfinite_pixels']} NaN/Inf pixels in {scan['nonfinite_frames']} frames "
            f"(first: {scan['nonfinite_first_frames']}): commands refuse such frames; fix or crop them (--frames)"
        )
    if scan["saturated_pixels"]:
        warnings_.append(
            f"{scan['saturated_pixels']} saturated pixels (= {scan['saturation_level']:g} ADU) in "
            f"{scan['saturated_frames']} frames (first: {scan['saturated_first_frames']}): molecules there are "
            "fitted with biased photons, position and background"
        )
    info["warnings"] = warnings_
    if scan["nonfinite_pixels"]:
        info["camera_estimate_error"] = "the movie holds NaN/Inf pixels, so no photon-transfer fit was tried"
        return info
    try:
        info["camera_estimate"] = estimate_camera(
            movie, em_gain=em_gain, read_noise=read_noise, psf_sigma_px=psf_sigma_px
        ).to_dict()
    except SmlmdnError as exc:
        info["camera_estimate_error"] = exc.one_line()
    return info
