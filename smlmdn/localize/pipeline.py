"""Detect and fit molecules in a movie, streaming one frame block at a time.

Modes (chosen by the caller through ``detect_on`` and ``fit_on``):

- raw: ``detect_on=None`` -- detect on and fit the raw photons;
- hybrid: ``detect_on=denoised, fit_on="raw"`` -- detect on the denoised movie, fit the raw photons
  with the Poisson likelihood (the statistically principled combination);
- denoised: ``detect_on=denoised, fit_on="detect"`` -- detect on and fit the denoised movie. The
  denoised pixels are not Poisson, so the fit's likelihood, CRLB and llr are model numbers, not
  calibrated uncertainties; this mode is kept to measure it against the other two.

Candidates near the frame edge keep their full ``box x box`` fit window, shifted to lie inside
the frame (so the candidate is off-centre in its box); a fit whose centre ends outside its box is
dropped and counted (``n_dropped_outside``), as are fits that did not converge
(``n_dropped_nonconverged``).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd

from ..camera import Camera, check_finite
from ..errors import SmlmdnError
from ..parallel import compute_blocks, frame_blocks
from ..progress import track
from .detect import default_threshold, detect
from .fit import CONVERGED, OUTSIDE, fit_spots

#: Columns of a localization table, in order. Units: frame (0-based index), nm, detected photons
#: (photoelectrons), bg in photons per pixel, loglik/llr dimensionless, iterations count.
LOC_COLUMNS = (
    "frame",
    "x_nm",
    "y_nm",
    "photons",
    "bg",
    "sigma_nm",
    "crlb_x_nm",
    "crlb_y_nm",
    "crlb_photons",
    "crlb_bg",
    "loglik",
    "llr",
    "iterations",
)

_DTYPES = {"frame": np.int64, "iterations": np.int32}


def empty_table() -> pd.DataFrame:
    """A localization table with no rows and the right columns and dtypes."""
    return pd.DataFrame({c: np.zeros(0, dtype=_DTYPES.get(c, np.float64)) for c in LOC_COLUMNS})


def check_settings(frame_shape: tuple[int, int], box: int, psf_sigma_nm: float, pixel_size_nm: float, threshold: float | None) -> None:
    """Raise :class:`SmlmdnError` for a box, PSF sigma or threshold that cannot work on frames of ``frame_shape``."""
    if not isinstance(box, (int, np.integer)) or box < 3 or box % 2 == 0:
        raise SmlmdnError(f"box must be an odd number of pixels >= 3, got {box}", "use e.g. --box 7 (odd, so the candidate pixel is the box centre)")
    if box > min(frame_shape):
        raise SmlmdnError(
            f"box {box} px is larger than the frame ({frame_shape[0]} x {frame_shape[1]} px)",
            f"use a --box of at most {min(frame_shape) - (1 - min(frame_shape) % 2)} px",
        )
    sigma_px = psf_sigma_nm / pixel_size_nm if pixel_size_nm > 0 else float("nan")
    if not np.isfinite(psf_sigma_nm) or psf_sigma_nm <= 0:
        raise SmlmdnError(f"psf sigma must be > 0 nm, got {psf_sigma_nm}", "give --psf-sigma in nm, e.g. 130 (about 0.21 x wavelength / NA)")
    if sigma_px > box:
        raise SmlmdnError(
            f"psf sigma {psf_sigma_nm:g} nm is {sigma_px:.1f} px, wider than the {box} px box",
            "check --psf-sigma is in nm and --pixel-size is right, or use a larger --box",
        )
    if sigma_px < 0.2:
        raise SmlmdnError(
            f"psf sigma {psf_sigma_nm:g} nm is only {sigma_px:.2f} px",
            "check --psf-sigma is in nm (not um or px) and --pixel-size is right",
        )
    if threshold is not None and (not np.isfinite(threshold) or threshold <= 0):
        raise SmlmdnError(f"threshold must be > 0 (noise standard deviations), got {threshold}", "omit --threshold for the adaptive default")


def localize_block(
    fit_frames: np.ndarray,
    detect_frames: np.ndarray,
    *,
    box: int,
    sigma_px: float,
    fit_sigma: bool,
    threshold: float,
    read_noise_photons: float,
    excess_noise: float,
    pixel_size_nm: float,
    frame_offset: int = 0,
    detect_read_noise: float = 0.0,
    detect_excess_noise: float = 1.0,
    fit_device: str | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Detect in ``detect_frames`` and fit ``fit_frames`` (both (T, Y, X) photons) -> (table, counts).

    ``read_noise_photons``/``excess_noise`` describe the noise of ``fit_frames``,
    ``detect_read_noise``/``detect_excess_noise`` that of ``detect_frames``. ``fit_device``: None fits
    with the numba kernels on the CPU; a torch device (``"cuda"``, ``"cpu"``) fits with the torch port
    (:mod:`smlmdn.localize.fit_torch`, same model and results).
    """
    cand = detect(detect_frames, sigma_px, box, threshold, read_noise_photons=detect_read_noise, excess_noise=detect_excess_noise)
    counts = {"n_candidates": len(cand), "n_dropped_nonconverged": 0, "n_dropped_outside": 0}
    if len(cand) == 0:
        return empty_table(), counts
    _, ny, nx = fit_frames.shape
    r = box // 2
    oy = np.clip(cand.row - r, 0, ny - box)
    ox = np.clip(cand.col - r, 0, nx - box)
    ar = np.arange(box)
    spots = fit_frames[cand.frame[:, None, None], (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]]
    if fit_device is None:
        res = fit_spots(spots, sigma_px, fit_sigma=fit_sigma, read_noise_photons=read_noise_photons, excess_noise=excess_noise)
    else:
        from .fit_torch import fit_spots_torch

        res = fit_spots_torch(spots, sigma_px, fit_sigma=fit_sigma, read_noise_photons=read_noise_photons,
                              excess_noise=excess_noise, device=fit_device)
    good = (res.status == CONVERGED) & np.isfinite(res.crlb[:, 0]) & np.isfinite(res.crlb[:, 1]) & (res.theta[:, 2] > 0)
    counts["n_dropped_outside"] = int(np.sum(res.status == OUTSIDE))
    counts["n_dropped_nonconverged"] = int(np.sum(~good) - counts["n_dropped_outside"])
    th, cr = res.theta[good], res.crlb[good]
    sigma_nm = th[:, 4] * pixel_size_nm
    table = pd.DataFrame(
        {
            "frame": (cand.frame[good] + frame_offset).astype(np.int64),
            "x_nm": (th[:, 0] + ox[good]) * pixel_size_nm,
            "y_nm": (th[:, 1] + oy[good]) * pixel_size_nm,
            "photons": th[:, 2],
            "bg": th[:, 3],
            "sigma_nm": sigma_nm,
            "crlb_x_nm": cr[:, 0] * pixel_size_nm,
            "crlb_y_nm": cr[:, 1] * pixel_size_nm,
            "crlb_photons": cr[:, 2],
            "crlb_bg": cr[:, 3],
            "loglik": res.loglik[good],
            "llr": res.llr[good],
            "iterations": res.iterations[good].astype(np.int32),
        }
    )
    return table, counts


def _fit_device(device: str) -> str | None:
    """``cpu|cuda|auto`` -> None (numba on the CPU) or the torch device to fit on."""
    device = (device or "cpu").lower()
    if device not in ("cpu", "cuda", "auto"):
        raise SmlmdnError(f"unknown device {device!r}", "use --device auto, cpu or cuda")
    if device == "cpu":
        return None
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise SmlmdnError("--device cuda was asked for but torch sees no CUDA device", "use --device cpu or auto")
    return None


def _localize_task(
    raw: np.ndarray, det: np.ndarray | None, fitting_denoised: bool, frame_offset: int, settings: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One block: check the pixels, detect (on ``det`` if given, else ``raw``) and fit; runs on a worker."""
    b1 = frame_offset + len(raw)
    raw = check_finite(np.asarray(raw, dtype=np.float32), f"frames {frame_offset}-{b1 - 1}")
    if det is None:
        det = raw
    else:
        det = check_finite(np.asarray(det, dtype=np.float32), f"(denoised) frames {frame_offset}-{b1 - 1}")
    return localize_block(det if fitting_denoised else raw, det, frame_offset=frame_offset, **settings)


def localize(
    photons: da.Array,
    camera: Camera,
    *,
    detect_on: da.Array | None = None,
    fit_on: Literal["raw", "detect"] = "raw",
    box: int = 7,
    psf_sigma_nm: float = 130.0,
    fit_sigma: bool = False,
    threshold: float | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> pd.DataFrame:
    """Localize molecules in ``photons`` (T, Y, X) detected photons (raw), block by block.

    ``detect_on``: an optional movie of the same shape (e.g. the denoised photons) to detect on;
    ``fit_on``: ``"raw"`` fits ``photons`` (hybrid when ``detect_on`` is given), ``"detect"`` fits
    the detection movie (the 'denoised' mode). ``box``: odd fit-window side in pixels;
    ``psf_sigma_nm``: PSF standard deviation (fixed, or the start value with ``fit_sigma``);
    ``threshold``: detection significance in robust noise standard deviations (None: adaptive
    default, see :mod:`smlmdn.localize.detect`). ``device``: ``cpu`` (numba kernels), ``cuda`` (the
    torch fitter on the GPU) or ``auto`` (CUDA when torch sees one, else the CPU).

    Returns a DataFrame with :data:`LOC_COLUMNS` (nm, photoelectrons, 0-based frames) and ``attrs``
    ``n_candidates``, ``n_dropped_nonconverged``, ``n_dropped_outside``, ``movie_shape``,
    ``pixel_size_nm`` and the settings used. Memory: one frame block (of each input) at a time.
    """
    if not isinstance(photons, da.Array):
        photons = da.from_array(np.asarray(photons), chunks=(max(1, min(len(photons), 256)), -1, -1))
    if photons.ndim != 3:
        raise SmlmdnError(f"the movie must be (T, Y, X), got shape {photons.shape}", "give a single-channel time series")
    if fit_on not in ("raw", "detect"):
        raise SmlmdnError(f"fit_on must be 'raw' or 'detect', got {fit_on!r}", "use fit_on='raw' (hybrid) or 'detect' (denoised)")
    if detect_on is not None:
        if not isinstance(detect_on, da.Array):
            detect_on = da.from_array(np.asarray(detect_on), chunks=photons.chunks)
        if tuple(detect_on.shape) != tuple(photons.shape):
            raise SmlmdnError(
                f"the denoised movie has shape {tuple(detect_on.shape)} but the raw movie has {tuple(photons.shape)}",
                "denoise this same movie (same frames and size) or pass the matching --denoised file",
            )
        detect_on = detect_on.rechunk(photons.chunks)
    elif fit_on == "detect":
        fit_on = "raw"  # no separate detection movie: 'detect' is the raw movie
    t, ny, nx = photons.shape
    pixel_size = float(camera.pixel_size)
    check_settings((ny, nx), box, psf_sigma_nm, pixel_size, threshold)
    sigma_px = psf_sigma_nm / pixel_size
    thr = default_threshold(sigma_px) if threshold is None else float(threshold)
    fitting_denoised = detect_on is not None and fit_on == "detect"
    # The camera noise model applies to raw photons only; a denoised estimate has neither read noise
    # nor EMCCD excess noise in that form, so its fit uses the plain Poisson model (see module docs).
    read_noise = 0.0 if fitting_denoised else camera.read_noise_photons
    excess = 1.0 if fitting_denoised else camera.excess_noise
    det_read_noise = camera.read_noise_photons if detect_on is None else 0.0
    det_excess = camera.excess_noise if detect_on is None else 1.0
    tables: list[pd.DataFrame] = []
    totals = {"n_candidates": 0, "n_dropped_nonconverged": 0, "n_dropped_outside": 0}
    found = 0
    settings = dict(
        fit_device=_fit_device(device),
        box=box, sigma_px=sigma_px, fit_sigma=fit_sigma, threshold=thr, read_noise_photons=read_noise, excess_noise=excess,
        pixel_size_nm=pixel_size, detect_read_noise=det_read_noise, detect_excess_noise=det_excess,
    )

    def task(i: int, b0: int, b1: int) -> Any:
        det = None if detect_on is None else detect_on[b0:b1]
        return dask.delayed(_localize_task)(photons[b0:b1], det, fitting_denoised, b0, settings)

    # Blocks run in parallel on the active dask scheduler (threads, or dask.distributed workers);
    # a denoiser reading the raw movie shares those reads with the fit inside one task.
    blocks = frame_blocks(photons.chunks[0])
    with track(total=t, description="localizing", enabled=progress) as advance:
        for (_, b0, b1), (table, counts) in compute_blocks(task, blocks):
            for k, v in counts.items():
                totals[k] += v
            if len(table):
                tables.append(table)
            found += len(table)
            advance(b1 - b0, locs=found)
    locs = pd.concat(tables, ignore_index=True) if tables else empty_table()
    mode = "raw" if detect_on is None else ("denoised" if fitting_denoised else "hybrid")
    attrs: dict[str, Any] = {
        **totals,
        "mode": mode,
        "movie_shape": [int(t), int(ny), int(nx)],
        "pixel_size_nm": pixel_size,
        "box": int(box),
        "psf_sigma_nm": float(psf_sigma_nm),
        "fit_sigma": bool(fit_sigma),
        "threshold": thr,
    }
    locs.attrs.update(attrs)
    if len(locs) == 0:
        warnings.warn(
            f"no molecules found in {t} frames ({totals['n_candidates']} candidates above threshold {thr:.2g}): "
            "check the camera numbers, --psf-sigma and --threshold",
            stacklevel=2,
        )
    return locs
