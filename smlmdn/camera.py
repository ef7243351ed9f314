"""Camera model: ADU <-> detected photons (photoelectrons), and estimating gain from data.

Units: ``offset`` in ADU, ``e_per_adu`` in photoelectrons per ADU (after EM gain, i.e. the
conversion factor a camera's spec sheet calls "sensitivity"), ``em_gain`` dimensionless (1 for
sCMOS/CCD), ``read_noise`` in electrons rms, ``qe`` a fraction, ``pixel_size`` in nm.

"photons" throughout smlmdn means *detected* photons, i.e. photoelectrons: the quantity whose
shot noise is Poisson. Dividing by QE (emitted photons) breaks Poisson statistics, so QE is only
used for reporting.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import dask.array as da
import numpy as np

from .errors import SmlmdnError

#: A movie as a lazy dask array or an in-memory numpy array; unit conversions return the same kind.
MovieT = TypeVar("MovieT", da.Array, np.ndarray)

CAMERA_KEYS = ("offset", "e_per_adu", "qe", "em_gain", "read_noise", "pixel_size")

_GIVEN_KEYS: ContextVar[frozenset[str] | None] = ContextVar("smlmdn_given_camera_keys", default=None)


@contextmanager
def camera_keys_given(keys: Iterable[str]) -> Iterator[None]:
    """Make checks against the data judge only these camera keys while active.

    While active, checks against the data (:func:`check_camera`) only judge these camera keys:
    the others are defaults the user never gave (the CLI sets this from the options it received).
    """
    token = _GIVEN_KEYS.set(frozenset(keys))
    try:
        yield
    finally:
        _GIVEN_KEYS.reset(token)


def given_camera_keys() -> frozenset[str] | None:
    """Return the camera keys given in the running command (None outside the CLI: every key counts as given)."""
    return _GIVEN_KEYS.get()


@dataclass(frozen=True)
class Camera:
    """Camera numbers; see the module docstring for units."""

    offset: float = 100.0
    e_per_adu: float = 0.5
    qe: float = 0.8
    em_gain: float = 1.0
    read_noise: float = 1.5
    pixel_size: float = 100.0

    def __post_init__(self) -> None:
        """Check the camera numbers; raise :class:`SmlmdnError` for a non-finite or out-of-range one."""
        for key in CAMERA_KEYS:
            value = getattr(self, key)
            if not np.isfinite(value):
                raise SmlmdnError(f"camera {key} is {value}", f"give a finite --{_flag(key)}")
        for key in ("e_per_adu", "qe", "em_gain", "pixel_size"):
            if getattr(self, key) <= 0:
                raise SmlmdnError(
                    f"camera {key} must be > 0, got {getattr(self, key)}",
                    f"pass a positive --{_flag(key)} (see your camera's spec sheet)",
                )
        if self.qe > 1:
            raise SmlmdnError(f"camera qe must be in (0, 1], got {self.qe}", "give --qe as a fraction, e.g. 0.8")
        if self.em_gain < 1:
            raise SmlmdnError(f"camera em_gain must be >= 1, got {self.em_gain}", "use --em-gain 1 for sCMOS/CCD")
        if self.read_noise < 0 or self.offset < 0:
            raise SmlmdnError("camera offset and read_noise must be >= 0", "check --offset and --read-noise")

    @property
    def is_emccd(self) -> bool:
        """True when an electron-multiplying gain register is in use."""
        return self.em_gain > 1

    @property
    def excess_noise(self) -> float:
        """Variance inflation of detected photons: 2 for an EMCCD at high gain, 1 otherwise."""
        return 2.0 if self.is_emccd else 1.0

    @property
    def read_noise_photons(self) -> float:
        """Read noise referred to detected photons (rms): divided by the EM gain on an EMCCD."""
        return self.read_noise / self.em_gain

    def to_dict(self) -> dict[str, float]:
        """Return the six camera keys as a plain dict (for JSON and provenance)."""
        return {k: float(v) for k, v in asdict(self).items()}


def _flag(key: str) -> str:
    return key.replace("_", "-")


def load_camera(path: str | Path | None = None, **overrides: float | None) -> Camera:
    """Build a Camera from an optional JSON/YAML file; non-None ``overrides`` win over the file."""
    values = read_camera_file(path) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Camera(**{k: float(v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise SmlmdnError(f"camera numbers are not numbers ({exc})", "give plain numbers") from exc


def read_camera_file(path: str | Path) -> dict[str, Any]:
    """Return the camera keys given in a JSON/YAML camera file (only those it names).

    Raises SmlmdnError if it is missing, unparsable or has unknown keys.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SmlmdnError(f"camera file {path} does not exist", "check the --camera path")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml  # PyYAML: a well-kept parser, only needed for YAML camera files

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        except Exception as exc:  # any parse error is the user's file
            raise SmlmdnError(f"camera file {path} cannot be parsed ({exc})", "write it as JSON or YAML") from exc
        if not isinstance(values, dict):
            raise SmlmdnError(f"camera file {path} is not a mapping", f"use the keys {', '.join(CAMERA_KEYS)}")
        unknown = set(values) - set(CAMERA_KEYS)
        if unknown:
            raise SmlmdnError(
                f"camera file {path} has unknown keys {sorted(unknown)}",
                f"use exactly these keys: {', '.join(CAMERA_KEYS)}",
            )
    return values


def save_camera(camera: Camera, path: str | Path) -> None:
    """Write the camera keys to a JSON file."""
    Path(path).write_text(json.dumps(camera.to_dict(), indent=2) + "\n")


def to_photons(movie: MovieT, camera: Camera) -> MovieT:
    """Lazy ADU -> detected photons: ``(adu - offset) * e_per_adu / em_gain`` as float32 (T, Y, X)."""
    scale = np.float32(camera.e_per_adu / camera.em_gain)
    return (movie.astype(np.float32) - np.float32(camera.offset)) * scale


def from_photons(photons: da.Array, camera: Camera, dtype: Any = np.float32) -> da.Array:
    """Lazy detected photons -> ADU (inverse of :func:`to_photons`); integer dtypes are rounded and clipped."""
    adu = photons.astype(np.float32) * np.float32(camera.em_gain / camera.e_per_adu) + np.float32(camera.offset)
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        adu = da.clip(da.round(adu), info.min, info.max)
    return adu.astype(dtype)


@dataclass(frozen=True)
class CameraEstimate:
    """Result of :func:`estimate_camera`: the estimated numbers and how well the fit went."""

    offset: float
    e_per_adu: float
    slope: float  # ADU^2 of noise variance per ADU of signal
    intercept: float  # ADU^2
    n_bins: int
    offset_sd: float = float("nan")  # ADU, standard error of the fit
    e_per_adu_sd: float = float("nan")  # photoelectrons/ADU, standard error of the fit
    method: str = (
        "temporal"  # "temporal" (frame pairs, needs a varying background) or "spatial" (high spatial frequencies)
    )

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain numbers (``method`` as a string), for JSON."""
        return {
            f.name: getattr(self, f.name) if f.name == "method" else float(getattr(self, f.name)) for f in fields(self)
        }


def _camera_from_line(
    slope: float, intercept: float, cov: np.ndarray, em_gain: float, read_noise: float
) -> tuple[float, float, float, float]:
    """Compute (e_per_adu, offset, their standard errors) from a photon-transfer line.

    The line is ``var = slope * mean + intercept`` (ADU^2 vs ADU) with covariance ``cov`` of
    (slope, intercept); read noise in electrons is taken as given.
    """
    excess = 2.0 if em_gain > 1 else 1.0
    e_per_adu = excess * em_gain / slope
    read_var_adu = (read_noise / e_per_adu) ** 2
    offset = (read_var_adu - intercept) / slope
    # offset = (read_noise / (excess * em_gain))^2 * slope - intercept / slope
    jac = np.array([(read_noise / (excess * em_gain)) ** 2 + intercept / slope**2, -1.0 / slope])
    offset_sd = float(np.sqrt(max(jac @ cov @ jac, 0.0)))
    e_sd = float(e_per_adu * np.sqrt(max(cov[0, 0], 0.0)) / slope)
    return float(e_per_adu), float(offset), e_sd, offset_sd


def estimate_camera(
    movie: da.Array | np.ndarray,
    em_gain: float = 1.0,
    read_noise: float = 1.5,
    max_frames: int = 200,
    n_bins: int = 40,
    seed: int = 0,
    spatial_fallback: bool = True,
    psf_sigma_px: float = 1.3,
) -> CameraEstimate:
    """Estimate offset (ADU) and e_per_adu from a raw ADU movie (T, Y, X) by a photon-transfer fit.

    When the background varies too little across the field for this (flat-field illumination) and
    ``spatial_fallback``, the estimate comes from :func:`estimate_camera_spatial` instead
    (``psf_sigma_px``: PSF sigma in pixels); ``method`` in the result says which was used, and
    ``offset_sd``/``e_per_adu_sd`` state the fit's uncertainty.

    Noise variance is measured from differences of consecutive frames of the same pixel (which
    cancels fixed-pattern offsets). Pixels are binned by their temporal median (their background
    level, robust to blinking) rather than by the noisy pair mean, which would bias the fit for any
    noise that is not exactly Poisson (EMCCD gain, read noise). Pairs near a molecule that is on
    in either frame are masked out (positive excess over the background after Gaussian smoothing,
    dilated), since emitters switching between the two frames add variance that is not camera
    noise; the rest are sigma-clipped at 5 sigma. A weighted line ``var = slope * mean + intercept``
    is fitted across bins, where ``slope = excess * em_gain / e_per_adu`` and
    ``intercept = read_var - slope * offset``. ``em_gain`` and ``read_noise`` (electrons) are taken
    as given; they cannot be separated from the data alone. Needs some spatial variation of the
    background (any real illumination profile has it). Reads at most ``max_frames`` frame pairs'
    worth of frames, spread over the movie.
    """
    from scipy import ndimage

    n_frames = movie.shape[0]
    if n_frames < 4:
        raise SmlmdnError("need at least 4 frames to estimate camera numbers", "pass the camera numbers instead")
    rng = np.random.default_rng(seed)
    # Disjoint pairs of consecutive frames (2k, 2k + 1), so the two halves below share no frame.
    n_pairs = min(max(max_frames // 2, 2), n_frames // 2)
    starts = 2 * np.sort(rng.choice(n_frames // 2, size=n_pairs, replace=False))
    a = (
        np.asarray(movie[starts], dtype=np.float64)
        if isinstance(movie, np.ndarray)
        else movie[starts].compute().astype(np.float64)
    )
    b = (
        np.asarray(movie[starts + 1], dtype=np.float64)
        if isinstance(movie, np.ndarray)
        else movie[starts + 1].compute().astype(np.float64)
    )

    def molecules(frames: np.ndarray, level: np.ndarray) -> np.ndarray:
        # Positive excess over the background, smoothed over about a PSF, above 3 robust sigma; grown by 5 px.
        excess = ndimage.gaussian_filter(frames - level, (0, 1.5, 1.5))
        centre = np.median(excess, axis=(1, 2), keepdims=True)
        spread = 1.4826 * np.median(np.abs(excess - centre), axis=(1, 2), keepdims=True)
        return ndimage.binary_dilation(excess > centre + 3.0 * spread, structure=np.ones((1, 11, 11), bool))

    # Cross-fitting: each half of the pairs is binned by the background level (temporal median per
    # pixel, ADU) measured on the other half, so that a pixel's bin does not depend on its own noise.
    halves = (np.arange(0, n_pairs, 2), np.arange(1, n_pairs, 2))
    levels = [np.median(np.concatenate([a[h], b[h]]), axis=0) for h in halves]
    lo, hi = np.quantile((levels[0] + levels[1]) / 2, [0.01, 0.99])
    edges = np.linspace(lo, hi, n_bins + 1)
    width = edges[1] - edges[0]
    idx_parts, mean_parts, diff_parts = [], [], []
    for h, level in zip(halves, levels[::-1], strict=True):
        pixel_bin = np.digitize(level, edges) - 1
        pixel_bin[level == hi] = n_bins - 1
        pixel_bin[(pixel_bin < 0) | (pixel_bin >= n_bins)] = -1
        usable = ~(molecules(a[h], level) | molecules(b[h], level))
        idx_parts.append(np.where(usable, pixel_bin[None], -1).ravel())
        mean_parts.append(((a[h] + b[h]) / 2).ravel())
        diff_parts.append((a[h] - b[h]).ravel())
    idx, mean, diff = np.concatenate(idx_parts), np.concatenate(mean_parts), np.concatenate(diff_parts)
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(n_bins + 1))
    xs, ys, ws = [], [], []
    for i in range(n_bins):
        sel = order[bounds[i] : bounds[i + 1]]
        if sel.size < 200:
            continue
        d, m = diff[sel], mean[sel]
        c_d, c_m = np.median(d), np.median(m)
        s = 1.4826 * np.median(np.abs(d - c_d)) or d.std()
        if s <= 0:
            continue
        for _ in range(10):  # 5-sigma clipping of what the mask missed (pair mean spread is s/2)
            keep = (np.abs(d - c_d) <= 5 * s) & (np.abs(m - c_m) <= 2.5 * s + width)
            s_new = d[keep].std()
            c_m = m[keep].mean()
            converged = abs(s_new - s) <= 1e-4 * s
            s = s_new
            if converged:
                break
        if keep.sum() < 200:
            continue
        xs.append(m[keep].mean())
        ys.append(d[keep].var() / 2.0)
        ws.append(int(keep.sum()))
    if len(xs) < 3 or np.ptp(xs) <= 0:
        raise SmlmdnError(
            "the movie has too little intensity variation to estimate the camera gain",
            "pass --e-per-adu and --offset from the camera's spec sheet",
        )
    # Weights 1/sd of each bin's variance estimate (sd = var * sqrt(2 / n)); the slope's standard
    # error then tells whether the background varies enough across the field to pin the gain.
    xs_a, ys_a = np.array(xs), np.array(ys)
    weights = np.sqrt(np.array(ws) / 2.0) / np.maximum(ys_a, 1e-12)
    (slope, intercept), cov = np.polyfit(xs_a, ys_a, 1, w=weights, cov="unscaled")
    if slope > 0 and np.sqrt(cov[0, 0]) > 0.25 * slope:
        if spatial_fallback:
            return estimate_camera_spatial(
                movie,
                em_gain=em_gain,
                read_noise=read_noise,
                psf_sigma_px=psf_sigma_px,
                max_frames=max_frames,
                seed=seed,
            )
        raise SmlmdnError(
            "the background varies too little across the field to estimate the camera gain "
            f"(gain uncertain by {100 * np.sqrt(cov[0, 0]) / slope:.0f}%)",
            "pass --e-per-adu and --offset from the camera's spec sheet",
        )
    if slope <= 0:
        raise SmlmdnError(
            "the photon-transfer fit gave a non-positive gain (is this raw ADU data?)",
            "pass --e-per-adu and --offset from the camera's spec sheet",
        )
    e_per_adu, offset, e_sd, offset_sd = _camera_from_line(slope, intercept, cov, em_gain, read_noise)
    return CameraEstimate(offset, e_per_adu, float(slope), float(intercept), len(xs), offset_sd, e_sd, "temporal")


def estimate_camera_spatial(
    movie: da.Array | np.ndarray,
    em_gain: float = 1.0,
    read_noise: float = 1.5,
    psf_sigma_px: float = 1.3,
    max_frames: int = 200,
    n_bins: int = 30,
    border: int = 6,
    seed: int = 0,
    noise_power: float = 1e-8,
    signal_power: float = 0.7,
) -> CameraEstimate:
    """Offset (ADU) and e_per_adu from a raw ADU movie (T, Y, X) whose background may be flat.

    Spatial frequencies where the PSF's power transfer has fallen below ``noise_power`` carry
    only noise (Heintzmann et al. 2016, arXiv:1611.05654): a frame filtered to them gives, at each
    pixel, ``f * local noise variance`` (``f`` the fraction of frequencies kept), whatever the signal.
    The local mean level comes from the frequencies the PSF passes almost unchanged (power transfer
    above ``signal_power``: a smooth level whose own noise barely steers the binning, with the pixel's
    own value taken out); molecules supply the range of levels that a flat background lacks.
    Measured on simulated 64 x 64 px, 200-frame movies with a flat background (20 photons/px,
    ~1,000-photon blinking emitters, two seeds): e_per_adu within 6 % (sCMOS and EMCCD), offset
    within 3 ADU (sCMOS) and 10 ADU (EMCCD); the stated standard errors are optimistic by up to 1.5x. A weighted photon-transfer line is fitted over bins of level, as in
    :func:`estimate_camera` (``em_gain``, ``read_noise`` in electrons taken as given). Needs
    ``psf_sigma_px`` (the PSF's Gaussian sigma in pixels) to know which frequencies hold signal, at
    least 16 x 16 px frames, and molecules or background structure. Reads at most ``max_frames``
    frames. Raises SmlmdnError when the levels span too little or the fit is too uncertain.
    """
    n_frames = movie.shape[0]
    h, w = movie.shape[1:]
    if min(h, w) < 2 * border + 4:
        raise SmlmdnError(
            f"frames of {h} x {w} px are too small to estimate camera numbers", "pass --e-per-adu and --offset"
        )
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n_frames, size=min(n_frames, max_frames), replace=False))
    y = (
        np.asarray(movie[idx], dtype=np.float64)
        if isinstance(movie, np.ndarray)
        else movie[idx].compute().astype(np.float64)
    )
    k2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2
    otf2 = np.exp(-4 * np.pi**2 * psf_sigma_px**2 * k2)  # the Gaussian PSF's power transfer
    high = (otf2 < noise_power).astype(np.float64)
    low = (otf2 > signal_power).astype(np.float64)
    f = float(high.mean())
    if f < 0.02:
        raise SmlmdnError(
            f"the PSF ({psf_sigma_px:g} px) leaves no noise-only spatial frequencies", "pass --e-per-adu and --offset"
        )
    spectrum = np.fft.fft2(y)
    residual = np.fft.ifft2(spectrum * high).real
    low_kernel = np.fft.ifft2(low).real
    level = (np.fft.ifft2(spectrum * low).real - low_kernel[0, 0] * y) / (1.0 - low_kernel[0, 0])
    high_kernel = np.fft.ifft2(high).real
    weights_kernel = high_kernel**2 / (high_kernel**2).sum()
    level_w = np.fft.ifft2(spectrum * np.fft.fft2(weights_kernel)[None]).real  # the mean the residual's variance sees
    inner = (slice(None), slice(border, h - border), slice(border, w - border))
    var = (residual[inner] ** 2 / f).ravel()
    x, xw = level[inner].ravel(), level_w[inner].ravel()
    lo, hi = np.quantile(x, [0.005, 0.9995])
    keep = (x >= lo) & (x <= hi)
    edges = np.quantile(x[keep], np.linspace(0, 1, n_bins + 1))
    bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
    xs, ys, ns = [], [], []
    for i in range(n_bins):
        sel = keep & (bins == i)
        if sel.sum() < 100:
            continue
        xs.append(xw[sel].mean())
        ys.append(var[sel].mean())
        ns.append(int(sel.sum()))
    xs_a, ys_a, ns_a = np.array(xs), np.array(ys), np.array(ns)
    if len(xs_a) < 3 or np.ptp(xs_a) <= 0:
        raise SmlmdnError(
            "the movie has too little intensity variation to estimate the camera gain",
            "pass --e-per-adu and --offset from the camera's spec sheet",
        )
    # neighbouring residuals are correlated, so a bin holds fewer independent values than pixels: the
    # scaled covariance (by the scatter about the line) states the uncertainty honestly
    weights = np.sqrt(ns_a / 2.0) / np.maximum(ys_a, 1e-12)
    (slope, intercept), cov_unscaled = np.polyfit(xs_a, ys_a, 1, w=weights, cov="unscaled")
    _, cov_scaled = np.polyfit(xs_a, ys_a, 1, w=weights, cov=True) if len(xs_a) > 3 else (None, cov_unscaled)
    cov = np.maximum(cov_unscaled, cov_scaled) if cov_scaled[0, 0] > cov_unscaled[0, 0] else cov_unscaled
    if slope <= 0 or np.sqrt(cov[0, 0]) > 0.25 * slope:
        raise SmlmdnError(
            "the movie's intensity levels span too little to estimate the camera gain "
            f"(spatial method: gain uncertain by {100 * np.sqrt(cov[0, 0]) / abs(slope):.0f}%)",
            "pass --e-per-adu and --offset from the camera's spec sheet",
        )
    e_per_adu, offset, e_sd, offset_sd = _camera_from_line(slope, intercept, cov, em_gain, read_noise)
    return CameraEstimate(offset, e_per_adu, float(slope), float(intercept), len(xs_a), offset_sd, e_sd, "spatial")


def check_camera(
    camera: Camera, estimate: CameraEstimate, tolerance: float = 0.25, keys: Iterable[str] | None = None
) -> list[str]:
    """Warnings (strings) where the camera disagrees with the data by more than ``tolerance``.

    ``keys`` are the camera numbers the user gave (default: :func:`given_camera_keys`, or all
    outside the CLI); the others are defaults and are named so ("the default e_per_adu 0.5 ..."),
    never "given". e_per_adu is compared relatively; the offset warns when it differs by more than
    ``max(10 ADU, tolerance * estimated offset)``, and only when the gain agrees (with a wrong gain
    an offset warning says nothing new). Both tolerances widen to 3 standard errors of an uncertain
    estimate. Also issues them as Python warnings.
    """
    from_cli = given_camera_keys()
    given = set(keys) if keys is not None else (from_cli if from_cli is not None else set(CAMERA_KEYS))
    messages = []
    rel = abs(camera.e_per_adu - estimate.e_per_adu) / estimate.e_per_adu
    e_sd, offset_sd = (v if np.isfinite(v) else 0.0 for v in (estimate.e_per_adu_sd, estimate.offset_sd))
    tolerance_gain = max(tolerance, 3 * e_sd / estimate.e_per_adu)
    gain_wrong = rel > tolerance_gain
    if gain_wrong:
        if "e_per_adu" in given:
            named = "given e_per_adu"
        elif "em_gain" in given:
            named = f"default e_per_adu (with the given em_gain {camera.em_gain:g})"
        else:
            named = "default e_per_adu"
        messages.append(
            f"the {named} {camera.e_per_adu:g} disagrees with the data's {estimate.e_per_adu:.3g} "
            f"by {100 * rel:.0f}% (> {100 * tolerance_gain:.0f}%): check --e-per-adu/--em-gain"
        )
    if not gain_wrong and abs(camera.offset - estimate.offset) > max(
        10.0, tolerance * abs(estimate.offset), 3 * offset_sd
    ):
        named = "given" if "offset" in given else "default"
        messages.append(
            f"the {named} offset {camera.offset:g} ADU disagrees with the data's {estimate.offset:.1f} ADU: check --offset"
        )
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return messages


def check_camera_against_data(movie: da.Array, camera: Camera, tolerance: float = 0.25) -> list[str]:
    """Estimate offset and gain from a raw ADU movie and warn where ``camera`` disagrees.

    Warns as :func:`check_camera` does; returns the warnings. Silent when the data cannot pin the
    gain (e.g. a flat background): that is not evidence against the given numbers.
    """
    try:
        estimate = estimate_camera(movie, em_gain=camera.em_gain, read_noise=camera.read_noise)
    except SmlmdnError:
        return []
    return check_camera(camera, estimate, tolerance)


def movie_to_photons(movie: da.Array, camera: Camera, units: str = "adu", sample_frames: int = 16) -> da.Array:
    """Validate a raw movie and convert it lazily to detected photons (T, Y, X) float32.

    ``units`` is ``"adu"`` (camera counts: converted with ``camera``) or ``"photons"`` (already
    photoelectrons: used as is). A float movie given as ADU is converted with a warning, since
    ADU are integers. A sample of frames is checked for NaN/Inf (blocks are checked again when
    processed) and for values below the camera offset that suggest a wrong ``--offset``.
    """
    if units not in ("adu", "photons"):
        raise SmlmdnError(f"unknown units {units!r}", "use --units adu or --units photons")
    idx = np.unique(np.linspace(0, movie.shape[0] - 1, min(sample_frames, movie.shape[0])).astype(int))
    sample = np.asarray(movie[idx].compute() if isinstance(movie, da.Array) else movie[idx])
    if not np.all(np.isfinite(sample)):
        raise SmlmdnError("the movie contains NaN or Inf pixels", "fix or crop the bad frames before processing")
    if units == "photons":
        return movie.astype(np.float32)
    if movie.dtype.kind == "f":
        warnings.warn(
            f"the movie is {movie.dtype}, but camera ADU are integers: converting it as ADU; "
            "if it is already in photons pass --units photons",
            stacklevel=2,
        )
    level = saturation_level(movie.dtype)
    if level is not None:
        hits = (sample >= level).sum(axis=(1, 2))
        if hits.any():
            warnings.warn(
                f"{int(hits.sum())} pixels at the camera's saturation level ({level:g} ADU) in {int((hits > 0).sum())} of "
                f"{len(idx)} sampled frames: molecules there (e.g. bright beads) are fitted with biased photons, position "
                "and background; lower the illumination/exposure, or exclude them (`smlmdn info MOVIE` counts all frames)",
                stacklevel=2,
            )
    median = float(np.median(sample))
    if median < camera.offset - 3 * max(1.0, camera.read_noise / camera.e_per_adu):
        warnings.warn(
            f"the movie's median {median:.1f} ADU is below the camera offset {camera.offset:g} ADU: "
            "check --offset (run `smlmdn info MOVIE` to estimate it)",
            stacklevel=2,
        )
    return to_photons(movie, camera)


def saturation_level(dtype: Any) -> float | None:
    """Return the ADU value a clipped pixel holds.

    The largest value of an integer dtype (65535 for uint16); None for float movies (no fixed level).
    """
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else None


def saturation_photons(dtype: Any, camera: Camera, units: str = "adu") -> float | None:
    """Return the photon value at or above which a pixel of a movie of ``dtype`` was clipped by the camera.

    Half an ADU below :func:`saturation_level`, converted with ``camera``; None for float movies or
    ``units="photons"`` (no fixed level).
    """
    level = saturation_level(dtype)
    if level is None or units != "adu":
        return None
    return float(to_photons(np.float64(level - 0.5), camera))


def saturated_boxes(saturated: np.ndarray, frame: np.ndarray, y: np.ndarray, x: np.ndarray, box: int) -> np.ndarray:
    """Which fit boxes hold a saturated pixel: for localize to flag (and by default drop) such spots.

    ``saturated`` is a bool (T, Y, X) block (e.g. ``raw_adu >= saturation_level(raw.dtype)``);
    ``frame`` (int, index into the block), ``y``, ``x`` (px, box centres as integer pixel indices)
    have shape (n,); ``box`` is the odd box side in px. Returns bool (n,). Boxes are clipped at the
    frame edge. Cost: one summed-area table per block, O(1) per box.
    """
    sat = np.asarray(saturated, dtype=bool)
    frame, y, x = (np.asarray(v, dtype=np.int64) for v in (frame, y, x))
    if frame.size == 0 or not sat.any():
        return np.zeros(frame.shape, bool)
    t_, h, w = sat.shape
    table = np.zeros((t_, h + 1, w + 1), np.int64)
    table[:, 1:, 1:] = sat.cumsum(1).cumsum(2)
    r = box // 2
    y0, y1 = np.clip(y - r, 0, h), np.clip(y + r + 1, 0, h)
    x0, x1 = np.clip(x - r, 0, w), np.clip(x + r + 1, 0, w)
    counts = table[frame, y1, x1] - table[frame, y0, x1] - table[frame, y1, x0] + table[frame, y0, x0]
    return counts > 0


def check_finite(block: np.ndarray, where: str = "") -> np.ndarray:
    """Raise a clear error if ``block`` holds NaN/Inf; return it unchanged otherwise."""
    if not np.all(np.isfinite(block)):
        raise SmlmdnError(f"NaN or Inf pixels in the movie{' ' + where if where else ''}", "fix or crop the bad frames")
    return block
