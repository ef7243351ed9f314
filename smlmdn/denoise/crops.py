"""Training data for the denoiser: held-out frames, normalisation and random crops in model counts.

Training crops: random square crops (``patch`` px, random dihedral flips) of random frames, drawn
from a pool of frame windows read from the dask movie a few blocks at a time (the trainer refreshes
the pool, so memory is bounded whatever the movie length). Validation uses fixed crops (up to 64 px,
larger than training crops) of held-out frames: every tenth group of consecutive frames, so held-out
frames are spread over the whole acquisition. With temporal context ``K`` a window is the frames
``c-K..c+K`` around a centre frame ``c`` in ``K..T-K-1``.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from . import likelihood as L


def split_frames(t: int, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation centre frames: every tenth group of consecutive frames is held out."""
    centres = np.arange(context, t - context)
    n = len(centres)
    group = max(1, n // 100)
    groups = (centres - context) // group
    val = centres[groups % 10 == 5] if n >= 10 else centres[-1:]
    train = np.setdiff1d(centres, val)
    if len(train) == 0:
        train, val = centres[:-1], centres[-1:]
    return train, val


def read_windows(photons: da.Array, centres: np.ndarray, k: int, shift: float, factor: float) -> np.ndarray:
    """Frames ``c-k..c+k`` for each centre as model counts (n, 2k+1, Y, X) float32, read in one pass."""
    parts = [photons[c - k : c + k + 1] for c in centres]
    blocks = dask.compute(*parts) if isinstance(photons, da.Array) else [np.asarray(p) for p in parts]
    return np.stack([L.to_model_counts(b, shift, factor) for b in blocks])


def read_clean(clean: da.Array, centres: np.ndarray, shift: float, factor: float) -> np.ndarray:
    """Clean centre frames (n, Y, X) float32 in model counts."""
    blocks = dask.compute(*[clean[c] for c in centres]) if isinstance(clean, da.Array) else [clean[c] for c in centres]
    return np.stack([(np.asarray(b, np.float32) + np.float32(shift)) / np.float32(factor) for b in blocks])


def normalisation(photons: da.Array, shift: float, factor: float, n_frames: int = 64) -> dict[str, float]:
    """Per-movie input normalisation in model counts: ``level`` = median, ``scale`` = max(1.48 MAD, 1)."""
    t = photons.shape[0]
    idx = np.unique(np.linspace(0, t - 1, min(n_frames, t)).astype(int))
    sample = L.to_model_counts(
        np.asarray(photons[idx].compute() if isinstance(photons, da.Array) else photons[idx]), shift, factor
    )
    level = float(np.median(sample))
    mad = float(np.median(np.abs(sample - level)))
    return {"level": level, "scale": max(1.4826 * mad, 1.0)}


class Sampler:
    """Random crops (with dihedral augmentation) from a pool of frame windows in model counts."""

    def __init__(self, rng: np.random.Generator, patch: int) -> None:
        self.rng = rng
        self.patch = patch
        self.pool: np.ndarray | None = None
        self.clean: np.ndarray | None = None

    def crops(
        self, n: int, pool: np.ndarray | None = None, clean: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw ``n`` random ``patch`` px crops (with dihedral augmentation) and the matching clean crops (or None).

        ``pool`` and ``clean`` default to the pools set on the sampler.
        """
        pool = self.pool if pool is None else pool
        clean = self.clean if clean is None else clean
        assert pool is not None, "set the crop pool first"
        rng, p = self.rng, self.patch
        _, _, hgt, wid = pool.shape
        fi = rng.integers(0, pool.shape[0], n)
        ys = rng.integers(0, hgt - p + 1, n)
        xs = rng.integers(0, wid - p + 1, n)
        flips = rng.integers(0, 2, (n, 3))
        out = np.empty((n, pool.shape[1], p, p), np.float32)
        out_clean = np.empty((n, p, p), np.float32) if clean is not None else None
        for i in range(n):
            c = pool[fi[i], :, ys[i] : ys[i] + p, xs[i] : xs[i] + p]
            cc = clean[fi[i], ys[i] : ys[i] + p, xs[i] : xs[i] + p] if clean is not None else None
            if flips[i, 0]:
                c = c[:, ::-1]
                cc = cc[::-1] if cc is not None else None
            if flips[i, 1]:
                c = c[:, :, ::-1]
                cc = cc[:, ::-1] if cc is not None else None
            if flips[i, 2]:
                c = c.transpose(0, 2, 1)
                cc = cc.T if cc is not None else None
            out[i] = c
            if out_clean is not None:
                out_clean[i] = cc
        return out, out_clean


class Windows:
    """Frame windows of the movie (and clean centre frames, when supervised) in model counts."""

    def __init__(self, photons: da.Array, clean: da.Array | None, context: int, shift: float, factor: float) -> None:
        self.photons, self.clean, self.context = photons, clean, context
        self.shift, self.factor = shift, factor

    def read(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Windows (n, 2K+1, Y, X) float32 and clean frames (n, Y, X) float32 or None, for ``centres``."""
        windows = read_windows(self.photons, centres, self.context, self.shift, self.factor)
        if self.clean is None:
            return windows, None
        return windows, read_clean(self.clean, centres, self.shift, self.factor)


def validation_crops(
    windows: Windows,
    val_frames: np.ndarray,
    frame_shape: tuple[int, int],
    seed: int,
    patch: int,
    depth: int,
    val_crops: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return fixed validation crops (n, 2K+1, V, V) (+ clean (n, V, V)) of held-out frames, ``V`` up to 64 px.

    Own generator (``seed + 1``): independent of the training stream and of resuming. The crops are
    larger than the ``patch`` px training crops (up to 64 px or the frame, a multiple of ``2**depth``):
    inference runs on whole frames, and a net that only works on small crops (e.g. relying on
    borders) must show up here. ``val_crops`` is the count at the training patch size (fewer when
    the crops are larger, at least 8).
    """
    vrng = np.random.default_rng(seed + 1)
    vsel = np.sort(vrng.choice(val_frames, size=min(len(val_frames), 64), replace=False))
    vpool, vclean = windows.read(vsel)
    mult = 2**depth
    vpatch = max(patch, min(max(2 * patch, 64), (min(frame_shape) // mult) * mult))
    n_vcrops = max(8, int(val_crops * (patch / vpatch) ** 2))
    return Sampler(vrng, vpatch).crops(n_vcrops, vpool, vclean)


def pool_size(n_train: int, pool_frames: int, context: int, frame_shape: tuple[int, int]) -> int:
    """Training frames held in memory at once: at most ``pool_frames`` and about 128 MiB of windows."""
    window_bytes = 4 * frame_shape[0] * frame_shape[1] * (2 * context + 1)
    return int(min(n_train, pool_frames, max(8, (128 * 2**20) // window_bytes)))
