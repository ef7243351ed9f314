"""Describe a movie: shape, storage, per-frame statistics on a sample and camera numbers from the data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .camera import estimate_camera
from .errors import SmlmdnError


def size_on_disk(path: str | Path) -> int:
    """Bytes used by a file, or by all files under a folder (Zarr stores, TIFF series)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return 0


def movie_info(movie: da.Array, path: str | Path, em_gain: float = 1.0, read_noise: float = 1.5, n_sample: int = 10) -> dict[str, Any]:
    """Summary of a raw movie (T, Y, X): storage facts, sampled frame statistics (ADU) and a camera estimate.

    ``frame_stats`` lists ``frame, min, median, mean, max, std`` for ``n_sample`` frames spread
    over the movie. ``camera_estimate`` is None (with ``camera_estimate_error``) when the data do
    not allow a photon-transfer fit.
    """
    t = movie.shape[0]
    frames = np.unique(np.linspace(0, t - 1, min(n_sample, t)).astype(int))
    sample = np.asarray(movie[frames].compute(), dtype=np.float64)
    stats = [
        {
            "frame": int(f),
            "min": float(s.min()),
            "median": float(np.median(s)),
            "mean": float(s.mean()),
            "max": float(s.max()),
            "std": float(s.std()),
        }
        for f, s in zip(frames, sample)
    ]
    info: dict[str, Any] = {
        "path": os.fspath(path),
        "shape": list(movie.shape),
        "dtype": str(movie.dtype),
        "chunks": [int(c[0]) for c in movie.chunks],
        "n_blocks": len(movie.chunks[0]),
        "size_on_disk_bytes": size_on_disk(path),
        "size_in_memory_bytes": int(movie.nbytes),
        "finite": bool(np.all(np.isfinite(sample))),
        "frame_stats": stats,
        "camera_estimate": None,
    }
    try:
        info["camera_estimate"] = estimate_camera(movie, em_gain=em_gain, read_noise=read_noise).to_dict()
    except SmlmdnError as exc:
        info["camera_estimate_error"] = exc.one_line()
    return info
