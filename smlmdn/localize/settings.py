"""What a localization run does, decided once where it enters: the table of modes and the settings.

The three modes (one :class:`LocalizeMode` each, in :data:`MODES`) say which movie candidates are
proposed on and which movie is fitted; the acceptance test always uses the raw photons.
:class:`LocalizeSettings` holds every other choice (fit box, PSF width, acceptance, linking),
validated when it is made, so code that receives one trusts it. The checks that need the movie
(box inside the frame, PSF width in pixels) are :meth:`LocalizeSettings.check_frame`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from ..errors import SmlmdnError
from .link import DEFAULT_MAX_DISTANCE_NM

#: Default false-discovery rate of the acceptance test (chosen by benchmarks/localize_grid.py).
DEFAULT_FDR = 0.05
#: Default number of neighbouring frames on each side pooled into the acceptance test.
DEFAULT_POOL = 0
#: Largest ``pool``: frames on each side summed into the pooled acceptance test.
MAX_POOL = 5


@dataclass(frozen=True)
class LocalizeMode:
    """One localization mode: which movie candidates are proposed on and which movie is fitted.

    ``detect_on_denoised``: propose on the denoised movie (else on the raw photons);
    ``fit_on_denoised``: fit the denoised movie with a plain Poisson model (else the raw photons
    with the camera's noise model). ``summary`` is one line for help texts and reports.
    """

    name: str
    detect_on_denoised: bool
    fit_on_denoised: bool
    summary: str

    @property
    def needs_denoised(self) -> bool:
        """Whether this mode needs a denoised movie besides the raw one."""
        return self.detect_on_denoised or self.fit_on_denoised

    @property
    def fit_on(self) -> Literal["raw", "detect"]:
        """The ``fit_on`` argument of :func:`smlmdn.localize.localize` for this mode."""
        return "detect" if self.fit_on_denoised else "raw"


RAW = LocalizeMode("raw", detect_on_denoised=False, fit_on_denoised=False, summary="detect+fit the raw movie")
DENOISED = LocalizeMode(
    "denoised",
    detect_on_denoised=True,
    fit_on_denoised=True,
    summary="detect+fit the denoised movie",
)  # its pixels are not Poisson: the fit's likelihood, CRLB and llr are model numbers, kept to measure it
HYBRID = LocalizeMode(
    "hybrid",
    detect_on_denoised=True,
    fit_on_denoised=False,
    summary="detect on the denoised movie, fit the raw photons",
)
#: Every mode by name, in report order.
MODES: Mapping[str, LocalizeMode] = MappingProxyType({m.name: m for m in (RAW, DENOISED, HYBRID)})


def get_mode(name: str) -> LocalizeMode:
    """Return the mode called ``name`` (case-insensitive); raises :class:`SmlmdnError` for an unknown name."""
    mode = MODES.get(str(name).lower())
    if mode is None:
        raise SmlmdnError(f"unknown --mode {name!r}", f"use --mode {', '.join(list(MODES)[:-1])} or {list(MODES)[-1]}")
    return mode


def choose_mode(name: str | None, have_denoised: bool) -> LocalizeMode:
    """Return the mode asked for by name, or the default: hybrid with a denoised movie, raw without.

    ``have_denoised``: a denoised movie (or a model to make one) was given. Raises
    :class:`SmlmdnError` for an unknown name, a mode that needs a denoised movie without one, and a
    denoised movie given for the raw mode (it would be ignored).
    """
    mode = get_mode(name) if name is not None else (HYBRID if have_denoised else RAW)
    if mode.needs_denoised and not have_denoised:
        raise SmlmdnError(
            f"--mode {mode.name} needs a denoised movie",
            "pass --denoised denoised.zarr (from `smlmdn denoise`) or --model model.pt",
        )
    if not mode.needs_denoised and have_denoised:
        raise SmlmdnError("--mode raw ignores --denoised/--model", "drop them, or use --mode hybrid or denoised")
    return mode


def mode_for(detect_on_given: bool, fit_on: str) -> LocalizeMode:
    """Return the mode of :func:`smlmdn.localize.localize`'s ``detect_on`` / ``fit_on`` arguments.

    Without a detection movie the raw photons are both proposed on and fitted (``fit_on`` is then
    irrelevant: raw mode). Raises :class:`SmlmdnError` for a ``fit_on`` other than ``raw``/``detect``.
    """
    if fit_on not in ("raw", "detect"):
        raise SmlmdnError(
            f"fit_on must be 'raw' or 'detect', got {fit_on!r}", "use fit_on='raw' (hybrid) or 'detect' (denoised)"
        )
    if not detect_on_given:
        return RAW
    return DENOISED if fit_on == "detect" else HYBRID


@dataclass(frozen=True)
class LocalizeSettings:
    """Every localization choice except the mode and the inputs, validated on construction.

    ``box``: odd fit-window side (px, >= 3); ``psf_sigma_nm``: PSF standard deviation (nm; fixed, or
    the start value with ``fit_sigma``); ``threshold``: expert override, band-pass significance in
    robust noise standard deviations (None: the FDR-controlled test); ``fdr``: false-discovery rate in
    (0, 1); ``pool``: neighbouring frames on each side summed into the acceptance test (0 to
    :data:`MAX_POOL`); ``link_distance_nm``: largest linking distance (nm, > 0); ``multi_emitter``:
    the residual pass for crowded molecules; ``keep_saturated``: keep fits whose box holds a clipped
    pixel; ``extend``: test the frames next to each linked blink at its known position
    (:mod:`smlmdn.localize.extend`; with the calibrated test only). Raises :class:`SmlmdnError` (one line, with a fix) for a value that cannot work.
    """

    box: int = 7
    psf_sigma_nm: float = 130.0
    fit_sigma: bool = False
    threshold: float | None = None
    fdr: float = DEFAULT_FDR
    pool: int = DEFAULT_POOL
    link_distance_nm: float = DEFAULT_MAX_DISTANCE_NM
    multi_emitter: bool = True
    keep_saturated: bool = False
    extend: bool = True

    def __post_init__(self) -> None:
        """Check the settings; raise :class:`SmlmdnError` for a value that cannot work."""
        box, pool = self.box, self.pool
        if isinstance(box, bool) or not isinstance(box, (int, np.integer)) or box < 3 or box % 2 == 0:
            raise SmlmdnError(
                f"box must be an odd number of pixels >= 3, got {box}",
                "use e.g. --box 7 (odd, so the candidate pixel is the box centre)",
            )
        if not np.isfinite(self.psf_sigma_nm) or self.psf_sigma_nm <= 0:
            raise SmlmdnError(
                f"psf sigma must be > 0 nm, got {self.psf_sigma_nm}",
                "give --psf-sigma in nm, e.g. 130 (about 0.21 x wavelength / NA)",
            )
        if self.threshold is not None and (not np.isfinite(self.threshold) or self.threshold <= 0):
            raise SmlmdnError(
                f"threshold must be > 0 (noise standard deviations), got {self.threshold}",
                "omit --threshold for the calibrated default",
            )
        if not (isinstance(self.fdr, (int, float)) and 0 < self.fdr < 1):
            raise SmlmdnError(
                f"fdr must be a false-discovery rate in (0, 1), got {self.fdr}", f"use e.g. --fdr {DEFAULT_FDR:g}"
            )
        if isinstance(pool, bool) or not isinstance(pool, (int, np.integer)) or not 0 <= pool <= MAX_POOL:
            raise SmlmdnError(
                f"pool must be a whole number of frames from 0 to {MAX_POOL}, got {pool}",
                "use --pool 0 (single frames) or 1-2",
            )
        if not (math.isfinite(self.link_distance_nm) and self.link_distance_nm > 0):
            raise SmlmdnError(
                f"link distance must be > 0 nm, got {self.link_distance_nm}",
                f"use e.g. --link-distance {DEFAULT_MAX_DISTANCE_NM:g}",
            )

    @property
    def calibrated(self) -> bool:
        """Whether candidates are accepted by the FDR-controlled test (no ``threshold`` override)."""
        return self.threshold is None

    def sigma_px(self, pixel_size_nm: float) -> float:
        """Return the PSF standard deviation in pixels of ``pixel_size_nm``."""
        return self.psf_sigma_nm / pixel_size_nm

    def check_frame(self, frame_shape: tuple[int, int], pixel_size_nm: float) -> None:
        """Raise :class:`SmlmdnError` when the box or PSF width cannot work on the frames.

        The frames are ``frame_shape`` (Y, X) px of ``pixel_size_nm``; failures: a box larger than the
        frame, a PSF wider than the box or narrower than 0.2 px.
        """
        box = self.box
        if box > min(frame_shape):
            raise SmlmdnError(
                f"box {box} px is larger than the frame ({frame_shape[0]} x {frame_shape[1]} px)",
                f"use a --box of at most {min(frame_shape) - (1 - min(frame_shape) % 2)} px",
            )
        sigma_px = self.sigma_px(pixel_size_nm) if pixel_size_nm > 0 else float("nan")
        if sigma_px > box:
            raise SmlmdnError(
                f"psf sigma {self.psf_sigma_nm:g} nm is {sigma_px:.1f} px, wider than the {box} px box",
                "check --psf-sigma is in nm and --pixel-size is right, or use a larger --box",
            )
        if sigma_px < 0.2:
            raise SmlmdnError(
                f"psf sigma {self.psf_sigma_nm:g} nm is only {sigma_px:.2f} px",
                "check --psf-sigma is in nm (not um or px) and --pixel-size is right",
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict (field name -> value), e.g. for a report."""
        return asdict(self)
