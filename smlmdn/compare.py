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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import dask.array as da
import numpy as np
import pandas as pd

from .camera import Camera, movie_to_photons, saturation_photons
from .errors import SmlmdnError
from .evaluate import report as R
from .evaluate.compare_report import (
    Answers,
    CompareReport,
    ImageScore,
    LocalizationScore,
    MaskRegions,
    ReportInputs,
    ReportSettings,
)
from .evaluate.image import data_range_of
from .evaluate.render import render_image, save_render_png
from .io import atomic_folder, frames_per_block, open_estimate, open_movie, provenance, write_movies
from .localize import MODES, LocalizeSettings, localize_movie, write_localizations
from .localize.extend import own_frames
from .localize.link import DEFAULT_MAX_DISTANCE_NM, linked_positions
from .localize.settings import DEFAULT_FDR, DEFAULT_POOL
from .parallel import in_frame_blocks
from .progress import track
from .shapes import check_same_shape, check_tyx

if TYPE_CHECKING:
    from .denoise.model_file import DenoiseModel

#: A movie: a path (any format :func:`smlmdn.io.open_movie` reads) or a (T, Y, X) array.
MovieInput: TypeAlias = "str | Path | np.ndarray | da.Array"
#: A denoiser: a model file or a loaded :class:`~smlmdn.denoise.DenoiseModel`.
ModelInput: TypeAlias = "str | Path | DenoiseModel"
#: Denoised movies: one, several (each named by its file's ``estimate`` attribute), or estimate name -> movie.
DenoisedInput: TypeAlias = "MovieInput | Sequence[MovieInput] | Mapping[str, MovieInput]"
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


def _as_movie(data: MovieInput, block_frames: int | None, what: str) -> tuple[da.Array, str | None]:
    """(lazy (T, Y, X) array, path or None) from a path or an array."""
    if isinstance(data, (str, Path)):
        return open_movie(data, block_frames=block_frames), str(data)
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    check_tyx(arr.shape, what)
    if block_frames:
        arr = in_frame_blocks(arr, min(block_frames, arr.shape[0]))
    return arr, None


def open_denoised(data: MovieInput, camera: Camera, shape: tuple[int, ...], block_frames: int) -> tuple[str, da.Array]:
    """Return (estimate name, lazy photons) of a denoised movie.

    The movie is a path written by ``smlmdn denoise`` (see :func:`smlmdn.io.open_estimate`) or an
    array (taken as the posterior mean in photons).
    """
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
    """Return a clean reference (T, Y, X) in ``units`` as expected *detected* photons (photoelectrons), lazily.

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


@dataclass(frozen=True)
class CompareSettings:
    """What :func:`compare` scores and how, validated on construction (raises :class:`SmlmdnError`).

    ``estimates``: the denoiser estimates computed and scored with a model (lower-cased; see
    :meth:`check_estimates`); ``localize_estimate``: the estimate the ``denoised`` and ``hybrid``
    modes detect on; ``clean_units``: one of :data:`CLEAN_UNITS`; ``tolerance_nm``: matching radius
    (> 0); ``render_pixel_nm`` / ``frc_render_pixel_nm``: pixel sizes of the rendered images and of
    the FRC renders (> 0); ``localization``: the same :class:`~smlmdn.localize.LocalizeSettings` in
    every mode.
    """

    estimates: tuple[str, ...] = DEFAULT_ESTIMATES
    localize_estimate: str = "mean"
    clean_units: str = "detected"
    tolerance_nm: float = 250.0
    render_pixel_nm: float = 10.0
    frc_render_pixel_nm: float = 5.0
    localization: LocalizeSettings = field(default_factory=LocalizeSettings)

    def __post_init__(self) -> None:
        """Normalise the estimate names and check tolerance and render pixel sizes (raises :class:`SmlmdnError`)."""
        object.__setattr__(self, "estimates", tuple(e.lower() for e in self.estimates))
        if not (math.isfinite(self.tolerance_nm) and self.tolerance_nm > 0):
            raise SmlmdnError(
                f"--tolerance must be a positive number of nm, got {self.tolerance_nm}", "use e.g. --tolerance 250"
            )
        if self.render_pixel_nm <= 0 or self.frc_render_pixel_nm <= 0:
            raise SmlmdnError("render pixel sizes must be > 0 nm", "use e.g. --render-pixel 10")

    def check_estimates(self) -> None:
        """Raise :class:`SmlmdnError` unless every estimate to compute (with a model) can be scored."""
        bad = [e for e in (*self.estimates, self.localize_estimate) if e not in SCORED_ESTIMATES]
        if bad or not self.estimates:
            raise SmlmdnError(
                f"cannot score estimate(s) {', '.join(bad) or '(none)'}",
                f"use --estimate {' / '.join(SCORED_ESTIMATES)} (std is a per-pixel uncertainty, not an image to score)",
            )

    def check_clean_units(self) -> None:
        """Raise :class:`SmlmdnError` unless ``clean_units`` is one of :data:`CLEAN_UNITS`."""
        if self.clean_units not in CLEAN_UNITS:
            raise SmlmdnError(
                f"unknown --clean-units {self.clean_units!r}", f"use --clean-units {' / '.join(CLEAN_UNITS)}"
            )


@dataclass(frozen=True)
class CompareInputs:
    """The movies of a comparison, opened lazily in the same frame blocks.

    ``raw``: the movie as given (T, Y, X); ``photons``: it in detected photons (float32);
    ``clean``: the noise-free reference in detected photons or None; ``truth``: the ground-truth
    table or None; ``*_path``: where each came from (None for arrays); ``truth_label``: the truth's
    description for the report; ``units``: the movie's units (``adu`` or ``photons``).
    """

    raw: da.Array
    photons: da.Array
    movie_path: str | None
    units: str
    clean: da.Array | None
    clean_path: str | None
    truth: pd.DataFrame | None
    truth_label: str | None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, Y, X) of the movie."""
        t, ny, nx = self.photons.shape
        return int(t), int(ny), int(nx)

    @property
    def block(self) -> int:
        """Frames per block of every array."""
        return int(self.photons.chunks[0][0])


@dataclass(frozen=True)
class Estimates:
    """The denoised movies scored and localized on.

    ``arrays``: estimate name -> lazy photons (T, Y, X); ``localize_estimate``: the one the
    ``denoised`` and ``hybrid`` modes detect on; ``denoiser``: where they came from (model file, hash
    and training summary, or the denoised files), for the report.
    """

    arrays: dict[str, da.Array]
    localize_estimate: str
    denoiser: dict[str, Any]


@dataclass(frozen=True)
class ImageScores:
    """Question 1: the denoising scores.

    ``metrics``: image name (``raw`` and each estimate) -> :func:`smlmdn.evaluate.report.denoise_metrics`;
    how the signal/background masks were made (``mask_source``) and the fraction of pixels in each;
    ``data_range``: the PSNR peak (photons) or None without a clean reference.
    """

    metrics: dict[str, dict[str, Any]]
    mask_source: str
    signal_fraction: float
    background_fraction: float
    data_range: float | None


@dataclass(frozen=True)
class LocalizationScores:
    """Question 2: the localization tables and scores.

    ``tables``: mode name -> localization table; ``metrics``: row name (each mode and
    ``"<mode> linked"``) -> :func:`smlmdn.evaluate.report.localize_metrics` plus the table's counts;
    ``curves``: the FRC curve of each row.
    """

    tables: dict[str, pd.DataFrame]
    metrics: dict[str, dict[str, Any]]
    curves: dict[str, Any]


class _Laps:
    """Wall-clock seconds of consecutive stages (``timing_s`` in the report)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._clock, 2)
        self._clock = now


def compare(
    movie: MovieInput,
    camera: Camera,
    *,
    out_dir: str | Path,
    model: ModelInput | None = None,
    denoised: DenoisedInput | None = None,
    truth: str | Path | pd.DataFrame | None = None,
    clean: MovieInput | None = None,
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
    extend: bool = True,
    render_pixel_nm: float = 10.0,
    frc_render_pixel_nm: float = 5.0,
    device: str = "auto",
    keep_denoised: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> CompareReport:
    """Score denoising and localization of ``movie`` and write a report folder; returns the report.

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
    ``pool``, ``link_distance_nm``, ``multi_emitter``, ``extend``: see :func:`smlmdn.localize.localize`) are the same in every mode;
    each mode is scored twice, with every localization's own position and with its linked blink's
    pooled position (``"<mode> linked"``); matching uses ``tolerance_nm``. Writes into ``out_dir``
    (refused if it exists unless ``overwrite``): ``report.json``, ``report.md``, ``crops.png``, ``renders.png``, ``metrics.png``,
    ``frc.png``, ``render_<mode>.png``, ``locs_<mode>.csv`` and, with ``keep_denoised``,
    ``denoised/<estimate>.zarr``. ``log`` receives one-line progress messages.
    Returns the :class:`~smlmdn.evaluate.compare_report.CompareReport` (its ``to_dict()`` is
    ``report.json``; its ``report_dir`` is ``out_dir``).
    Raises :class:`SmlmdnError` for inputs or settings that cannot work, before any work.
    """
    log = log or (lambda msg: None)
    laps = _Laps()
    # ---- validate everything before any work
    if (model is None) == (denoised is None):
        raise SmlmdnError(
            "give exactly one of a model or a denoised movie" if model is not None else "no denoiser output to compare",
            "pass --model model.pt (denoise on the fly) or --denoised denoised.zarr (from `smlmdn denoise`)",
        )
    final = Path(out_dir)
    check_report_folder(final, overwrite)
    settings = CompareSettings(
        estimates=tuple(estimates),
        localize_estimate=localize_estimate,
        clean_units=clean_units,
        tolerance_nm=tolerance_nm,
        render_pixel_nm=render_pixel_nm,
        frc_render_pixel_nm=frc_render_pixel_nm,
        localization=LocalizeSettings(
            box=box,
            psf_sigma_nm=psf_sigma_nm,
            fit_sigma=fit_sigma,
            threshold=threshold,
            fdr=fdr,
            pool=pool,
            link_distance_nm=link_distance_nm,
            multi_emitter=multi_emitter,
            extend=extend,
        ),
    )
    if model is not None:
        settings.check_estimates()
    settings.check_clean_units()
    truth_df = read_truth(truth) if truth is not None else None
    inputs = open_inputs(movie, camera, units, clean, settings.clean_units, truth, truth_df)

    with atomic_folder(final) as tmp:
        work = tmp / "denoised"
        if model is not None:
            est = denoise_estimates(inputs.photons, camera, model, settings, work, device, progress, log)
        else:  # exactly one of model / denoised is given (checked above)
            den = cast("DenoisedInput", denoised)
            est = open_estimates(den, camera, inputs.shape, inputs.block, settings.localize_estimate)
        laps("denoise")
        log("scoring the denoised estimates")
        images = score_images(inputs, est, camera, settings, tmp / "_work", progress)
        laps("image_metrics")
        tables = localize_modes(inputs, est, camera, settings.localization, progress, log)
        laps("localize")
        scores = score_localizations(tables, inputs, camera, settings)
        laps("localization_metrics")
        report = build_report(inputs, est, images, scores, camera, settings)
        log("drawing figures")
        figures = _write_figures(report, tmp, inputs, est, scores, camera, settings.render_pixel_nm)
        write_tables(tables, tmp, camera, inputs.movie_path, est.denoiser)
        laps("figures")
        report = replace(report, figures=figures, timing_s=laps.seconds, report_dir=final)
        (tmp / "report.json").write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
        (tmp / "report.md").write_text(R.report_markdown(report))
        shutil.rmtree(tmp / "_work", ignore_errors=True)
        if not keep_denoised or model is None:
            shutil.rmtree(work, ignore_errors=True)
    return report


# ------------------------------------------------------------------------------------------ stages


def check_report_folder(final: Path, overwrite: bool) -> None:
    """Raise :class:`SmlmdnError` unless ``final`` may become the report folder.

    It may be new, or (with ``overwrite``) an earlier report; never a file or a folder holding
    anything else.
    """
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


def open_inputs(
    movie: MovieInput,
    camera: Camera,
    units: str,
    clean: MovieInput | None,
    clean_units: str,
    truth: str | Path | pd.DataFrame | None,
    truth_df: pd.DataFrame | None,
) -> CompareInputs:
    """Open the movie and the noise-free reference and check the ground truth against them.

    The movie is read in ``units``, the reference in ``clean_units``, and the ground truth
    (``truth_df``, read from ``truth``) is checked against them, lazily in frame blocks of at most
    :data:`MAX_BLOCK_FRAMES`. Raises :class:`SmlmdnError` for a wrong shape or truth outside the movie.
    """
    probe, _ = _as_movie(movie, None, "movie")
    block = max(1, min(MAX_BLOCK_FRAMES, frames_per_block(probe.shape[1:], 4), probe.shape[0]))
    raw, movie_path = _as_movie(movie, block, "movie")
    photons = movie_to_photons(raw, camera, units=units)
    shape = tuple(photons.shape)
    clean_arr, clean_path = None, None
    if clean is not None:
        clean_arr, clean_path = _as_movie(clean, block, "noise-free movie")
        check_same_shape(
            clean_arr.shape, shape, "noise-free (--clean) movie", fix="give the clean.tif simulated with this movie"
        )
        clean_arr = clean_to_detected(clean_arr.astype(np.float32), clean_units, camera)
    if truth_df is not None:
        t = shape[0]
        outside = (truth_df["frame"] < 0) | (truth_df["frame"] >= t)
        if outside.all() and len(truth_df):
            raise SmlmdnError(
                f"no ground-truth frame lies in the movie's 0..{t - 1}",
                "give the truth.csv of this movie (frames are 0-based)",
            )
    truth_label = str(truth) if isinstance(truth, (str, Path)) else ("(table)" if truth_df is not None else None)
    return CompareInputs(raw, photons, movie_path, units, clean_arr, clean_path, truth_df, truth_label)


def denoise_estimates(
    photons: da.Array,
    camera: Camera,
    model: ModelInput,
    settings: CompareSettings,
    work: Path,
    device: str,
    progress: bool,
    log: Callable[[str], None],
) -> Estimates:
    """Compute every estimate of ``settings`` (and the localization one) with ``model``.

    One network pass per frame block writes them into ``work/<estimate>.zarr``; returns them
    reopened lazily.
    """
    from .denoise import denoise_lazy, load_model
    from .denoise.model_file import DenoiseModel

    given = model if isinstance(model, DenoiseModel) else None
    mobj = given if given is not None else load_model(cast("str | Path", model), camera)
    if given is not None:
        mobj.check_camera(camera)
    names = tuple(dict.fromkeys([*settings.estimates, settings.localize_estimate]))
    lazy = denoise_lazy(
        photons, given if given is not None else cast("str | Path", model), estimates=names, device=device
    )
    denoiser = {
        "model": str(model) if given is None else str(mobj.path or "(in memory)"),
        "model_hash": mobj.hash(),
        "training": {k: mobj.training.get(k) for k in ("steps", "seconds", "best_val_loss", "stopped", "device")},
    }
    log(f"denoising {photons.shape[0]} frames ({', '.join(names)}) with model {mobj.hash()}")
    arrays = materialize(lazy, work, {"units": "photons", "model_hash": mobj.hash()}, progress, "denoising")
    return Estimates(arrays, settings.localize_estimate, denoiser)


def open_estimates(
    denoised: DenoisedInput, camera: Camera, shape: tuple[int, ...], block: int, localize_estimate: str
) -> Estimates:
    """Open denoised movies given as one path/array, a list of them or a dict name -> path/array.

    Movies in a list are named by their ``estimate`` attribute. ``localize_estimate`` falls back to
    the first one given when it is not among them. Raises :class:`SmlmdnError` for one estimate given
    twice or a wrong shape.
    """
    if isinstance(denoised, Mapping):
        items: list[tuple[str | None, MovieInput]] = list(denoised.items())
    elif isinstance(denoised, (list, tuple)):
        items = [(None, d) for d in denoised]
    else:
        items = [(None, cast(MovieInput, denoised))]
    arrays: dict[str, da.Array] = {}
    sources: dict[str, str] = {}
    for given_name, data in items:
        name, arr = open_denoised(data, camera, shape, block)
        name = given_name or name
        if name in arrays:
            raise SmlmdnError(
                f"two denoised movies are both the {name!r} estimate ({sources[name]} and {data})",
                "give each estimate once (e.g. one mean and one map file from `smlmdn denoise -e mean -e map`)",
            )
        arrays[name] = arr
        sources[name] = str(data) if isinstance(data, (str, Path)) else "(array)"
    if localize_estimate not in arrays:
        localize_estimate = next(iter(arrays))
    return Estimates(arrays, localize_estimate, {"denoised": sources})


def score_images(
    inputs: CompareInputs, est: Estimates, camera: Camera, settings: CompareSettings, work: Path, progress: bool
) -> ImageScores:
    """Answer question 1: score the raw photons and every estimate.

    PSNR / SSIM against the clean reference (when given) and background SNR of the raw photons and
    every estimate, in signal/background regions made once from the raw movie and the truth (stored
    in ``work``).
    """
    truth = inputs.truth
    mask_source = (
        "the ground truth (true emitter positions)"
        if truth is not None
        else "peaks found in the raw movie (difference of Gaussians, 5 robust sigmas)"
    )
    sig, bg = R.make_masks(inputs.photons, truth, camera.pixel_size, settings.localization.psf_sigma_nm)
    labels = materialize(
        {"regions": sig.astype(np.uint8) + 2 * bg.astype(np.uint8)}, work, {}, progress, "signal/background regions"
    )["regions"]
    masks = (labels == 1, labels == 2)
    fractions = da.compute(masks[0].mean(), masks[1].mean())
    data_range = data_range_of(inputs.clean) if inputs.clean is not None else None
    images = {"raw": inputs.photons, **est.arrays}
    metrics = {}
    with track(total=len(images), description="image metrics", enabled=progress) as advance:
        for name, img in images.items():
            metrics[name] = R.denoise_metrics(img, inputs.clean, masks, data_range=data_range)
            advance(1)
    return ImageScores(metrics, mask_source, fractions[0], fractions[1], data_range)


def localize_modes(
    inputs: CompareInputs,
    est: Estimates,
    camera: Camera,
    settings: LocalizeSettings,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, pd.DataFrame]:
    """Make question 2's tables: the movie localized in every mode of :data:`~smlmdn.localize.MODES`.

    Every mode uses the same ``settings``, detecting on the ``localize_estimate`` where the mode uses
    a denoised movie.
    """
    det = est.arrays[est.localize_estimate]
    clipped = saturation_photons(inputs.raw.dtype, camera, inputs.units)
    tables: dict[str, pd.DataFrame] = {}
    for mode in MODES.values():
        log(f"localizing ({mode.name} mode)")
        tables[mode.name] = localize_movie(
            inputs.photons,
            camera,
            settings,
            mode=mode,
            detect_on=det if mode.needs_denoised else None,
            saturation_photons=clipped,
            progress=progress,
        )
    return tables


#: Counts of a localization table's ``attrs`` repeated in its report rows.
TABLE_COUNTS = (
    "n_candidates",
    "n_rejected",
    "n_dropped_nonconverged",
    "n_dropped_outside",
    "n_saturated",
    "n_tracks",
    "n_extended",
)


def score_localizations(
    tables: dict[str, pd.DataFrame], inputs: CompareInputs, camera: Camera, settings: CompareSettings
) -> LocalizationScores:
    """Score every mode's table with each localization's own position and with its blink's pooled position.

    The pooled rows are named ``"<mode> linked"`` and include the frames the known-position test added
    next to each blink (:mod:`smlmdn.localize.extend`); the per-frame rows are the own-frame fits. Scores: matching against the truth
    (``tolerance_nm``), count, CRLB, NeNA (not for linked rows: a blink's members share one
    position) and FRC.
    """
    metrics: dict[str, dict[str, Any]] = {}
    curves = {}
    for mode, locs in tables.items():
        # per frame: what each frame alone supports; linked: blink positions, frames added by the extension included
        for name, table in ((mode, own_frames(locs)), (f"{mode} linked", linked_positions(locs))):
            metrics[name], curves[name] = R.localize_metrics(
                table,
                inputs.truth,
                inputs.shape,
                camera.pixel_size,
                tolerance_nm=settings.tolerance_nm,
                render_pixel_nm=settings.frc_render_pixel_nm,
            )
            metrics[name].update({k: locs.attrs.get(k) for k in TABLE_COUNTS})
        metrics[f"{mode} linked"]["nena_nm"] = None  # a blink's members share one pooled position: NeNA means nothing
    return LocalizationScores(tables, metrics, curves)


def build_report(
    inputs: CompareInputs,
    est: Estimates,
    images: ImageScores,
    scores: LocalizationScores,
    camera: Camera,
    settings: CompareSettings,
) -> CompareReport:
    """Build the report (without ``figures`` and ``timing_s``) from the stages' results."""
    loc = settings.localization
    has_clean = inputs.clean is not None
    denoiser = est.denoiser
    return CompareReport(
        denoise={name: ImageScore(**m) for name, m in images.metrics.items()},
        localize={name: LocalizationScore(**m) for name, m in scores.metrics.items()},
        answers=Answers(
            denoising=R.answer_denoising(images.metrics),
            localization=R.answer_localization(scores.metrics, inputs.truth is not None),
        ),
        inputs=ReportInputs(
            movie=inputs.movie_path or "(array)",
            shape=inputs.shape,
            units=inputs.units,
            truth=inputs.truth_label,
            clean=inputs.clean_path or ("(array)" if has_clean else None),
            clean_units=settings.clean_units if has_clean else None,
            denoiser=denoiser.get("model", "a denoised movie"),
            model=denoiser.get("model"),
            model_hash=denoiser.get("model_hash"),
            training=denoiser.get("training"),
            denoised=denoiser.get("denoised"),
        ),
        settings=ReportSettings(
            estimates=tuple(est.arrays),
            localize_estimate=est.localize_estimate,
            tolerance_nm=settings.tolerance_nm,
            box=loc.box,
            psf_sigma_nm=loc.psf_sigma_nm,
            fit_sigma=loc.fit_sigma,
            threshold=loc.threshold,
            acceptance=scores.tables["raw"].attrs.get("acceptance"),
            fdr=loc.fdr,
            pool=loc.pool,
            link_distance_nm=loc.link_distance_nm,
            render_pixel_nm=settings.render_pixel_nm,
            frc_render_pixel_nm=settings.frc_render_pixel_nm,
            frc_split="blocks",
            data_range=R.json_number(images.data_range),
            psnr_peak=PSNR_PEAK if has_clean else None,
        ),
        masks=MaskRegions(
            source=images.mask_source,
            signal_fraction=R.json_number(images.signal_fraction),
            background_fraction=R.json_number(images.background_fraction),
        ),
        camera=camera.to_dict(),
        provenance=provenance(),
    )


def write_tables(
    tables: dict[str, pd.DataFrame], folder: Path, camera: Camera, movie_path: str | None, denoiser: dict[str, Any]
) -> None:
    """Write each mode's table as ``folder/locs_<mode>.csv`` with the mode, movie and denoiser as metadata."""
    for mode, locs in tables.items():
        write_localizations(
            locs,
            folder / f"locs_{mode}.csv",
            camera,
            overwrite=True,
            metadata={
                "mode": mode,
                "movie": movie_path or "(array)",
                **{k: v for k, v in denoiser.items() if k != "training"},
            },
        )


def _write_figures(
    report: CompareReport,
    folder: Path,
    inputs: CompareInputs,
    estimates: Estimates,
    scores: LocalizationScores,
    camera: Camera,
    render_pixel_nm: float,
) -> dict[str, str]:
    """Draw the report's figures into ``folder``; returns {figure key: file name}."""
    photons, est, clean, truth = inputs.photons, estimates.arrays, inputs.clean, inputs.truth
    tables, curves = scores.tables, scores.curves
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
        "frc": R.figure_frc(curves, {m: report.localize[m].frc_nm for m in curves}, folder / "frc.png").name,
    }
    for mode, image in renders.items():
        figures[f"render_{mode}"] = save_render_png(image, folder / f"render_{mode}.png").name
    return figures
