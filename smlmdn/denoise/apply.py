"""Applying a trained denoiser to a movie lazily: frame blocks x spatial tiles -> posterior estimates.

:func:`denoise_lazy` returns dask arrays; nothing runs until they are computed, one frame block at a
time, so memory is flat in movie length. The graph ships only the model *path* (or, for a model
held in memory, its bytes as one shared graph key); each process loads the network once and caches
it (:func:`_runner`, keyed by path + modification time + size, or by the bytes' hash), so it runs on
dask.distributed workers without sending a model object per task.

Temporal context ``K``: blocks overlap by ``K`` frames (``dask.array.overlap``). At the first and
last frames of the movie the missing neighbours are filled by mirror reflection *excluding* the edge
frame (frame -1 := frame 1, numpy ``mode="reflect"``): repeating the edge frame itself would show the
network the noisy value it must not see.

Spatial tiling: each frame is embedded in a canvas (zero beyond the image, sides a multiple of
``2 ** depth``) and cut into tiles of ``tile`` px on that grid, each computed with a halo of
:func:`~smlmdn.denoise.network.receptive_halo` px and a validity mask, which makes tiled output equal
to whole-frame output (to float rounding; tested). A frame no larger than ``tile`` is one tile.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch

from ..camera import Camera
from ..errors import SmlmdnError
from ..parallel import in_frame_blocks, tune_worker_allocator
from ..shapes import check_tyx
from . import likelihood as L
from .model_file import DenoiseModel, load_model, model_from_bytes
from .network import receptive_halo

DEFAULT_TILE = 256
#: frames per block to open movies with for denoising: small blocks keep memory flat (a few are in
#: flight at once) and cost nothing, since the network runs FRAMES_PER_PASS frames at a time anyway
DEFAULT_BLOCK_FRAMES = 256
#: frames per network call (times the tiles of a frame)
FRAME_BATCH = 8
#: frames whose windows, parameters and posterior are held at once inside a block
FRAMES_PER_PASS = 64


class _Runner:
    """A loaded model ready to run: network on a device, normalisation and count transform."""

    def __init__(self, model: DenoiseModel, device: str) -> None:
        from .train import resolve_device

        self.model = model
        self.device, _ = resolve_device(device)
        self.net = model.network(self.device)
        self.cfg = model.net
        self.halo = receptive_halo(self.cfg)

    def params(self, windows: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
        """Prior parameters (n, Y, X) x 2 in model counts for windows (n, 2K+1, Y, X) of model counts."""
        n, c, hgt, wid = windows.shape
        mult, halo = self.cfg.multiple, self.halo
        tile = max(mult, (int(tile) // mult) * mult)
        hc, wc = -(-hgt // mult) * mult, -(-wid // mult) * mult
        level, scale = self.model.norm["level"], self.model.norm["scale"]
        norm = (windows - np.float32(level)) / np.float32(scale)
        p0 = np.empty((n, hgt, wid), np.float32)
        p1 = np.empty((n, hgt, wid), np.float32)
        for y0 in range(0, hc, tile):
            for x0 in range(0, wc, tile):
                y1, x1 = min(y0 + tile, hc), min(x0 + tile, wc)
                # input region: tile + halo, clipped to the canvas (outside the canvas = masked zeros)
                iy0, iy1 = max(0, y0 - halo), min(hc, y1 + halo)
                ix0, ix1 = max(0, x0 - halo), min(wc, x1 + halo)
                side = max(iy1 - iy0, ix1 - ix0)
                inp = np.zeros((n, c, side, side), np.float32)
                mask = np.zeros((1, 1, side, side), np.float32)
                vy1, vx1 = min(iy1, hgt), min(ix1, wid)
                if vy1 > iy0 and vx1 > ix0:
                    inp[:, :, : vy1 - iy0, : vx1 - ix0] = norm[:, :, iy0:vy1, ix0:vx1]
                    mask[:, :, : vy1 - iy0, : vx1 - ix0] = 1
                oy1, ox1 = min(y1, hgt), min(x1, wid)
                if oy1 <= y0 or ox1 <= x0:
                    continue
                mt = torch.from_numpy(mask).to(self.device)
                for f0 in range(0, n, FRAME_BATCH):
                    xb = torch.from_numpy(inp[f0 : f0 + FRAME_BATCH]).to(self.device)
                    with torch.no_grad():
                        if self.device.type == "cuda":
                            with torch.autocast("cuda", dtype=torch.bfloat16):
                                raw = self.net(xb, mt.expand(len(xb), -1, -1, -1))
                        else:
                            raw = self.net(xb, mt.expand(len(xb), -1, -1, -1))
                        a, b = self.net.params(raw.float(), level, scale)
                    sl = (slice(f0, f0 + len(xb)), slice(y0, oy1), slice(x0, ox1))
                    p0[sl] = a[:, y0 - iy0 : oy1 - iy0, x0 - ix0 : ox1 - ix0].cpu().numpy()
                    p1[sl] = b[:, y0 - iy0 : oy1 - iy0, x0 - ix0 : ox1 - ix0].cpu().numpy()
        return p0, p1

    def estimates(self, photons: np.ndarray, names: tuple[str, ...], tile: int, left: int, right: int) -> np.ndarray:
        """Estimates (len(names), B, Y, X) float32 photons for a block (left + B + right, Y, X) with halo frames."""
        k = self.cfg.context
        tr = self.model.transform
        z = L.to_model_counts(photons, tr["shift"], tr["factor"])
        # mirror the missing neighbours at the movie's ends, excluding the edge frame itself
        z = np.pad(z, ((k - left, k - right), (0, 0), (0, 0)), mode="reflect") if (left < k or right < k) else z
        b = z.shape[0] - 2 * k
        windows = np.lib.stride_tricks.sliding_window_view(z, 2 * k + 1, axis=0)[:b]  # view (B, Y, X, 2K+1)
        out = np.empty((len(names), b, *z.shape[1:]), np.float32)
        for f0 in range(0, b, FRAMES_PER_PASS):  # bounded memory whatever the block length
            f1 = min(b, f0 + FRAMES_PER_PASS)
            p0, p1 = self.params(np.ascontiguousarray(np.moveaxis(windows[f0:f1], -1, 1)), tile)
            post = L.posterior(
                self.cfg.head, torch.from_numpy(z[k + f0 : k + f1]), torch.from_numpy(p0), torch.from_numpy(p1)
            )
            for i, name in enumerate(names):
                kind = "std" if name == "std" else "value"
                out[i, f0:f1] = L.from_model_counts(post[name].float().numpy(), tr["shift"], tr["factor"], kind)
        return out


#: Models kept loaded per process (most recently used first out of the cache when it is full).
RUNNER_CACHE_SIZE = 4
_RUNNERS: OrderedDict[tuple[Any, ...], _Runner] = OrderedDict()
_RUNNERS_LOCK = threading.Lock()


def _runner(model_ref: str | bytes, device: str) -> _Runner:
    """Return the runner for a model path or model bytes.

    It is loaded once per process and kept in a bounded LRU cache (:data:`RUNNER_CACHE_SIZE`
    models; a changed file on disk is a new model).
    """
    if isinstance(model_ref, bytes):
        key: tuple[Any, ...] = ("bytes", hashlib.sha256(model_ref).hexdigest(), device)
    else:
        st = os.stat(model_ref)
        key = ("path", str(model_ref), st.st_mtime_ns, st.st_size, device)
    with _RUNNERS_LOCK:
        if key in _RUNNERS:
            _RUNNERS.move_to_end(key)
            return _RUNNERS[key]
    model = model_from_bytes(model_ref) if isinstance(model_ref, bytes) else load_model(model_ref)
    runner = _Runner(model, device)
    with _RUNNERS_LOCK:
        _RUNNERS[key] = runner
        while len(_RUNNERS) > RUNNER_CACHE_SIZE:
            _RUNNERS.popitem(last=False)
    return runner


def _block(
    photons: np.ndarray,
    model_ref: str | bytes,
    names: tuple[str, ...],
    tile: int,
    device: str,
    k: int,
    block_info: dict | None = None,
) -> np.ndarray:
    tune_worker_allocator()  # in a dask.distributed worker: reuse torch's buffers (see the function)
    info = (block_info or {}).get(0, {})
    loc, num = info.get("chunk-location", (0,))[0], info.get("num-chunks", (1,))[0]
    left = k if loc > 0 else 0
    right = k if loc < num - 1 else 0
    return _runner(model_ref, device).estimates(np.asarray(photons, np.float32), names, tile, left, right)


def denoise_lazy(
    photons: da.Array,
    model: DenoiseModel | str | Path,
    estimates: tuple[str, ...] | list[str] = ("mean",),
    device: str = "auto",
    tile: int = DEFAULT_TILE,
    block_frames: int | None = None,
) -> dict[str, da.Array]:
    """Lazy posterior estimates of a movie ``photons`` (T, Y, X) float32 detected photons.

    ``model`` is a model file path (shipped to workers as the path) or a :class:`DenoiseModel`
    (shipped as bytes: one graph key). ``estimates`` from ``mean`` (posterior mean, default), ``map``,
    ``std`` (posterior std: per-pixel uncertainty) and ``prior`` (the blind-spot prediction alone).
    Returns ``{name: dask array (T, Y, X) float32 photons}``; all estimates share one network pass per
    block when computed together. ``tile`` (px) bounds the spatial size of one network call;
    ``block_frames`` sets frames per block (default: the input's blocks; open the movie with
    ``open_movie(path, block_frames=DEFAULT_BLOCK_FRAMES)`` to keep memory small and flat).

    Raises :class:`SmlmdnError` on an unknown estimate, a movie that is not (T, Y, X) or shorter than
    the model's context, a model file that cannot be read, or a posterior estimate asked of a
    non-blind model (``NetConfig.blind=False``, the supervised bound: only ``prior`` is its output).
    """
    names = tuple(estimates)
    bad = [e for e in names if e not in L.ESTIMATES]
    if not names or bad:
        raise SmlmdnError(f"unknown estimate(s) {bad or names}", f"use --estimate {' / '.join(L.ESTIMATES)}")
    check_tyx(photons.shape)
    if isinstance(model, DenoiseModel):
        mobj = model
        model_ref: Any = model.to_bytes()
    else:
        mobj = load_model(model)
        model_ref = str(Path(model).resolve())
    if not mobj.net.blind and names != ("prior",):
        # the posterior combines a prior that never saw the pixel with the pixel's own count; a
        # non-blind network has already used that count, so the posterior would count it twice
        raise SmlmdnError(
            "this model is a non-blind network (the supervised bound of the benchmarks): its output already "
            "uses each pixel's own count, so posterior estimates would count it twice",
            "use --estimate prior with it, or fit a denoiser with `smlmdn fit` (blind spot)",
        )
    k = mobj.net.context
    t = photons.shape[0]
    if t < k + 1:
        raise SmlmdnError(
            f"the movie has {t} frames; the model uses --context {k} and needs at least {k + 1}",
            "use a model trained with a smaller --context",
        )
    if not isinstance(photons, da.Array):
        photons = da.from_array(np.asarray(photons, np.float32))
    photons = photons.astype(np.float32)
    if block_frames is None:
        # Keep the input's blocks: splitting them here would re-read each input block once per output
        # block. Open movies with io.open_movie(path, block_frames=DEFAULT_BLOCK_FRAMES) for small blocks.
        block_frames = photons.chunks[0][0]
    block_frames = max(int(block_frames), k + 1)
    chunks = _frame_chunks(t, block_frames, k)
    photons = in_frame_blocks(photons, chunks)
    if isinstance(model_ref, bytes):
        model_ref = dask.delayed(model_ref, pure=True)
    src = da.overlap.overlap(photons, depth={0: k, 1: 0, 2: 0}, boundary="none") if k else photons
    stacked = da.map_blocks(
        _block,
        src,
        model_ref,
        names,
        int(tile),
        device,
        k,
        new_axis=0,
        chunks=((len(names),), chunks, (photons.shape[1],), (photons.shape[2],)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32),
        name=f"smlmdn-denoise-{_token(model_ref, names, tile, k)}",
    )
    return {name: stacked[i] for i, name in enumerate(names)}


def denoise_on_the_fly(
    photons: da.Array, model: str | Path, camera: Camera, device: str = "auto", tile: int = DEFAULT_TILE
) -> da.Array:
    """Lazy posterior-mean photons (T, Y, X) float32 of ``photons`` (T, Y, X) detected photons from a model file.

    For localizing on a denoised movie without writing it: each frame block is denoised when the
    localizer reads it. Raises :class:`SmlmdnError` when the model file cannot be read or was trained
    for another camera (:func:`~smlmdn.denoise.model_file.load_model`), and as :func:`denoise_lazy`.
    """
    checked = load_model(model, camera)  # refuses a model trained for another camera
    return denoise_lazy(photons, checked, estimates=("mean",), device=device, tile=tile)["mean"]


def _token(*parts: Any) -> str:
    return dask.base.tokenize(*parts)


def _frame_chunks(t: int, block: int, k: int) -> tuple[int, ...]:
    """Frame chunk sizes of ``block`` frames; a short last chunk (< k + 1) joins its neighbour."""
    sizes = [block] * (t // block) + ([t % block] if t % block else [])
    if len(sizes) > 1 and sizes[-1] < k + 1:
        sizes[-2] += sizes.pop()
    return tuple(sizes)
