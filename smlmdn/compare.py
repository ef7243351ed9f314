"""`smlmdn compare` as a library function: answer both research questions for one movie.

:func:`compare` scores the raw photons and each denoised estimate (PSNR / SSIM against a noise-free
movie when given, background SNR always), localizes the movie in the ``raw``, ``denoised`` and
``hybrid`` modes with identical settings, scores each table (matching against ground truth when given;
count, CRLB, NeNA and FRC always), and writes ``report.json``, ``report.md``, PNG figures and the
localization tables into a report folder.

Memory: the movie is read block by block. With a model, the estimates are computed once (one network
pass per frame block for all estimates) into Zarr stores in the report's work folder, and every
metric and localization run streams from there; the background-SNR regions are stored the same way.
The report folder is written as ``REPORT_DIR.partial`` and renamed into place at the end, so a
failed or interrupted run never leaves a half-written report under the final name.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from .camera import Camera, movie_to_photons, saturation_photons
from .errors import SmlmdnError
from .evaluate import report as R
from .evaluate.image import data_range_of
from .evaluate.render import render_image, save_render_png
from .io import atomic_folder, frames_per_block, open_estimate, open_movie, provenance, write_movies
from .localize import MODES, LocalizeSettings, localize_movie, write_localizations
from .localize.link import DEFAULT_MAX_DISTANCE_NM, linked_positions
from .localize.settings import DEFAULT_FDR, DEFAULT_POOL
from .progress import track
from .shapes import check_same_shape, check_tyx

DEFAULT_ESTIMATES = ("mean", "map", "prior")
#: Estimates that are images of the sample (``std`` is an uncertainty map and is not scored).
SCORED_ESTIMATES = ("mean", "map", "prior")
TRUTH_COLUMNS = ("frame", "x_nm", "y_nm")
MAX_BLOCK_FRAMES = 256


# ------------------------------------------------------------------------------------------ inputs


def read_truth(truth: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Ground truth as a DataFrame with ``frame`` (0-based int), ``x_nm``, ``y_nm`` (nm) [, ``photons``].

    Accepts a CSV path (as written by ``smlmdn simulate``) or a DataFrame; refuses missing columns.
    """
    if isinstance(truth, pd.DataFrame):
        df, where = truth, "the ground-truth table"
    else:
        path = Path(truth)
        if not path.is_file():
            raise SmlmdnError(f"ground-truth file {path} does not exist", "check the --truth path")
        try:
            df = pd.read_csv(path)
        except Exception as exc:  # pandas raises many types for broken CSVs
            raise SmlmdnError(
                f"cannot read ground truth {path} as CSV ({type(exc).__name__}: {exc})",
                "give a CSV with a header line frame,x_nm,y_nm[,photons]",
            ) from exc
        where = str(path)
    missing = [c for c in TRUTH_COLUMNS if c not in df.columns]
    if missing:
        raise SmlmdnError(
            f"{where} lacks column(s) {', '.join(missing)} (it has {', '.join(map(str, df.columns[:8]))})",
            "give a CSV with columns frame (0-based), x_nm, y_nm in nm, as written by `smlmdn simulate`",
        )
    out = df.copy()
    try:
        out["frame"] = out["frame"].astype(np.int64)
        out["x_nm"] = out["x_nm"].astype(np.float64)
        out["y_nm"] = out["y_nm"].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise SmlmdnError(
            f"{where} has non-numeric frame/x_nm/y_nm values ({exc})", "check the ground-truth table"
        ) from exc
    return out


def _as_movie(data: Any, block_frames: int | None, what: str) -> tuple[da.Array, str | None]:
    """(lazy (T, Y, X) array, path or None) from a path or an array."""
    if isinstance(data, (str, Path)):
        return open_movie(data, block_frames=block_frames), str(data)
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    check_tyx(arr.shape, what)
    if block_frames:
        arr = arr.rechunk((min(block_frames, arr.shape[0]), -1, -1))
    return arr, None


def open_denoised(data: Any, camera: Camera, shape: tuple[int, ...], block_frames: int) -> tuple[str, da.Array]:
    """(estimate name, lazy photons) of a denoised movie: a path written by ``smlmdn denoise`` (see
    :func:`smlmdn.io.open_estimate`) or an array (taken as the posterior mean in photons)."""
    if isinstance(data, (str, Path)):
        return open_estimate(data, camera, shape, block_frames)
    arr, _ = _as_movie(data, block_frames, "denoised movie")
    check_same_shape(arr.shape, shape, "denoised movie")
    return "mean", arr.astype(np.float32)


def materialize(
    arrays: dict[str, da.Array], folder: Path, attrs: dict[str, Any], progress: bool, description: str
) -> dict[str, da.Array]:
    """Compute lazy same-shape (T, Y, X) arrays together into ``folder/NAME.zarr`` and reopen them lazily.

    One computation per frame block feeds every array (:func:`smlmdn.io.write_movies`), so work they
    share (one network pass for every estimate) runs once. Returns the stores as lazy arrays with the
    same frame blocks.
    """
    paths = {name: folder / f"{name}.zarr" for name in arrays}
    write_movies(
        {paths[n]: a for n, a in arrays.items()},
        attrs={paths[n]: {**attrs, "estimate": n} for n in arrays},
        overwrite=True,
        progress=progress,
        description=description,
    )
    block = next(iter(arrays.values())).chunks[0][0]
    return {n: open_movie(paths[n], block_frames=block) for n in arrays}


# ------------------------------------------------------------------------------------------ workflow


CLEAN_UNITS = ("detected", "emitted", "adu")
#: How PSNR's peak is chosen (stated in every report that has a clean reference).
PSNR_PEAK = (
    "PSNR = 10 log10(peak^2 / MSE), peak = max - min of the clean reference in detected photons over the whole "
    "movie (the same peak for every row), MSE pooled over all pixels of all frames"
)


def clean_to_detected(clean: da.Array, units: str, camera: Camera) -> da.Array:
    """A clean reference (T, Y, X) in ``units`` as expected *detected* photons (photoelectrons), lazily.

    ``detected``: unchanged (smlmdn's estimates and ``smlmdn simulate``'s clean.tif are in these);
    ``emitted``: photons reaching the camera before QE (other simulators), times ``camera.qe``;
    ``adu``: camera units, ``(ADU - offset) * e_per_adu / em_gain`` (:func:`smlmdn.camera.to_photons`).
    Raises SmlmdnError for other units. Without this a QE of 0.8 would be a 20 % scale error in PSNR.
    """
    if units == "detected":
        return clean
    if units == "emitted":
        return clean * np.float32(camera.qe)
    if units == "adu":
        from .camera import to_photons

        return to_photons(clean, camera)
    raise SmlmdnError(f"unknown --clean-units {units!r}", f"use --clean-units {' / '.join(CLEAN_UNITS)}")


def compare(
    movie: str | Path | np.ndarray | da.Array,
    camera: Camera,
    *,
    out_dir: str | Path,
    model: Any = None,
    denoised: Any = None,
    truth: str | Path | pd.DataFrame | None = None,
    clean: str | Path | np.ndarray | da.Array | None = None,
    clean_units: str = "detected",
    estimates: tuple[str, ...] | list[str] = DEFAULT_ESTIMATES,
    localize_estimate: str = "mean",
    units: str = "adu",
    tolerance_nm: float = 250.0,
    box: int = 7,
    psf_sigma_nm: float = 130.0,
    fit_sigma: bool = False,
    threshold: float | None = None,
    fdr: float = DEFAULT_FDR,
    pool: int = DEFAULT_POOL,
    link_distance_nm: float = DEFAULT_MAX_DISTANCE_NM,
    multi_emitter: bool = True,
    render_pixel_nm: float = 10.0,
    frc_render_pixel_nm: float = 5.0,
    device: str = "auto",
    keep_denoised: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score denoising and localization of ``movie`` and write a report folder; returns the report dict.

    ``movie``: path or (T, Y, X) array in ``units`` (``adu`` converted with ``camera``, or ``photons``).
    Exactly one of ``model`` (model file path or :class:`~smlmdn.denoise.DenoiseModel`: the
    ``estimates`` are computed) or ``denoised`` (a denoised movie path/array in photons, a list of
    paths written by ``smlmdn denoise`` (each named by its ``estimate`` attribute), or a dict estimate
    name -> path/array) must be given. ``localize_estimate`` (default ``mean``) is the
    estimate used by the ``denoised`` and ``hybrid`` localization modes. Optional ``truth`` (CSV path
    or DataFrame: frame, x_nm, y_nm) and ``clean`` (noise-free expected movie, same shape) in
    ``clean_units`` (see :func:`clean_to_detected`: ``detected`` photons, default; ``emitted`` photons
    before QE; or ``adu``), converted to detected photons before PSNR/SSIM.
    Localization settings (``box`` px, ``psf_sigma_nm``, ``fit_sigma``, ``threshold``, ``fdr``,
    ``pool``, ``link_distance_nm``, ``multi_emitter``: see :func:`smlmdn.localize.localize`) are the same in every mode;
    each mode is scored twice, with every localization's own position and with its linked blink's
    pooled position (``"<mode> linked"``); matching uses ``tolerance_nm``. Writes into ``out_dir``
    (refused if it exists unless ``overwrite``): ``report.json``, ``report.md``, ``crops.png``, ``renders.png``, ``metrics.png``,
    ``frc.png``, ``render_<mode>.png``, ``locs_<mode>.csv`` and, with ``keep_denoised``,
    ``denoised/<estimate>.zarr``. ``log`` receives one-line progress messages.
    """
    log = log or (lambda msg: None)
    timing: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing[name] = round(now - clock, 2)
        clock = now

    # ---- validate everything before any work
    if (model is None) == (denoised is None):
        raise SmlmdnError(
            "give exactly one of a model or a denoised movie" if model is not None else "no denoiser output to compare",
            "pass --model model.pt (denoise on the fly) or --denoised denoised.zarr (from `smlmdn denoise`)",
        )
    final = Path(out_dir)
    if final.exists() and not overwrite:
        raise SmlmdnError(
            f"report folder {final} already exists", "pass --overwrite to replace it, or choose another -o"
        )
    if final.exists() and not final.is_dir():
        raise SmlmdnError(f"{final} exists and is not a folder", "choose another -o")
    if final.is_dir() and any(final.iterdir()) and not (final / "report.json").is_file():
        # --overwrite replaces the whole folder: never delete one that is not an earlier report
        raise SmlmdnError(
            f"{final} is a folder with other files in it, not an smlmdn report, so --overwrite will not delete it",
            "choose a new report folder name for -o",
        )
    if not (math.isfinite(tolerance_nm) and tolerance_nm > 0):
        raise SmlmdnError(
            f"--tolerance must be a positive number of nm, got {tolerance_nm}", "use e.g. --tolerance 250"
        )
    if render_pixel_nm <= 0 or frc_render_pixel_nm <= 0:
        raise SmlmdnError("render pixel sizes must be > 0 nm", "use e.g. --render-pixel 10")
    estimates = tuple(e.lower() for e in estimates)
    bad = [e for e in (*estimates, localize_estimate) if e not in SCORED_ESTIMATES]
    if model is not None and (bad or not estimates):
        raise SmlmdnError(
            f"cannot score estimate(s) {', '.join(bad) or '(none)'}",
            f"use --estimate {' / '.join(SCORED_ESTIMATES)} (std is a per-pixel uncertainty, not an image to score)",
        )
    if clean_units not in CLEAN_UNITS:
        raise SmlmdnError(f"unknown --clean-units {clean_units!r}", f"use --clean-units {' / '.join(CLEAN_UNITS)}")
    truth_df = read_truth(truth) if truth is not None else None
    loc_settings = LocalizeSettings(
        box=box,
        psf_sigma_nm=psf_sigma_nm,
        fit_sigma=fit_sigma,
        threshold=threshold,
        fdr=fdr,
        pool=pool,
        link_distance_nm=link_distance_nm,
        multi_emitter=multi_emitter,
    )

    # ---- inputs
    probe, _ = _as_movie(movie, None, "movie")
    block = max(1, min(MAX_BLOCK_FRAMES, frames_per_block(probe.shape[1:], 4), probe.shape[0]))
    raw, movie_path = _as_movie(movie, block, "movie")
    photons = movie_to_photons(raw, camera, units=units)
    shape = tuple(photons.shape)
    t = shape[0]
    clean_arr = None
    clean_path = None
    if clean is not None:
        clean_arr, clean_path = _as_movie(clean, block, "noise-free movie")
        check_same_shape(
            clean_arr.shape, shape, "noise-free (--clean) movie", fix="give the clean.tif simulated with this movie"
        )
        clean_arr = clean_to_detected(clean_arr.astype(np.float32), clean_units, camera)
    if truth_df is not None:
        outside = (truth_df["frame"] < 0) | (truth_df["frame"] >= t)
        if outside.all() and len(truth_df):
            raise SmlmdnError(
                f"no ground-truth frame lies in the movie's 0..{t - 1}",
                "give the truth.csv of this movie (frames are 0-based)",
            )

    with atomic_folder(final) as tmp:
        work = tmp / "denoised"
        # ---- denoised estimates
        if model is not None:
            from .denoise import denoise_lazy, load_model
            from .denoise.model_file import DenoiseModel

            mobj = model if isinstance(model, DenoiseModel) else load_model(model, camera)
            if isinstance(model, DenoiseModel):
                mobj.check_camera(camera)
            names = tuple(dict.fromkeys([*estimates, localize_estimate]))
            lazy = denoise_lazy(
                photons, mobj if isinstance(model, DenoiseModel) else model, estimates=names, device=device
            )
            denoiser = {
                "model": str(model) if not isinstance(model, DenoiseModel) else str(mobj.path or "(in memory)"),
                "model_hash": mobj.hash(),
                "training": {
                    k: mobj.training.get(k) for k in ("steps", "seconds", "best_val_loss", "stopped", "device")
                },
            }
            log(f"denoising {t} frames ({', '.join(names)}) with model {mobj.hash()}")
            est = materialize(lazy, work, {"units": "photons", "model_hash": mobj.hash()}, progress, "denoising")
        else:
            if isinstance(denoised, dict):
                items = list(denoised.items())
            elif isinstance(denoised, (list, tuple)):
                items = [(None, d) for d in denoised]
            else:
                items = [(None, denoised)]
            est, sources = {}, dict[str, str]()
            for given_name, data in items:
                name, arr = open_denoised(data, camera, shape, block)
                name = given_name or name
                if name in est:
                    raise SmlmdnError(
                        f"two denoised movies are both the {name!r} estimate ({sources[name]} and {data})",
                        "give each estimate once (e.g. one mean and one map file from `smlmdn denoise -e mean -e map`)",
                    )
                est[name] = arr
                sources[name] = str(data) if isinstance(data, (str, Path)) else "(array)"
            denoiser = {"denoised": sources}
            if localize_estimate not in est:
                localize_estimate = next(iter(est))
        lap("denoise")

        # ---- question 1: denoising quality
        log("scoring the denoised estimates")
        mask_source = (
            "the ground truth (true emitter positions)"
            if truth_df is not None
            else "peaks found in the raw movie (difference of Gaussians, 5 robust sigmas)"
        )
        sig, bg = R.make_masks(photons, truth_df, camera.pixel_size, psf_sigma_nm)
        labels = materialize(
            {"regions": sig.astype(np.uint8) + 2 * bg.astype(np.uint8)},
            tmp / "_work",
            {},
            progress,
            "signal/background regions",
        )["regions"]
        masks = (labels == 1, labels == 2)
        fractions = da.compute(masks[0].mean(), masks[1].mean())
        data_range = data_range_of(clean_arr) if clean_arr is not None else None
        images = {"raw": photons, **{n: est[n] for n in est}}
        denoise_report = {}
        with track(total=len(images), description="image metrics", enabled=progress) as advance:
            for name, img in images.items():
                denoise_report[name] = R.denoise_metrics(img, clean_arr, masks, data_range=data_range)
                advance(1)
        lap("image_metrics")

        # ---- question 2: localization in three modes
        det = est[localize_estimate]
        tables: dict[str, pd.DataFrame] = {}
        clipped = saturation_photons(raw.dtype, camera, units)
        for loc_mode in MODES.values():
            log(f"localizing ({loc_mode.name} mode)")
            tables[loc_mode.name] = localize_movie(
                photons,
                camera,
                loc_settings,
                mode=loc_mode,
                detect_on=det if loc_mode.needs_denoised else None,
                saturation_photons=clipped,
                progress=progress,
            )
        lap("localize")
        loc_report: dict[str, Any] = {}
        curves = {}
        for mode, locs in tables.items():
            for name, table in ((mode, locs), (f"{mode} linked", linked_positions(locs))):
                loc_report[name], curves[name] = R.localize_metrics(
                    table,
                    truth_df,
                    shape,
                    camera.pixel_size,
                    tolerance_nm=tolerance_nm,
                    render_pixel_nm=frc_render_pixel_nm,
                )
                loc_report[name].update(
                    {
                        k: locs.attrs.get(k)
                        for k in (
                            "n_candidates",
                            "n_rejected",
                            "n_dropped_nonconverged",
                            "n_dropped_outside",
                            "n_saturated",
                            "n_tracks",
                        )
                    }
                )
            loc_report[f"{mode} linked"]["nena_nm"] = (
                None  # a blink's members share one pooled position: NeNA means nothing
            )
        lap("localization_metrics")

        # ---- report
        report: dict[str, Any] = {
            "denoise": denoise_report,
            "localize": loc_report,
            "answers": {
                "denoising": R.answer_denoising(denoise_report),
                "localization": R.answer_localization(loc_report, truth_df is not None),
            },
            "inputs": {
                "movie": movie_path or "(array)",
                "shape": list(shape),
                "units": units,
                "truth": (
                    str(truth) if isinstance(truth, (str, Path)) else ("(table)" if truth_df is not None else None)
                ),
                "clean": clean_path or ("(array)" if clean_arr is not None else None),
                "clean_units": clean_units if clean_arr is not None else None,
                "denoiser": denoiser.get("model", "a denoised movie"),
                **denoiser,
            },
            "settings": {
                "estimates": list(est),
                "localize_estimate": localize_estimate,
                "tolerance_nm": tolerance_nm,
                "box": box,
                "psf_sigma_nm": psf_sigma_nm,
                "fit_sigma": fit_sigma,
                "threshold": threshold,
                "acceptance": tables["raw"].attrs.get("acceptance"),
                "fdr": fdr,
                "pool": pool,
                "link_distance_nm": link_distance_nm,
                "render_pixel_nm": render_pixel_nm,
                "frc_render_pixel_nm": frc_render_pixel_nm,
                "frc_split": "blocks",
                "data_range": R.json_number(data_range),
                "psnr_peak": PSNR_PEAK if clean_arr is not None else None,
            },
            "masks": {
                "source": mask_source,
                "signal_fraction": R.json_number(fractions[0]),
                "background_fraction": R.json_number(fractions[1]),
            },
            "camera": camera.to_dict(),
            "provenance": provenance(),
        }
        # ---- figures and tables
        log("drawing figures")
        figures = _write_figures(
            report, tmp, photons, est, clean_arr, truth_df, tables, curves, camera, render_pixel_nm
        )
        report["figures"] = figures
        for mode, locs in tables.items():
            write_localizations(
                locs,
                tmp / f"locs_{mode}.csv",
                camera,
                overwrite=True,
                metadata={
                    "mode": mode,
                    "movie": movie_path or "(array)",
                    **{k: v for k, v in denoiser.items() if k != "training"},
                },
            )
        lap("figures")
        report["timing_s"] = timing
        (tmp / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        (tmp / "report.md").write_text(R.report_markdown(report))
        shutil.rmtree(tmp / "_work", ignore_errors=True)
        if not keep_denoised or model is None:
            shutil.rmtree(work, ignore_errors=True)
    report["report_dir"] = str(final)
    return report


def _write_figures(
    report: dict[str, Any],
    folder: Path,
    photons: da.Array,
    est: dict[str, da.Array],
    clean: da.Array | None,
    truth: pd.DataFrame | None,
    tables: dict[str, pd.DataFrame],
    curves: dict[str, Any],
    camera: Camera,
    render_pixel_nm: float,
) -> dict[str, str]:
    """Draw the report's figures into ``folder``; returns {figure key: file name}."""
    frames = R.pick_frames(photons, truth)
    stacks = {"raw": photons, **est, **({"clean": clean} if clean is not None else {})}
    computed = da.compute(*[s[frames] for s in stacks.values()])
    ys, xs = R.crop_window(photons.shape[1:], computed[0])
    crops = {name: np.asarray(c)[:, ys, xs] for name, c in zip(stacks, computed, strict=True)}
    shape_yx = tuple(photons.shape[1:])
    renders = {mode: render_image(locs, shape_yx, camera.pixel_size, render_pixel_nm) for mode, locs in tables.items()}
    if truth is not None:
        inside = truth[(truth["frame"] >= 0) & (truth["frame"] < photons.shape[0])]
        renders["truth"] = render_image(inside, shape_yx, camera.pixel_size, render_pixel_nm, blur_nm=render_pixel_nm)
    figures = {
        "crops": R.figure_crops(frames, crops, folder / "crops.png", pixel_size_nm=camera.pixel_size).name,
        "renders": R.figure_renders(renders, folder / "renders.png", render_pixel_nm).name,
        "metrics": R.figure_metrics(report, folder / "metrics.png").name,
        "frc": R.figure_frc(curves, {m: report["localize"][m]["frc_nm"] for m in curves}, folder / "frc.png").name,
    }
    for mode, image in renders.items():
        figures[f"render_{mode}"] = save_render_png(image, folder / f"render_{mode}.png").name
    return figures
