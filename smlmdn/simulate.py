"""Realistic 2D SMLM movies with ground truth.

Model, in the order it is applied:

1. **Structure.** ``n = density * area`` emitters (``density`` in emitters per um^2 of field of
   view, for every structure) are placed

   - ``"filaments"``: along ``n_filaments`` worm-like chains (persistence length
     ``persistence_nm``) crossing the field, uniformly in arc length, with a Gaussian label
     displacement of ``label_sigma_nm`` (linker/antibody size);
   - ``"grid"``: on a square grid of sites ``grid_spacing_nm`` apart (> 1 um, so spots of
     different sites do not overlap), emitters shared round-robin between the sites, each displaced
     by ``label_sigma_nm`` (like DNA-origami test samples);
   - ``"random"``: uniformly over the field.

2. **Blinking.** Each emitter is a two-state (on/off) telegraph process in continuous time with
   exponential dwell times of mean ``on_time`` and ``off_time`` frames, started in its stationary
   state (on with probability ``on_time / (on_time + off_time)``), so the duty cycle is constant from
   frame 0. Optional photobleaching: after each on-period an emitter bleaches with probability
   ``1 / bleach_cycles`` (``bleach_cycles = 0``: never). On-periods cover frames partially; an
   emitter's photons in a frame are ``brightness * (fraction of the frame it was on)``, where the
   full-frame ``brightness`` is drawn per emitter per frame with mean ``photons`` and coefficient of
   variation ``photons_cv`` (0.3: dipole orientation, local environment, laser fluctuation) from a
   Gamma distribution (``brightness="gamma"``, the default) or a lognormal one
   (``brightness="lognormal"``: same mean and CV, heavier bright tail and more very dim frames).

3. **Image.** Each spot is a pixel-integrated Gaussian (``psf_sigma`` nm) on a background of
   ``background`` photons/pixel/frame. By default the background follows a Gaussian illumination
   profile (1.0 in the centre, 0.6 at the middle of the edges, rescaled so that its mean over the
   field is ``background``); ``flat_background=True`` makes it uniform. ``clean`` is this expected
   image in detected photons (photoelectrons) per pixel per frame, float32.

4. **Camera.** sCMOS: ``Poisson(clean)`` photoelectrons + Gaussian read noise (``read_noise`` e-
   rms), ``/ e_per_adu + offset``, rounded, clipped to uint16. EMCCD: ``Poisson(clean)``, then the
   gain register ``Gamma(shape=n, scale=em_gain)`` electrons, + read noise, ``/ e_per_adu + offset``,
   rounded, clipped. So :func:`smlmdn.camera.to_photons` returns ``clean`` on average.

Ground truth ``truth``: one row per emitter per frame in which it was on (even partially), columns
``frame`` (0-based), ``x_nm``, ``y_nm`` (pixel (0, 0) covers [0, 100) x [0, 100) nm for 100-nm
pixels, see :mod:`smlmdn.psf`) and ``photons`` = expected detected photons (photoelectrons) of that
emitter in that frame (the PSF amplitude, before shot noise). Very dim partial-frame rows are kept:
filter on ``photons`` when evaluating if wanted.

Randomness is reproducible: positions come from ``seed``; the blinking schedule is generated in
windows of :data:`TRUTH_WINDOW` frames, each from a generator seeded by ``(seed, window)`` and the
telegraph state carried over the window edge (only those edge states are kept); each frame's noise
comes from its own generator seeded by ``(seed, frame)``. So any frame range can be rendered alone,
in any block size and order, giving exactly the same pixels and truth rows. This is what lets
:func:`simulate_to_dir` stream a 256 x 256 x 50,000 movie block by block with flat memory and equal
:func:`simulate` bit for bit.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd

from .camera import Camera, save_camera
from .errors import SmlmdnError
from .io import atomic_file, check_output, commit_output, frames_per_block, staging_folder, write_movie
from .psf import render_spots

STRUCTURES = ("filaments", "grid", "random")
CAMERA_TYPES = ("scmos", "emccd")
BRIGHTNESS = ("gamma", "lognormal")
TRUTH_COLUMNS = ["frame", "x_nm", "y_nm", "photons"]
OUTPUT_FILES = {"movie": "movie.tif", "clean": "clean.tif", "truth": "truth.csv", "camera": "camera.json"}

#: Signal-to-noise presets: (photons per on-frame, background photons/pixel/frame). For a 130-nm PSF
#: on 100-nm pixels the peak pixel of a spot holds about N / 10.6 photons, so the peak-pixel SNR
#: ``peak / sqrt(peak + background)`` (sCMOS) is about high 280 on 10 -> 16, medium 94 on 20 -> 9,
#: low 28 on 30 -> 3.7 (hard to detect); an EMCCD divides these by sqrt(2).
PRESETS: dict[str, dict[str, float]] = {
    "high": {"photons": 3000.0, "background": 10.0},
    "medium": {"photons": 1000.0, "background": 20.0},
    "low": {"photons": 300.0, "background": 30.0},
}

# Random streams: structure/blinking and per-frame camera noise never share a generator.
_STREAM_TRUTH = 0
_STREAM_NOISE = 1
_STREAM_BLINK = 2


def default_camera(camera_type: str, pixel_size: float = 100.0) -> Camera:
    """Typical camera numbers: sCMOS (0.5 e-/ADU, 1.5 e- read noise) or EMCCD (gain 100, 10 e-/ADU, 50 e-)."""
    if camera_type == "scmos":
        return Camera(offset=100.0, e_per_adu=0.5, qe=0.8, em_gain=1.0, read_noise=1.5, pixel_size=pixel_size)
    if camera_type == "emccd":
        return Camera(offset=100.0, e_per_adu=10.0, qe=0.95, em_gain=100.0, read_noise=50.0, pixel_size=pixel_size)
    raise SmlmdnError(f"unknown camera type {camera_type!r}", f"use one of {', '.join(CAMERA_TYPES)}")


@dataclass(frozen=True)
class SimulationParams:
    """Everything that defines a simulated movie. Units: nm, frames, detected photons.

    ``size`` is the frame width and height in pixels; ``density`` emitters per um^2 of field;
    ``photons`` mean detected photons per emitter per full on-frame, drawn per frame from the
    ``brightness`` distribution (``gamma`` or ``lognormal``) with coefficient of variation
    ``photons_cv``; ``background`` mean detected photons per pixel per frame (Gaussian illumination
    profile, or uniform with ``flat_background``); ``psf_sigma`` PSF standard deviation in nm;
    ``on_time``/``off_time`` mean dwell times in frames (so about ``active_density`` emitters per
    um^2 are on in a frame). ``camera`` overrides the default camera of ``camera_type`` (its pixel
    size is replaced by ``pixel_size``).
    """

    frames: int = 1000
    size: int = 64
    pixel_size: float = 100.0
    density: float = 20.0
    photons: float = 1000.0
    photons_cv: float = 0.3
    brightness: str = "gamma"
    background: float = 20.0
    flat_background: bool = False
    psf_sigma: float = 130.0
    on_time: float = 3.0
    off_time: float = 300.0
    bleach_cycles: float = 0.0
    structure: str = "filaments"
    n_filaments: int = 6
    persistence_nm: float = 3000.0
    grid_spacing_nm: float = 1500.0
    label_sigma_nm: float = 8.0
    camera_type: str = "scmos"
    camera: Camera | None = field(default=None, compare=True)
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the parameters; raise :class:`SmlmdnError` for a value of the wrong type or out of range."""

        def bad(name: str, rule: str, fix: str) -> SmlmdnError:
            return SmlmdnError(f"{name} must be {rule}, got {getattr(self, name)!r}", fix)

        for name in ("frames", "size", "n_filaments", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise bad(name, "an integer", f"give --{name.replace('_', '-')} as a whole number")
        if self.frames < 1:
            raise bad("frames", ">= 1", "give --frames 1 or more")
        if self.size < 4:
            raise bad("size", ">= 4 pixels", "give --size 4 or more (e.g. 64)")
        if self.seed < 0:
            raise bad("seed", ">= 0", "give a non-negative --seed")
        positive = ("pixel_size", "psf_sigma", "on_time", "off_time", "photons", "persistence_nm", "grid_spacing_nm")
        nonneg = ("density", "background", "photons_cv", "bleach_cycles", "label_sigma_nm")
        for name in positive + nonneg:
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise bad(name, "a number", f"give --{name.replace('_', '-')} as a number") from None
            if not math.isfinite(value) or value < 0 or (name in positive and value == 0):
                rule = "> 0" if name in positive else ">= 0"
                raise bad(
                    name,
                    f"finite and {rule}",
                    f"give a {'positive' if name in positive else 'non-negative'} --{name.replace('_', '-')}",
                )
        if self.bleach_cycles and self.bleach_cycles < 1:
            raise bad(
                "bleach_cycles", "0 (no bleaching) or >= 1", "give the mean number of on-periods before bleaching"
            )
        if self.structure not in STRUCTURES:
            raise bad("structure", f"one of {', '.join(STRUCTURES)}", f"use --structure {'|'.join(STRUCTURES)}")
        if self.brightness not in BRIGHTNESS:
            raise bad("brightness", f"one of {', '.join(BRIGHTNESS)}", f"use --brightness {'|'.join(BRIGHTNESS)}")
        if self.camera_type not in CAMERA_TYPES:
            raise bad("camera_type", f"one of {', '.join(CAMERA_TYPES)}", f"use --camera-type {'|'.join(CAMERA_TYPES)}")
        if self.n_filaments < 1:
            raise bad("n_filaments", ">= 1", "give at least one filament")
        if self.n_emitters > 10_000_000:
            raise bad("density", "low enough for <= 10 million emitters", "lower --density or --size")

    @classmethod
    def preset(cls, snr: str = "medium", **overrides: Any) -> SimulationParams:
        """Parameters of a signal-to-noise preset (``high``/``medium``/``low``, see :data:`PRESETS`), with overrides.

        Overrides that are ``None`` are ignored, so CLI options can be passed straight through.
        """
        if snr not in PRESETS:
            raise SmlmdnError(f"unknown SNR preset {snr!r}", f"use --snr {'|'.join(PRESETS)}")
        values: dict[str, Any] = dict(PRESETS[snr])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Movie shape (T, Y, X)."""
        return (self.frames, self.size, self.size)

    @property
    def field_nm(self) -> float:
        """Field of view side length in nm."""
        return self.size * self.pixel_size

    @property
    def n_emitters(self) -> int:
        """Number of emitters: density (per um^2) times field area (um^2), rounded."""
        return round(self.density * (self.field_nm / 1000.0) ** 2)

    @property
    def active_density(self) -> float:
        """Expected emitters per um^2 that are on (at least partly) in a frame, in the stationary state.

        An emitter's on-period of mean ``on_time`` touches ``on_time + 1`` frames on average (it
        rarely starts and ends on frame edges), once per ``on_time + off_time`` frames.
        """
        return self.density * (self.on_time + 1.0) / (self.on_time + self.off_time)

    def get_camera(self) -> Camera:
        """Return the camera used: ``camera`` if given (with this pixel size), else the default of ``camera_type``."""
        if self.camera is not None:
            return replace(self.camera, pixel_size=float(self.pixel_size))
        return default_camera(self.camera_type, float(self.pixel_size))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able) of all parameters, camera included."""
        d = asdict(self)
        d["camera"] = self.get_camera().to_dict()
        return d


@dataclass
class Simulation:
    """An in-memory simulated movie.

    ``movie`` uint16 ADU (T, Y, X), ``clean`` float32 expected photons incl. background (T, Y, X),
    ``truth`` DataFrame (frame, x_nm, y_nm, photons), ``camera``, ``background`` float32 (Y, X)
    expected background photons per pixel per frame, and ``params``.
    """

    movie: np.ndarray
    clean: np.ndarray
    truth: pd.DataFrame
    camera: Camera
    background: np.ndarray
    params: SimulationParams


# ------------------------------------------------------------------------------------- structures


def _worm_like_chain(
    rng: np.random.Generator, start: np.ndarray, angle: float, length: float, step: float, persistence: float
) -> np.ndarray:
    """Points (M, 2) in nm of a 2D worm-like chain: heading diffuses with variance step/persistence per step."""
    n = max(2, int(length / step) + 1)
    turns = rng.normal(0.0, math.sqrt(step / persistence), size=n - 1)
    heading = angle + np.concatenate([[0.0], np.cumsum(turns)])[:-1]
    steps = step * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    return start + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def emitter_positions(params: SimulationParams, rng: np.random.Generator) -> np.ndarray:
    """Emitter positions (N, 2) as (x_nm, y_nm), all inside the field [0, size * pixel_size)."""
    n = params.n_emitters
    w = params.field_nm
    if n == 0:
        return np.zeros((0, 2))
    if params.structure == "random":
        pos = rng.uniform(0.0, w, size=(n, 2))
    elif params.structure == "grid":
        spacing = params.grid_spacing_nm
        k = max(1, int(w // spacing))
        margin = (w - (k - 1) * spacing) / 2.0
        gx, gy = np.meshgrid(margin + spacing * np.arange(k), margin + spacing * np.arange(k))
        sites = np.stack([gx.ravel(), gy.ravel()], axis=1)
        pos = sites[np.arange(n) % len(sites)] + rng.normal(0.0, params.label_sigma_nm, size=(n, 2))
    else:  # filaments
        step = 10.0
        pieces = []
        for _ in range(params.n_filaments):
            # Start outside or near the edge of an enlarged field and head roughly across it.
            start = rng.uniform(-0.25 * w, 1.25 * w, size=2)
            to_centre = np.arctan2(w / 2 - start[1], w / 2 - start[0])
            angle = to_centre + rng.normal(0.0, 0.5)
            chain = _worm_like_chain(rng, start, angle, 2.5 * w, step, params.persistence_nm)
            inside = np.all((chain >= 0) & (chain < w), axis=1)
            if inside.sum() < 2:  # missed the field: run one through the centre instead
                chain = _worm_like_chain(
                    rng, np.array([w / 2, w / 2]), rng.uniform(0, 2 * np.pi), 1.0 * w, step, params.persistence_nm
                )
                inside = np.all((chain >= 0) & (chain < w), axis=1)
            pieces.append(chain[inside])
        points = np.concatenate(pieces)
        # Points are `step` apart along each chain: sampling them uniformly is uniform in arc length.
        idx = rng.integers(0, len(points), size=n)
        pos = points[idx] + rng.normal(0.0, params.label_sigma_nm, size=(n, 2))
    # Keep every emitter inside the field (label displacement may push a few across an edge).
    return np.clip(pos, 0.0, np.nextafter(w, 0.0))


# --------------------------------------------------------------------------------------- blinking

#: Frames per truth window. The blinking schedule is generated window by window from a state carried
#: across window boundaries; each window draws from its own generator seeded by (seed, window), so any
#: window can be regenerated alone from its start state. Part of the definition of a seed's movie.
TRUTH_WINDOW = 1024


@dataclass
class _BlinkState:
    """Per-emitter telegraph state at a time ``t``.

    ``on`` now, ``t_end`` (frames) when the current dwell ends, ``alive`` False once bleached.
    """

    on: np.ndarray
    t_end: np.ndarray
    alive: np.ndarray

    def copy(self) -> _BlinkState:
        return _BlinkState(self.on.copy(), self.t_end.copy(), self.alive.copy())


def _initial_state(params: SimulationParams, n: int, rng: np.random.Generator) -> _BlinkState:
    # Stationary start: on with probability equal to the duty cycle; residual dwell times are
    # exponential with the full means (memoryless), so the statistics are the same from frame 0.
    duty = params.on_time / (params.on_time + params.off_time)
    on = rng.random(n) < duty
    t_end = np.where(on, rng.exponential(params.on_time, n), rng.exponential(params.off_time, n))
    return _BlinkState(on, t_end, np.ones(n, dtype=bool))


def _window_periods(
    params: SimulationParams, state: _BlinkState, w0: float, w1: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advance ``state`` (in place) from ``w0`` to ``w1``.

    Returns the on-periods ``(emitter, start, end)`` inside ``[w0, w1)`` (times in frames).
    """
    on, t_end, alive = state.on, state.t_end, state.alive
    on_start = np.full(len(on), float(w0))
    p_bleach = 1.0 / params.bleach_cycles if params.bleach_cycles else 0.0
    out_e, out_s, out_t = [], [], []
    while True:
        ending = np.flatnonzero(alive & on & (t_end < w1))
        out_e.append(ending)
        out_s.append(on_start[ending])
        out_t.append(t_end[ending].copy())
        on[ending] = False
        if p_bleach:
            alive[ending] &= rng.random(len(ending)) >= p_bleach
        t_end[ending] += rng.exponential(params.off_time, len(ending))
        starting = np.flatnonzero(alive & ~on & (t_end < w1))
        on[starting] = True
        on_start[starting] = t_end[starting]
        t_end[starting] += rng.exponential(params.on_time, len(starting))
        if len(ending) == 0 and len(starting) == 0:
            break
    still = np.flatnonzero(alive & on)  # on across the window's end: clipped here, continued next window
    out_e.append(still)
    out_s.append(on_start[still])
    out_t.append(np.full(len(still), float(w1)))
    return np.concatenate(out_e), np.concatenate(out_s), np.concatenate(out_t)


def _periods_to_rows(
    params: SimulationParams, e: np.ndarray, s: np.ndarray, end: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On-periods -> one row per emitter per frame: ``(frame, emitter, photons)`` sorted by frame, emitter."""
    first = np.floor(s).astype(np.int64)
    last = np.ceil(end).astype(np.int64)  # exclusive
    counts = np.maximum(last - first, 0)
    rows = np.repeat(np.arange(len(e)), counts)
    frame = first[rows] + (np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts))
    covered = np.minimum(end[rows], frame + 1.0) - np.maximum(s[rows], frame.astype(np.float64))
    emitter = e[rows]
    keep = covered > 0
    frame, covered, emitter = frame[keep], covered[keep], emitter[keep]
    if params.photons_cv > 0 and params.brightness == "lognormal":
        # log-brightness ~ N(mu, s^2) with mean exp(mu + s^2/2) = photons and CV sqrt(exp(s^2) - 1) = photons_cv
        s2 = math.log1p(params.photons_cv**2)
        brightness = rng.lognormal(math.log(params.photons) - 0.5 * s2, math.sqrt(s2), size=len(frame))
    elif params.photons_cv > 0:
        k = 1.0 / params.photons_cv**2
        brightness = rng.gamma(k, params.photons / k, size=len(frame))
    else:
        brightness = np.full(len(frame), float(params.photons))
    photons = brightness * covered
    # An emitter that switches off and on again within one frame gets one row with the sum.
    order = np.lexsort((emitter, frame))
    frame, emitter, photons = frame[order], emitter[order], photons[order]
    if len(frame):
        starts = np.flatnonzero(np.concatenate([[True], (np.diff(frame) != 0) | (np.diff(emitter) != 0)]))
        photons = np.add.reduceat(photons, starts)
        frame, emitter = frame[starts], emitter[starts]
    return frame, emitter, photons


class GroundTruth:
    """Emitter positions plus the blinking schedule, generated window by window with flat memory.

    ``positions`` (N, 2) nm; :meth:`window` returns the truth rows of one :data:`TRUTH_WINDOW` of
    frames; :meth:`frames` the rows of any frame range; :meth:`table` the whole table (small movies).
    Only the per-window start states (N bools and floats per window) are kept in memory.
    """

    def __init__(self, params: SimulationParams) -> None:
        self.params = params
        rng = np.random.default_rng([params.seed, _STREAM_TRUTH])
        self.positions = emitter_positions(params, rng)
        self.n_windows = -(-params.frames // TRUTH_WINDOW)
        state = _initial_state(params, len(self.positions), rng)
        self._states = []
        for k in range(self.n_windows):  # cheap: advances the telegraph process only
            self._states.append(state.copy())
            w0, w1 = k * TRUTH_WINDOW, min(params.frames, (k + 1) * TRUTH_WINDOW)
            _window_periods(params, state, w0, w1, np.random.default_rng([params.seed, _STREAM_BLINK, k]))
        self._cache: dict[int, pd.DataFrame] = {}
        self._lock = threading.Lock()

    def window(self, k: int) -> pd.DataFrame:
        """Truth rows (frame, x_nm, y_nm, photons, emitter) of window ``k``, sorted by frame."""
        with self._lock:
            if k in self._cache:
                return self._cache[k]
        p = self.params
        rng = np.random.default_rng([p.seed, _STREAM_BLINK, k])
        w0, w1 = k * TRUTH_WINDOW, min(p.frames, (k + 1) * TRUTH_WINDOW)
        e, s, end = _window_periods(p, self._states[k].copy(), w0, w1, rng)
        frame, emitter, photons = _periods_to_rows(p, e, s, end, rng)
        df = pd.DataFrame(
            {
                "frame": frame.astype(np.int64),
                "x_nm": self.positions[emitter, 0] if len(emitter) else np.zeros(0),
                "y_nm": self.positions[emitter, 1] if len(emitter) else np.zeros(0),
                "photons": photons,
                "emitter": emitter.astype(np.int64),
            }
        )
        with self._lock:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[k] = df
        return df

    def frames(self, f0: int, f1: int) -> pd.DataFrame:
        """Truth rows of frames [f0, f1)."""
        parts = []
        for k in range(f0 // TRUTH_WINDOW, (max(f1, f0 + 1) - 1) // TRUTH_WINDOW + 1):
            df = self.window(k)
            frame = df["frame"].to_numpy()
            a, b = np.searchsorted(frame, [f0, f1])
            parts.append(df.iloc[a:b])
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)

    def table(self) -> pd.DataFrame:
        """Return the whole truth table (in memory: for small movies and tests)."""
        return pd.concat([self.window(k) for k in range(self.n_windows)], ignore_index=True)


def make_truth(params: SimulationParams) -> pd.DataFrame:
    """Ground truth (one row per emitter per on-frame): frame, x_nm, y_nm, photons; sorted by frame.

    Also carries an ``emitter`` column (emitter id) that is not written to truth.csv.
    """
    return GroundTruth(params).table()


# ---------------------------------------------------------------------------------------- imaging


def background_map(params: SimulationParams) -> np.ndarray:
    """Return the expected background photons per pixel per frame (Y, X) float64 with mean ``background``."""
    n = params.size
    if params.flat_background:
        return np.full((n, n), float(params.background))
    c = (np.arange(n) + 0.5) - n / 2.0
    # Gaussian beam: 1 at the centre, 0.6 at the middle of each edge (distance n/2).
    w2 = (n / 2.0) ** 2 / (2.0 * math.log(1 / 0.6))
    profile = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2.0 * w2))
    return params.background * profile / profile.mean()


class _Renderer:
    """Renders clean frames and their camera noise for any frame range from the ground truth."""

    def __init__(self, params: SimulationParams, truth: GroundTruth) -> None:
        self.params = params
        self.truth = truth
        self.camera = params.get_camera()
        self.background = background_map(params)
        self.sigma_px = params.psf_sigma / params.pixel_size

    def clean(self, f0: int, f1: int) -> np.ndarray:
        """Render the expected photons per pixel (f1 - f0, Y, X) float32 for frames [f0, f1)."""
        n = self.params.size
        rows = self.truth.frames(f0, f1)
        frame = rows["frame"].to_numpy()
        x_px = rows["x_nm"].to_numpy() / self.params.pixel_size
        y_px = rows["y_nm"].to_numpy() / self.params.pixel_size
        photons = rows["photons"].to_numpy()
        out = np.empty((f1 - f0, n, n), dtype=np.float32)
        bounds = np.searchsorted(frame, np.arange(f0, f1 + 1))
        for i in range(f1 - f0):
            a, b = bounds[i], bounds[i + 1]
            out[i] = self.background + render_spots(x_px[a:b], y_px[a:b], photons[a:b], self.sigma_px, (n, n))
        return out

    def movie(self, f0: int, f1: int) -> np.ndarray:
        """Camera ADU (f1 - f0, Y, X) uint16 for frames [f0, f1); frame f's noise is seeded by (seed, f)."""
        clean = self.clean(f0, f1)
        out = np.empty(clean.shape, dtype=np.uint16)

        def noisy(i: int) -> None:
            rng = np.random.default_rng([self.params.seed, _STREAM_NOISE, f0 + i])
            out[i] = camera_noise(clean[i], self.camera, rng)

        # One generator per frame: frames are independent, so threads (numpy's samplers release
        # the GIL) give the same pixels as a loop, in any order.
        workers = _noise_workers(f1 - f0)
        if workers < 2:
            for i in range(f1 - f0):
                noisy(i)
            return out
        # a pool per block, shut down when the block is done: a few thread starts per block (each
        # block is up to BLOCK_BYTES of Poisson draws) buy no process-wide state to clean up
        with ThreadPoolExecutor(workers, thread_name_prefix="smlmdn-noise") as pool:
            list(pool.map(noisy, range(f1 - f0)))
        return out


def _noise_workers(frames: int) -> int:
    """Threads for the per-frame noise of ``frames`` frames: up to 8, never more than cores or frames."""
    return min(8, os.cpu_count() or 1, frames)


def camera_noise(clean: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """One noisy uint16 ADU image from expected photoelectrons ``clean`` (any shape).

    sCMOS/CCD (``em_gain == 1``): Poisson + Gaussian read noise. EMCCD: Poisson, Gamma(n, em_gain)
    gain register, + read noise. Then ``electrons / e_per_adu + offset``, rounded, clipped to uint16.
    """
    electrons = rng.poisson(np.asarray(clean, dtype=np.float64)).astype(np.float64)
    if camera.is_emccd:
        positive = electrons > 0
        amplified = np.zeros_like(electrons)
        amplified[positive] = rng.gamma(electrons[positive], camera.em_gain)
        electrons = amplified
    if camera.read_noise > 0:
        electrons += rng.normal(0.0, camera.read_noise, size=electrons.shape)
    adu = np.rint(electrons / camera.e_per_adu + camera.offset)
    return np.clip(adu, 0, 65535).astype(np.uint16)


def _lazy(render, shape: tuple[int, int, int], dtype: Any, block: int) -> da.Array:
    blocks = []
    for f0 in range(0, shape[0], block):
        f1 = min(shape[0], f0 + block)
        task = dask.delayed(render, pure=False)(f0, f1)
        blocks.append(da.from_delayed(task, shape=(f1 - f0, *shape[1:]), dtype=dtype))
    return da.concatenate(blocks, axis=0)


def lazy_simulation(
    params: SimulationParams, block_frames: int | None = None
) -> tuple[da.Array, da.Array, GroundTruth, Camera]:
    """Build the movie (uint16 ADU) and clean (float32 photons) as lazy dask arrays (T, Y, X).

    Also returns the ground truth (generated lazily, window by window) and the camera. Pixels are
    rendered when computed.
    """
    truth = GroundTruth(params)
    renderer = _Renderer(params, truth)
    block = block_frames or frames_per_block((params.size, params.size), 4)
    movie = _lazy(renderer.movie, params.shape, np.uint16, block)
    clean = _lazy(renderer.clean, params.shape, np.float32, block)
    return movie, clean, truth, renderer.camera


def simulate(params: SimulationParams) -> Simulation:
    """Simulate a whole movie in memory (for tests and small data; see :func:`simulate_to_dir` for big ones)."""
    truth = GroundTruth(params)
    renderer = _Renderer(params, truth)
    return Simulation(
        movie=renderer.movie(0, params.frames),
        clean=renderer.clean(0, params.frames),
        truth=truth.table()[TRUTH_COLUMNS],
        camera=renderer.camera,
        background=renderer.background.astype(np.float32),
        params=params,
    )


def write_truth_csv(truth: GroundTruth, path: str | Path, overwrite: bool = False) -> int:
    """Write ``frame,x_nm,y_nm,photons`` window by window (atomically); returns the number of rows."""
    n = 0
    with atomic_file(path, overwrite) as tmp, open(tmp, "w", newline="") as f:
        f.write(",".join(TRUTH_COLUMNS) + "\n")
        for k in range(truth.n_windows):
            df = truth.window(k)[TRUTH_COLUMNS]
            df.to_csv(f, header=False, index=False, float_format="%.4f")
            n += len(df)
    return n


def simulate_to_dir(
    params: SimulationParams,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    block_frames: int | None = None,
) -> dict[str, Path]:
    """Write ``movie.tif`` (uint16 ADU), ``clean.tif`` (float32 photons), ``truth.csv`` and ``camera.json``.

    Everything is generated and written block by block: memory stays flat in the number of frames.
    The files are written into a staging folder ``OUT_DIR/.simulate.partial`` and moved into place
    together at the end, so an interrupted run leaves no partial set behind. Refuses existing
    outputs unless ``overwrite``. Returns ``{"movie"|"clean"|"truth"|"camera": path}``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SmlmdnError(f"{out} exists and is not a folder", "give a folder name for the simulation outputs")
    paths = {key: out / name for key, name in OUTPUT_FILES.items()}
    for p in paths.values():  # refuse before writing anything
        check_output(p, overwrite)
    movie, clean, truth, camera = lazy_simulation(params, block_frames)
    sim_attrs = params.to_dict()
    with staging_folder(out / ".simulate.partial") as staging:
        staged = {key: staging / name for key, name in OUTPUT_FILES.items()}
        save_camera(camera, staged["camera"])
        write_truth_csv(truth, staged["truth"])
        write_movie(
            movie,
            staged["movie"],
            pixel_size=params.pixel_size,
            progress=progress,
            description="simulating movie",
            attrs={"units": "adu", "camera": camera.to_dict(), "simulation": sim_attrs},
        )
        write_movie(
            clean,
            staged["clean"],
            pixel_size=params.pixel_size,
            progress=progress,
            description="writing clean",
            attrs={"units": "photons", "simulation": sim_attrs},
        )
        for key in OUTPUT_FILES:
            commit_output(staged[key], paths[key])
    return paths
