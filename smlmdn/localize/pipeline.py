"""Propose, accept, fit and link molecules in a movie, streaming one frame block at a time.

Per block: candidates are proposed on the detection movie (:mod:`smlmdn.localize.detect`), tested on
the raw photon counts (:mod:`smlmdn.localize.glrt`) and fitted (:mod:`smlmdn.localize.fit`); over the
whole movie, Benjamini-Hochberg keeps the candidates whose test rejects "background only" at the
false-discovery rate asked for, and :mod:`smlmdn.localize.link` joins the frames of each blink.
Until that decision each block's fitted candidates wait in a :class:`~smlmdn.localize.store.BlockStore`
(memory, then temporary files) with only the p-values the decision has not settled yet in memory
(:class:`~smlmdn.localize.glrt.StepUp`); the accepted rows are then linked,
extended and assembled block by block, so memory does not hold the table unless it is asked for whole.

Modes (the table :data:`smlmdn.localize.settings.MODES`; chosen through ``detect_on`` and ``fit_on`` of
:func:`localize`, or given as a :class:`~smlmdn.localize.settings.LocalizeMode` to :func:`localize_movie`):

- raw: ``detect_on=None`` -- propose on and fit the raw photons;
- hybrid: ``detect_on=denoised, fit_on="raw"`` -- propose on the denoised movie, fit the raw photons
  with the Poisson likelihood (the statistically principled combination);
- denoised: ``detect_on=denoised, fit_on="detect"`` -- propose on and fit the denoised movie. The
  denoised pixels are not Poisson, so the fit's likelihood, CRLB and llr are model numbers, not
  calibrated uncertainties; this mode is kept to measure it against the other two.

The acceptance test is the same in every mode, so a denoiser can change which candidates are
proposed and how they are fitted, but never lets through a candidate the raw photons do not support.

Candidates near the frame edge keep their full ``box x box`` fit window, shifted to lie inside
the frame (so the candidate is off-centre in its box); a fit whose centre ends outside its box is
dropped and counted (``n_dropped_outside``), as are fits that did not converge
(``n_dropped_nonconverged``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd

from ..camera import Camera, check_finite, saturated_boxes
from ..device import resolve_device
from ..errors import SmlmdnError
from ..parallel import compute_blocks, delayed_array, frame_blocks, in_frame_blocks, tune_worker_allocator
from ..progress import track
from ..shapes import check_same_shape, check_tyx
from .detect import detect
from .extend import MIN_TRACK, accepted_extensions, extension_rows, known_position_test, with_positions
from .glrt import StepUp
from .link import DEFAULT_MAX_DISTANCE_NM, LINK_COLUMNS, Linker, Tracks
from .passes import MEMBER_ALPHA, TESTS_PER_PIXEL, BlockPasses, Spots
from .settings import DEFAULT_FDR, DEFAULT_POOL, RAW, LocalizeMode, LocalizeSettings, mode_for
from .store import BlockStore, DiskArrays

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
    "p_value",
    "p_frame",
    "saturated",
    *LINK_COLUMNS,
    "extended",
)

#: Column dtypes other than float64.
COLUMN_DTYPES = {
    "frame": np.int64,
    "iterations": np.int32,
    "track": np.int64,
    "n_track": np.int64,
    "saturated": np.bool_,
    "extended": np.bool_,
}

#: Band-pass significance (robust noise standard deviations) above which local maxima are proposed
#: as candidates for the calibrated acceptance test; it only limits how many candidates are tested.
PROPOSAL_THRESHOLD = 3.0
#: Half-width of the acceptance test's window in PSF sigmas: the background is estimated from the
#: pixels around the spot, and more of them make the test more powerful. Measured (Jaccard at FDR
#: 0.05, 7 px -> 9 px (3 sigma) -> 4 sigma): EMCCD 300 photons on background 50: 46.3 -> 54.1 -> 57.5;
#: 200 photons: 49.0 -> 52.4 -> 52.6; sparse 300 photons: 64.9 -> 66.5 -> 67.0; high-SNR and dense
#: (0.8 /um^2) movies within 0.2.
TEST_BOX_SIGMAS = 4.0
#: Bytes of float32 photons per frame block: a block's detection and test make several float copies
#: of it, and a few blocks are in flight. Measured on 128 x 128 px x 2,000 frames, 2 threads: peak RSS
#: 1.15 GB with 1,024-frame (64 MB) blocks, 446 MB with 128 frames (8 MB), 392 MB with 64, same speed.
BLOCK_BYTES = 8 * 2**20


def block_frames(frame_shape: tuple[int, ...]) -> int:
    """Return the frames per localization block.

    As many float32 frames of ``frame_shape`` (Y, X) as fit in :data:`BLOCK_BYTES`, at least 1.
    Rechunk a raw movie to this *before* converting it to photons
    (``in_frame_blocks(raw, block_frames(raw.shape[1:]))``): dask then reads only each block's frames.
    """
    return max(1, BLOCK_BYTES // (4 * max(1, math.prod(int(n) for n in frame_shape))))


def empty_table() -> pd.DataFrame:
    """Return a localization table with no rows and the right columns and dtypes."""
    return pd.DataFrame({c: np.zeros(0, dtype=COLUMN_DTYPES.get(c, np.float64)) for c in LOC_COLUMNS})


def test_box(sigma_px: float, box: int, shape: tuple[int, int]) -> int:
    """Side (odd, px) of the acceptance test's window: ``2 ceil(TEST_BOX_SIGMAS sigma) + 1``, at least ``box``, inside ``shape``."""
    return int(min(max(box, 2 * math.ceil(TEST_BOX_SIGMAS * sigma_px) + 1), min(shape) - (1 - min(shape) % 2)))


def pooled_frames(raw: np.ndarray, halo_before: int, n_block: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum the raw frames ``t - pool .. t + pool`` for each of the block's frames -> ``(sums, n_frames)``.

    ``raw`` (T_halo, Y, X) photons holds the block's ``n_block`` frames after ``halo_before`` frames of
    halo (and up to ``pool`` after). Returns float32 sums (n_block, Y, X) and the number of frames in
    each sum (n_block,), fewer than ``2 pool + 1`` at the movie's ends.
    """
    sums = np.zeros((n_block, *raw.shape[1:]), dtype=np.float32)
    n_frames = np.zeros(n_block, dtype=np.int64)
    frame = np.arange(n_block) + halo_before
    for j in range(-pool, pool + 1):
        ok = (frame + j >= 0) & (frame + j < len(raw))
        sums[ok] += raw[frame[ok] + j]
        n_frames += ok
    return sums, n_frames


def localize_block(
    raw: np.ndarray,
    detect_frames: np.ndarray,
    *,
    detect_on_raw: bool,
    box: int,
    sigma_px: float,
    fit_sigma: bool,
    threshold: float,
    read_noise_photons: float,
    excess_noise: float,
    pixel_size_nm: float,
    frame_offset: int = 0,
    halo_before: int = 0,
    pool: int = 0,
    fit_detect_frames: bool = False,
    max_p: float | None = None,
    saturation_photons: float | None = None,
    fit_device: str | None = None,
    multi_emitter: bool = False,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Propose candidates in ``detect_frames``, test them on ``raw`` and fit them -> (table, counts).

    ``raw`` (T_halo, Y, X): raw detected photons of the block's ``T`` frames plus ``halo_before``
    frames before and up to ``pool`` after (for the pooled test, see :func:`smlmdn.localize.passes.acceptance_p_values`);
    ``read_noise_photons``/``excess_noise`` describe its camera noise. ``detect_frames`` (T, Y, X):
    the movie to propose candidates on (``detect_on_raw``: the block's own raw frames, or with ``pool``
    their sums over the neighbouring frames (:func:`pooled_frames`), filtered with the camera noise
    model; else a denoised movie). With ``fit_detect_frames`` the fit uses it too
    (the 'denoised' mode, plain Poisson model), else the raw photons. ``threshold``: band-pass
    significance of a candidate (see :func:`smlmdn.localize.detect.detect`). Every fitted candidate
    gets ``p_value`` and ``p_frame``; the movie-wide FDR decision is made by :func:`localize`, and
    candidates it can never accept (``p_value > max_p`` or ``p_frame >`` :data:`MEMBER_ALPHA`) are
    not fitted (counted as ``n_rejected``) when ``max_p`` is given. ``saturation_photons``: raw
    pixels at or above it were clipped by the camera; a localization whose fit box holds one gets
    ``saturated = True``.

    ``multi_emitter`` (raw-photon fits only): the multi-emitter residual pass of
    :mod:`smlmdn.localize.passes`, which finds molecules hidden next to brighter ones and refits
    crowded ones with their neighbours held fixed.
    ``fit_device``: None fits with the numba kernels on the CPU; a torch device (``"cuda"``,
    ``"cpu"``) with the torch port (:mod:`smlmdn.localize.fit_torch`, same model and results).
    """
    own = raw[halo_before : halo_before + len(detect_frames)]
    pooled = pooled_frames(raw, halo_before, len(own), pool) if pool else None
    if not detect_on_raw:
        cand = detect(detect_frames, sigma_px, box, threshold)
    else:  # on the pooled frames (with pool) a dim blink stands out of their noise
        cand = detect(
            own if pooled is None else pooled[0],
            sigma_px,
            box,
            threshold,
            unit_noise=True,
            excess_noise=excess_noise,
            read_noise_photons=read_noise_photons * np.sqrt(2 * pool + 1),
        )
    counts = {
        "n_candidates": len(cand),
        "n_rejected": 0,
        "n_merged": 0,
        "n_dropped_nonconverged": 0,
        "n_dropped_outside": 0,
    }
    passes = BlockPasses(
        own=own,
        fit_frames=detect_frames if fit_detect_frames else own,
        pooled=pooled,
        box=box,
        tb=test_box(sigma_px, box, own.shape[1:]),
        sigma_px=sigma_px,
        threshold=threshold,
        read_noise_photons=read_noise_photons,
        excess_noise=excess_noise,
        fit_on_raw=not fit_detect_frames,
        fit_sigma=fit_sigma,
        fit_device=fit_device,
        max_p=max_p,
        counts=counts,
    )
    spots = passes.test_and_fit(cand)
    if multi_emitter and not fit_detect_frames and len(spots):
        spots = passes.multi_emitter(spots)
    return _table(spots, own, frame_offset, pixel_size_nm, box, saturation_photons), counts


def _table(
    sp: Spots, own: np.ndarray, frame_offset: int, pixel_size_nm: float, box: int, saturation_photons: float | None
) -> pd.DataFrame:
    """Return the localization table (:data:`LOC_COLUMNS` without the linking columns) of the fitted spots."""
    if len(sp) == 0:
        return empty_table()
    th, cr, res, cand = sp.res.theta, sp.res.crlb, sp.res, sp.cand
    return pd.DataFrame(
        {
            "frame": (cand.frame + frame_offset).astype(np.int64),
            "x_nm": (th[:, 0] + sp.ox) * pixel_size_nm,
            "y_nm": (th[:, 1] + sp.oy) * pixel_size_nm,
            "photons": th[:, 2],
            "bg": th[:, 3],
            "sigma_nm": th[:, 4] * pixel_size_nm,
            "crlb_x_nm": cr[:, 0] * pixel_size_nm,
            "crlb_y_nm": cr[:, 1] * pixel_size_nm,
            "crlb_photons": cr[:, 2],
            "crlb_bg": cr[:, 3],
            "loglik": res.loglik,
            "llr": res.llr,
            "iterations": res.iterations.astype(np.int32),
            "p_value": sp.p_value,
            "p_frame": sp.p_frame,
            "saturated": saturated_boxes(own >= saturation_photons, cand.frame, cand.row, cand.col, box)
            if saturation_photons is not None
            else np.zeros(len(cand), dtype=bool),
        }
    )


def _fit_device(device: str) -> str | None:
    """``cpu|cuda|auto`` (:func:`smlmdn.device.resolve_device`) -> None (numba on the CPU) or ``"cuda"`` (torch fitter)."""
    return "cuda" if resolve_device(device or "cpu") == "cuda" else None


def _localize_task(
    raw: np.ndarray, det: np.ndarray | None, frame_offset: int, halo_before: int, n_block: int, settings: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Localize one block of ``n_block`` frames; runs on a worker.

    Checks the pixels, proposes (on ``det`` if given, else the raw block), tests and fits. ``raw``
    holds the block plus ``halo_before`` frames before it and the pooling halo after it.
    """
    tune_worker_allocator()
    where = f"frames {frame_offset - halo_before}-{frame_offset - halo_before + len(raw) - 1}"
    raw = check_finite(np.asarray(raw, dtype=np.float32), where)
    on_raw = det is None
    det = (
        raw[halo_before : halo_before + n_block]
        if on_raw
        else check_finite(np.asarray(det, dtype=np.float32), f"(denoised) {where}")
    )
    return localize_block(
        raw, det, detect_on_raw=on_raw, frame_offset=frame_offset, halo_before=halo_before, **settings
    )


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
    fdr: float = DEFAULT_FDR,
    pool: int = DEFAULT_POOL,
    link_distance_nm: float = DEFAULT_MAX_DISTANCE_NM,
    saturation_photons: float | None = None,
    keep_saturated: bool = False,
    multi_emitter: bool = True,
    extend: bool = True,
    progress: bool = True,
    device: str = "cpu",
) -> pd.DataFrame:
    """Localize molecules in ``photons`` (T, Y, X) detected photons (raw), block by block.

    Candidates are proposed as local maxima of a band-passed frame, tested on the raw photon counts
    by a generalized likelihood-ratio test (:mod:`smlmdn.localize.glrt`, Smith et al. 2015) and
    accepted by Benjamini-Hochberg control of the false-discovery rate ``fdr`` over every pixel of
    the movie; the accepted ones are fitted. ``pool`` > 0 also tests the counts summed over the
    frames ``t - pool .. t + pool`` (a blink's photons pooled); a localization then still needs its
    own frame's p-value below :data:`MEMBER_ALPHA`, so a blink does not spill into frames where the
    molecule is off. ``threshold`` (expert override): accept every candidate above this band-pass
    significance instead (robust noise standard deviations; no FDR control). The accepted
    localizations are linked across consecutive frames (:func:`smlmdn.localize.link.link`, at most
    ``link_distance_nm`` apart): each keeps its own fit and gets its blink's pooled position.
    ``extend`` (default, calibrated test only): the frames next to each blink, and frames inside it
    without a localization, are tested at the blink's known position (:mod:`smlmdn.localize.extend`,
    Benjamini-Hochberg at ``fdr`` over those tests); accepted frames are added as rows with
    ``extended`` set, the blink's pooled position and ``n_extended`` counts them.
    ``saturation_photons`` (see :func:`smlmdn.camera.saturation_photons`): localizations whose fit
    box holds a clipped pixel are flagged (``saturated``) and dropped unless ``keep_saturated``
    (their photons, background and precision are wrong); ``n_saturated`` counts them.
    ``multi_emitter`` (default): also find molecules next to brighter ones by a residual pass and
    refit crowded ones with their neighbours held fixed (:mod:`smlmdn.localize.passes`); False is
    the faster single-emitter pipeline (measured side by side in ``benchmarks/localize_grid.py``).

    ``detect_on``: an optional movie of the same shape (e.g. the denoised photons) to propose
    candidates on; ``fit_on``: ``"raw"`` fits ``photons`` (hybrid when ``detect_on`` is given),
    ``"detect"`` fits the detection movie (the 'denoised' mode). The acceptance test always uses the
    raw photons, so a candidate the denoiser invented without photons behind it is rejected.
    ``box``: odd fit-window side in pixels; ``psf_sigma_nm``: PSF standard deviation (fixed, or the
    start value with ``fit_sigma``). ``device``: ``cpu`` (numba kernels), ``cuda`` (the torch
    fitter on the GPU) or ``auto`` (CUDA when torch sees one, else the CPU).

    Returns a DataFrame with :data:`LOC_COLUMNS` (nm, photoelectrons, 0-based frames) and ``attrs``
    ``n_candidates``, ``n_rejected`` (failed the acceptance test), ``n_dropped_nonconverged``,
    ``n_dropped_outside``, ``n_tracks``, ``n_extended``, ``movie_shape``, ``pixel_size_nm`` and the settings used. Memory: a
    few frame blocks (of each input) of at most :data:`BLOCK_BYTES` at a time (larger chunks of ``photons``
    are split) and 8 bytes per p-value the FDR decisions have not settled yet, plus the returned table;
    each block's candidates and extension tests wait in a :class:`~smlmdn.localize.store.BlockStore`
    (memory up to its budget, then temporary files) and the tracks' arrays in temporary files
    (:class:`~smlmdn.localize.store.DiskArrays`, ~100 bytes of disk per track). To write a table
    without holding it, see :func:`localize_movie_blocks`.
    Raises :class:`SmlmdnError` for settings that cannot work (see
    :class:`~smlmdn.localize.settings.LocalizeSettings`).
    """
    settings = LocalizeSettings(
        box=box,
        psf_sigma_nm=psf_sigma_nm,
        fit_sigma=fit_sigma,
        threshold=threshold,
        fdr=fdr,
        pool=pool,
        link_distance_nm=link_distance_nm,
        multi_emitter=multi_emitter,
        keep_saturated=keep_saturated,
        extend=extend,
    )
    with _localize_movie(
        photons,
        camera,
        settings,
        mode_for(detect_on is not None, fit_on),
        detect_on,
        saturation_photons,
        progress,
        device,
    ) as locs:
        return locs.table()


def localize_movie(
    photons: da.Array,
    camera: Camera,
    settings: LocalizeSettings,
    *,
    mode: LocalizeMode = RAW,
    detect_on: da.Array | None = None,
    saturation_photons: float | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> pd.DataFrame:
    """Run :func:`localize` with its choices already validated.

    The choices are ``settings`` and the ``mode`` (what is proposed on and fitted, from
    :data:`smlmdn.localize.settings.MODES`).

    ``photons`` (T, Y, X) raw detected photons; ``detect_on`` (T, Y, X) the denoised movie in
    photons, given exactly when ``mode.needs_denoised``. Returns the table :func:`localize` returns;
    raises :class:`SmlmdnError` for a movie that is not (T, Y, X), a ``detect_on`` of another shape
    or missing/extra for the mode, and settings that cannot work on these frames
    (:meth:`LocalizeSettings.check_frame`). For a table too long to hold, see :func:`localize_movie_blocks`.
    """
    with _localize_movie(photons, camera, settings, mode, detect_on, saturation_photons, progress, device) as locs:
        return locs.table()


def localize_movie_blocks(
    photons: da.Array,
    camera: Camera,
    settings: LocalizeSettings,
    *,
    mode: LocalizeMode = RAW,
    detect_on: da.Array | None = None,
    saturation_photons: float | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> Localizations:
    """Run :func:`localize_movie` and return its table as :class:`Localizations`, to be read block by block.

    Same arguments, work and errors as :func:`localize_movie`; the rows are assembled one frame block
    at a time when :meth:`Localizations.blocks` is read (e.g. by
    :func:`~smlmdn.localize.formats.write_localization_blocks`), so a table of any length is written
    without being held in memory. Use the result as a context manager: it holds the run's temporary files.
    """
    return _localize_movie(photons, camera, settings, mode, detect_on, saturation_photons, progress, device)


class Localizations:
    """A movie's finished localizations, read one frame block at a time or as one table.

    ``attrs``: the table's ``attrs`` (run counts and settings, as :func:`localize` sets them); ``n_rows``:
    its rows. Made by :func:`localize_movie_blocks`; holds the run's temporary files (the rows, the
    tracks and the extension's rows: :class:`~smlmdn.localize.store.BlockStore`,
    :class:`~smlmdn.localize.store.DiskArrays`), removed on leaving a ``with`` block (or by :meth:`close`).
    """

    def __init__(
        self,
        attrs: dict[str, Any],
        n_rows: int,
        blocks: list[tuple[int, int, int]],
        store: BlockStore,
        linked: _Linked,
        extensions: BlockStore | None,
    ) -> None:
        self.attrs, self.n_rows = attrs, n_rows
        self._parts = (blocks, store, linked, extensions)

    def blocks(self) -> Iterator[pd.DataFrame]:
        """Yield the table's rows block by block, in frame order (:data:`LOC_COLUMNS`; each block's ``attrs`` empty)."""
        return _final_blocks(*self._parts)

    def table(self) -> pd.DataFrame:
        """Return the whole table (what :func:`localize` returns), with ``attrs``."""
        stack = ColumnStack(self.n_rows, LOC_COLUMNS)
        for block in self.blocks():
            stack.add(block)
        locs = stack.table()
        locs.attrs.update(self.attrs)
        return locs

    def close(self) -> None:
        """Remove the run's temporary files."""
        _close(*self._parts[1:])

    def __enter__(self) -> Localizations:
        """Return the localizations."""
        return self

    def __exit__(self, *error: object) -> None:
        """Close (:meth:`close`)."""
        self.close()


def _localize_movie(
    photons: da.Array,
    camera: Camera,
    settings: LocalizeSettings,
    mode: LocalizeMode,
    detect_on: da.Array | None,
    saturation_photons: float | None,
    progress: bool,
    device: str,
) -> Localizations:
    """Run the body of :func:`localize` and :func:`localize_movie`: check, localize the blocks, accept, link, describe."""
    photons, detect_on = _check_inputs(photons, mode, detect_on)
    t, ny, nx = photons.shape
    pixel_size = float(camera.pixel_size)
    settings.check_frame((ny, nx), pixel_size)
    thr = PROPOSAL_THRESHOLD if settings.threshold is None else float(settings.threshold)
    n_passes = TESTS_PER_PIXEL if settings.multi_emitter and not mode.fit_on_denoised else 1
    n_tests = n_passes * t * ny * nx
    block_settings = dict(
        fit_device=_fit_device(device),
        box=settings.box,
        sigma_px=settings.sigma_px(pixel_size),
        fit_sigma=settings.fit_sigma,
        threshold=thr,
        read_noise_photons=camera.read_noise_photons,
        excess_noise=camera.excess_noise,
        pixel_size_nm=pixel_size,
        pool=settings.pool,
        fit_detect_frames=mode.fit_on_denoised,
        max_p=settings.fdr if settings.calibrated else None,
        saturation_photons=saturation_photons,
        multi_emitter=settings.multi_emitter,
    )
    store = BlockStore()
    step_up = StepUp(n_tests, settings.fdr) if settings.calibrated else None
    extend = settings.calibrated and settings.extend
    linked: _Linked | None = None
    extensions: BlockStore | None = None
    try:
        blocks, totals = _localize_blocks(photons, detect_on, settings.pool, block_settings, store, step_up, progress)
        accept = _Acceptance(None if step_up is None else step_up.threshold, settings.keep_saturated)
        extensions = BlockStore() if extend else None
        linked = _link_blocks(store, accept, settings.link_distance_nm, blocks, extensions)
        totals["n_rejected"] += accept.n_rejected
        if extensions is not None:
            _extensions(photons, blocks, store, linked, extensions, camera, settings, saturation_photons, progress)
    except BaseException:
        _close(store, linked, extensions)
        raise
    n_extended = 0 if extensions is None else extensions.n_rows
    acceptance = (
        f"GLRT p-value, Benjamini-Hochberg FDR {settings.fdr:g} over {n_tests} tests ({n_passes} per pixel)"
        if settings.calibrated
        else f"band-pass threshold {thr:g}"
    )
    attrs: dict[str, Any] = {
        **totals,
        "mode": mode.name,
        "movie_shape": [int(t), int(ny), int(nx)],
        "pixel_size_nm": pixel_size,
        **_settings_attrs(settings, thr, acceptance),
        "n_tracks": linked.n_tracks,
        "n_extended": n_extended,
        "n_saturated": accept.n_saturated,
        "saturated_kept": bool(settings.keep_saturated),
    }
    locs = Localizations(attrs, accept.n_kept + n_extended, blocks, store, linked, extensions)
    if locs.n_rows == 0:
        warnings.warn(  # stacklevel 3: the caller of localize() / localize_movie() / localize_movie_blocks()
            f"no molecules found in {t} frames ({totals['n_candidates']} candidates, {attrs['n_rejected']} rejected by the "
            f"acceptance test, {attrs['acceptance']}): check the camera numbers and --psf-sigma",
            stacklevel=3,
        )
    return locs


def _close(*parts: BlockStore | _Linked | None) -> None:
    """Close a run's stores (remove their temporary files); None: a part the run did not make."""
    for part in parts:
        if part is not None:
            part.close()


@dataclass(frozen=True)
class _Linked:
    """A movie's tracks after :func:`_link_blocks`: per track (by id) in temporary files, mapped block by block.

    ``arrays``: :class:`~smlmdn.localize.store.DiskArrays` with the :class:`~smlmdn.localize.link.Tracks`
    fields (``n``, ``x_nm``, ``y_nm``, ``crlb_nm``), ``sigma_nm`` (the PSF width of each track's first
    row in table order) and ``n_extended`` (frames the extension added); ``n_tracks`` of its rows are used.
    """

    arrays: DiskArrays
    n_tracks: int

    @contextmanager
    def mapped(self) -> Iterator[tuple[Tracks, np.ndarray, np.ndarray]]:
        """Yield the tracks, ``sigma_nm`` and ``n_extended`` (n_tracks,), mapped until leaving (index them, keep no views)."""
        k = self.n_tracks
        with self.arrays.mapped() as a:
            yield (
                Tracks(a["n"][:k], a["x_nm"][:k], a["y_nm"][:k], a["crlb_nm"][:k]),
                a["sigma_nm"][:k],
                a["n_extended"][:k],
            )

    def close(self) -> None:
        """Remove the files."""
        self.arrays.close()


class _Acceptance:
    """The movie-wide decision on each block's candidates, counting what it rejects and keeps.

    ``threshold``: the Benjamini-Hochberg threshold of the ``p_value`` column (:class:`~smlmdn.localize.glrt.StepUp`;
    None: every candidate passes the test, as with the band-pass threshold); a candidate is kept when its
    p-value is at most the threshold and its own frame's ``p_frame`` at most :data:`MEMBER_ALPHA`, and,
    unless ``keep_saturated``, its box holds no clipped pixel.
    """

    def __init__(self, threshold: float | None, keep_saturated: bool) -> None:
        self.threshold, self.keep_saturated = threshold, keep_saturated
        self.n_rejected = self.n_saturated = self.n_kept = 0

    def __call__(self, tab: pd.DataFrame) -> np.ndarray:
        """Return which rows of one block's candidate table ``tab`` are kept (bool (n,)), counting them."""
        keep = np.ones(len(tab), dtype=bool)
        if self.threshold is not None:
            keep = (tab["p_value"].to_numpy() <= self.threshold) & (tab["p_frame"].to_numpy() <= MEMBER_ALPHA)
            self.n_rejected += int(np.sum(~keep))
        saturated = tab["saturated"].to_numpy(bool)
        self.n_saturated += int(np.sum(saturated & keep))
        if not self.keep_saturated:
            keep &= ~saturated
        self.n_kept += int(np.sum(keep))
        return keep


def _link_blocks(
    store: BlockStore,
    accept: _Acceptance,
    link_distance_nm: float,
    blocks: Sequence[tuple[int, int, int]],
    pairs: BlockStore | None,
) -> _Linked:
    """Replace each block's candidates in ``store`` by the rows ``accept`` keeps, with ``track``.

    Links block by block in frame order (:class:`~smlmdn.localize.link.Linker`, the tracks of one
    :func:`~smlmdn.localize.link.link` over the whole table), the per-track arrays in temporary files:
    memory flat in the number of tracks. With ``pairs``, appends to it per block the (track, frame) pairs
    the extension tests in that block's frames (:func:`~smlmdn.localize.extend.track_candidates`: columns
    ``track``, ``frame``, sorted by frame, then track), as soon as linking can name no more of them.
    """
    linker = Linker(max_distance_nm=link_distance_nm, capacity=store.n_rows)
    arrays = DiskArrays(store.n_rows, _LINKED_FIELDS)
    starts = np.array([b0 for _, b0, _ in blocks] + [blocks[-1][2] if blocks else 0])
    waiting: list[tuple[np.ndarray, np.ndarray]] = []  # pairs named but not yet in a complete block
    try:
        for i, (_, _, b1) in enumerate(blocks):
            tab = store[i]
            tab = tab[accept(tab)].reset_index(drop=True)
            n_before = linker.n_tracks
            track = linker.add(tab)
            new, at = np.unique(track, return_index=True)  # each track's first row in table order
            with arrays.mapped("sigma_nm") as a:
                a["sigma_nm"][n_before : linker.n_tracks] = tab["sigma_nm"].to_numpy()[at[new >= n_before]]
            store[i] = tab.assign(track=track)
            if b1 < starts[-1]:
                linker.advance(b1)
            else:
                linker.finish(b1)
            named = linker.pairs()
            if pairs is not None:
                waiting.append(named)
                # pairs named later lie at frames from b1 - 1 - max_gap on: the blocks ending by then are complete
                done = (
                    len(blocks)
                    if b1 == starts[-1]
                    else int(np.searchsorted(starts[1:], b1 - 1 - linker.max_gap, "right"))
                )
                waiting = _complete_pairs(waiting, starts, len(pairs), done, pairs)
        linker.tracks_to(arrays)
    except BaseException:
        arrays.close()
        raise
    finally:
        linker.close()
    return _Linked(arrays, linker.n_tracks)


#: :class:`_Linked`'s per-track arrays.
_LINKED_FIELDS = {
    "n": np.int64,
    "x_nm": np.float64,
    "y_nm": np.float64,
    "crlb_nm": np.float64,
    "sigma_nm": np.float64,
    "n_extended": np.int64,
}


def _complete_pairs(
    waiting: list[tuple[np.ndarray, np.ndarray]], starts: np.ndarray, first: int, stop: int, pairs: BlockStore
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Append the pairs of blocks ``first .. stop - 1`` (frames ``starts[b] ..``) to ``pairs``, sorted; return the rest."""
    if stop <= first:
        return waiting
    track, frame = (np.concatenate(c) for c in zip(*waiting, strict=True))
    block = np.searchsorted(starts, frame, "right") - 1
    order = np.lexsort((track, frame))  # by frame, then track
    track, frame, block = track[order], frame[order], block[order]
    assert block.min(initial=first) >= first, "a pair named after its block was complete"
    cut = np.searchsorted(block, np.arange(first, stop + 1))
    for lo, hi in itertools.pairwise(cut):
        pairs.append(pd.DataFrame({"track": track[lo:hi], "frame": frame[lo:hi]}))
    return [(track[cut[-1] :], frame[cut[-1] :])]


def _extensions(
    photons: da.Array,
    blocks: list[tuple[int, int, int]],
    store: BlockStore,
    linked: _Linked,
    pairs: BlockStore,
    camera: Camera,
    settings: LocalizeSettings,
    saturation_photons: float | None,
    progress: bool,
) -> None:
    """Replace each block's pairs in ``pairs`` by the frames next to linked blinks that the known-position test accepts (:mod:`.extend`).

    ``pairs``: per block, the (track, frame) pairs to test in its frames (:func:`_link_blocks`). Reads
    only the frame blocks holding pairs to test (in parallel, as the localization blocks), with the
    block's localizations from ``store``; leaves :func:`~smlmdn.localize.extend.accepted_extensions` per
    block in ``pairs`` (sorted by frame) and counts them per track in ``linked``'s ``n_extended``. A frame
    whose fit box at the blink's position holds a clipped pixel is never added.
    """
    _, ny, nx = photons.shape
    pixel_size = float(camera.pixel_size)
    sigma_px = settings.sigma_px(pixel_size)
    test = dict(
        sigma_px=sigma_px,
        box=test_box(sigma_px, settings.box, (ny, nx)),
        pixel_size_nm=pixel_size,
        read_noise_photons=camera.read_noise_photons,
        excess_noise=camera.excess_noise,
    )

    sizes = []
    for i in range(len(pairs)):  # each block's pairs of tracks long enough, with their positions
        with linked.mapped() as (tracks, _, _):
            cand = pairs[i]
            pairs[i] = cand = with_positions(cand[tracks.n[cand["track"].to_numpy()] >= MIN_TRACK], tracks)
        sizes.append(len(cand))

    def task(i: int, b0: int, b1: int) -> Any:
        known = store[i][["frame", "x_nm", "y_nm", "photons"]]
        return dask.delayed(_extend_task)(
            delayed_array(photons[b0:b1]), b0, pairs[i], known, settings.box, saturation_photons, test
        )

    todo = [b for b in blocks if sizes[b[0]]]  # the blocks holding a frame to test
    step_up = StepUp(sum(sizes), settings.fdr)  # Benjamini-Hochberg over every candidate's test
    with track(total=sum(sizes), description="extending blinks", enabled=progress) as advance:
        for (i, _, _), (p, n_hat, b_hat, sat) in compute_blocks(task, todo):
            p = np.where(sat, 1.0, p)  # a clipped pixel in the box: the counts are wrong, so the frame is not added
            step_up.add(p)
            # keep the tests it may accept: p <= its limit, finite photons
            may = np.flatnonzero((p <= step_up.limit) & np.isfinite(n_hat))
            pairs[i] = pairs[i].iloc[may].assign(p=p[may], photons=n_hat[may], bg=b_hat[may])
            advance(len(p))
    for i in range(len(pairs)):
        hopeful = pairs[i]
        if not sizes[i]:  # no pair to test in this block
            pairs[i] = hopeful.iloc[:0].assign(p=np.zeros(0), photons=np.zeros(0), bg=np.zeros(0))
            continue
        p, n_hat, b_hat = (hopeful[c].to_numpy() for c in ("p", "photons", "bg"))
        pairs[i] = acc = accepted_extensions(hopeful[["track", "frame"]], p, n_hat, b_hat, step_up.threshold)
        if len(acc):
            with linked.arrays.mapped("n_extended") as a:
                np.add.at(a["n_extended"], acc["track"].to_numpy(), 1)


def _final_blocks(
    blocks: list[tuple[int, int, int]], store: BlockStore, linked: _Linked, extensions: BlockStore | None
) -> Iterator[pd.DataFrame]:
    """Yield each block's finished localization table (:data:`LOC_COLUMNS`), in frame order.

    A block's rows with their tracks' pooled columns; with ``extensions`` (per block, :func:`_extensions`),
    its accepted extension rows are added and the block is sorted by frame (stable: fitted rows first),
    ``n_track`` counting them.
    """
    for i in range(len(blocks)):
        yield _final_block(store[i], linked, None if extensions is None else extensions[i])


def _final_block(tab: pd.DataFrame, linked: _Linked, extensions: pd.DataFrame | None) -> pd.DataFrame:
    """One block's finished table (:func:`_final_blocks`) from its linked rows ``tab`` and accepted ``extensions``."""
    with linked.mapped() as (tracks, sigma_nm, n_extended):
        k = tab["track"].to_numpy()
        tab = tab.assign(
            x_linked_nm=tracks.x_nm[k], y_linked_nm=tracks.y_nm[k], crlb_linked_nm=tracks.crlb_nm[k], extended=False
        )
        if extensions is not None:
            rows = extension_rows(extensions, tracks, sigma_nm)
            order = np.argsort(np.concatenate([tab["frame"].to_numpy(), rows["frame"].to_numpy()]), kind="stable")
            tab = pd.DataFrame(
                {c: np.concatenate([tab[c].to_numpy(), rows[c].to_numpy()])[order] for c in rows.columns}, copy=False
            )
        k = tab["track"].to_numpy()
        tab["n_track"] = tracks.n[k] + n_extended[k]
    return tab[list(LOC_COLUMNS)]


class ColumnStack:
    """Columns of a table given block by block, each allocated once for the table's ``n_rows`` rows.

    ``columns``: names of :data:`LOC_COLUMNS` (dtypes as :data:`COLUMN_DTYPES`); ``derived``: more
    float64 columns, each computed from every block by its function (block -> (rows,)). Memory: those
    columns, never a second copy of them; with ``on_disk``, none (they go to temporary files,
    :class:`~smlmdn.localize.store.DiskArrays`: only :meth:`nanmedian` reads them; call :meth:`close`).
    """

    def __init__(
        self,
        n_rows: int,
        columns: Sequence[str],
        derived: Mapping[str, Callable[[pd.DataFrame], np.ndarray]] | None = None,
        on_disk: bool = False,
    ) -> None:
        if set(columns) & set(derived or {}):
            raise ValueError(f"columns both kept and derived: {sorted(set(columns) & set(derived or {}))}")
        dtypes = {c: COLUMN_DTYPES.get(c, np.float64) for c in (*columns, *(derived or {}))}
        self._disk = DiskArrays(n_rows, dtypes) if on_disk else None
        self._columns: dict[str, np.ndarray] = (
            {} if on_disk else {c: np.empty(n_rows, dtype=d) for c, d in dtypes.items()}
        )
        self._derived = dict(derived or {})
        self._n_rows, self._row = n_rows, 0

    def add(self, block: pd.DataFrame) -> None:
        """Copy (or derive) the columns of ``block``, the next rows of the table."""
        with self._disk.mapped() if self._disk is not None else nullcontext(self._columns) as columns:
            for c, values in columns.items():
                part = self._derived[c](block) if c in self._derived else block[c].to_numpy()
                values[self._row : self._row + len(block)] = part
        self._row += len(block)

    @property
    def n_rows(self) -> int:
        """Rows of the table."""
        return self._n_rows

    def table(self) -> pd.DataFrame:
        """Return the columns as one table; raises AssertionError unless exactly ``n_rows`` rows were added; in memory only."""
        self._check_full()
        return pd.DataFrame(self._columns, copy=False)

    def nanmedian(self, name: str) -> float:
        """Return ``np.nanmedian`` of a column (NaN when all are NaN), without a copy (in memory it reorders the column)."""
        self._check_full()
        if self._disk is not None:
            return self._disk.nanmedian(name)
        values = self._columns[name]
        return float("nan") if np.isnan(values).all() else float(np.nanmedian(values, overwrite_input=True))

    def close(self) -> None:
        """Remove the temporary files (``on_disk``)."""
        if self._disk is not None:
            self._disk.close()

    def _check_full(self) -> None:
        if self._row != self._n_rows:
            raise AssertionError(f"{self._row} localization rows, expected {self._n_rows}")


def _extend_task(
    photons: np.ndarray,
    frame0: int,
    cand: pd.DataFrame,
    known: pd.DataFrame,
    fit_box: int,
    saturation_photons: float | None,
    test: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Test one block's extension candidates; runs on a worker -> ``(p, photons, bg, saturated)`` (n,).

    ``photons`` (T, Y, X): the block's raw photons from movie frame ``frame0``; ``known``: the
    localizations of those frames; ``test``: the keyword settings of :func:`known_position_test`.
    """
    tune_worker_allocator()
    block = np.asarray(photons)  # float32: boxes() gathers its windows into float64
    cy, cx = ((cand[c].to_numpy() / test["pixel_size_nm"]).astype(np.int64) for c in ("y_nm", "x_nm"))
    t = cand["frame"].to_numpy() - frame0
    saturated = (
        saturated_boxes(block >= saturation_photons, t, cy, cx, fit_box)
        if saturation_photons is not None
        else np.zeros(len(cand), bool)
    )
    return (*known_position_test(block, frame0, cand, known, **test), saturated)


def _check_inputs(photons: Any, mode: LocalizeMode, detect_on: Any) -> tuple[da.Array, da.Array | None]:
    """Return the raw photons as a (T, Y, X) dask array in blocks of at most :func:`block_frames` frames.

    ``detect_on`` comes back in the same blocks; raises :class:`SmlmdnError` for a wrong shape or a
    detection movie the ``mode`` needs but lacks (or does not use).
    """
    if not isinstance(photons, da.Array):
        photons = da.from_array(np.asarray(photons), chunks=(max(1, min(len(photons), 256)), -1, -1))
    check_tyx(photons.shape)
    if photons.shape[0] and max(photons.chunks[0]) > block_frames(photons.shape[1:]):  # bound memory per block
        photons = in_frame_blocks(photons, block_frames(photons.shape[1:]))
    if mode.needs_denoised != (detect_on is not None):
        raise SmlmdnError(
            f"the {mode.name} mode {'needs a' if mode.needs_denoised else 'takes no'} denoised movie (detect_on)",
            "pass detect_on exactly for the denoised and hybrid modes",
        )
    if detect_on is not None:
        if not isinstance(detect_on, da.Array):
            detect_on = da.from_array(np.asarray(detect_on), chunks=photons.chunks)
        check_same_shape(detect_on.shape, photons.shape, "denoised movie", "the raw movie")
        detect_on = in_frame_blocks(detect_on, photons.chunks[0])
    return photons, detect_on


def _localize_blocks(
    photons: da.Array,
    detect_on: da.Array | None,
    pool: int,
    block_settings: dict[str, Any],
    store: BlockStore,
    step_up: StepUp | None,
    progress: bool,
) -> tuple[list[tuple[int, int, int]], dict[str, int]]:
    """Fit every candidate of every frame block, before the movie-wide FDR decision.

    Appends each block's table of fitted candidates to ``store`` (one per block, in frame order) and
    their p-values to ``step_up`` (the movie-wide Benjamini-Hochberg decision, if any); returns the
    blocks ``(index, t0, t1)`` and the summed block counts (:func:`localize_block`); ``pool`` frames of
    halo on each side feed the pooled test.
    """
    t = photons.shape[0]
    totals = {"n_candidates": 0, "n_rejected": 0, "n_merged": 0, "n_dropped_nonconverged": 0, "n_dropped_outside": 0}
    found = 0

    def task(i: int, b0: int, b1: int) -> Any:
        h0, h1 = max(0, b0 - pool), min(t, b1 + pool)
        det = None if detect_on is None else delayed_array(detect_on[b0:b1])
        return dask.delayed(_localize_task)(delayed_array(photons[h0:h1]), det, b0, b0 - h0, b1 - b0, block_settings)

    # Blocks run in parallel on the active dask scheduler (threads, or dask.distributed workers);
    # a denoiser reading the raw movie shares those reads with the fit inside one task.
    blocks = frame_blocks(photons.chunks[0])
    with track(total=t, description="localizing", enabled=progress) as advance:
        for (_, b0, b1), (table, counts) in compute_blocks(task, blocks):
            for k, v in counts.items():
                totals[k] += v
            if step_up is not None:
                step_up.add(table["p_value"].to_numpy())
            store.append(table)
            found += len(table)
            advance(b1 - b0, locs=found)
    return list(blocks), totals


def _settings_attrs(settings: LocalizeSettings, threshold: float, acceptance: str) -> dict[str, Any]:
    """Return the settings a localization table's ``attrs`` record (``threshold``: the band-pass threshold used)."""
    return {
        "box": int(settings.box),
        "psf_sigma_nm": float(settings.psf_sigma_nm),
        "fit_sigma": bool(settings.fit_sigma),
        "acceptance": acceptance,
        "fdr": float(settings.fdr) if settings.calibrated else None,
        "pool": int(settings.pool),
        "multi_emitter": bool(settings.multi_emitter),
        "threshold": threshold,
        "link_distance_nm": float(settings.link_distance_nm),
    }
