"""Training the blind-spot denoiser on a movie: settings, schedule, losses, checkpoints, safety nets.

Data: random crops of a pool of frames and fixed validation crops of held-out frames
(:mod:`smlmdn.denoise.crops`); the pool is refreshed every ``refresh_every`` steps, so memory is
bounded whatever the movie length.

Stopping rule: ``steps`` and/or ``time_budget`` (seconds). With only a time budget (``steps=None``)
training runs until the budget is spent, however many steps that is: a busy CPU gives fewer steps,
the same schedule. With neither, ``DEFAULT_STEPS``. With both, whichever comes first.

Optimisation: Adam, linear warm-up (5 %) then cosine decay to 2 % of ``lr``, where progress is the
fraction of the stopping rule done, ``max(step / steps, elapsed / time_budget)`` (elapsed time alone
when the budget is the only rule); gradient-norm clipping at 1; loss = exact
negative-binomial NLL in float64 (or the Gaussian NLL for the comparison head; with clean targets,
the squared error of the prior mean: the supervised bound). Every
``val_every`` steps the validation loss is measured; a new best is kept (and checkpointed
atomically when a checkpoint path is given). A non-finite training loss, or a validation loss that
jumps above the best by more than ``max(0.25, 10 %)`` nats/pixel, restores the last good weights,
halves the learning rate and warns; after ``max_restores`` such events training stops with the last
good weights. Early stopping after ``patience`` validations without improvement, only when steps are
the stopping rule (a time budget is meant to be used, and the decaying learning rate keeps improving
the net late in the schedule).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch

from .. import __version__
from .. import device as device_rule
from ..camera import Camera, check_camera_against_data, movie_to_photons
from ..errors import SmlmdnError
from ..io import atomic_file, check_output, open_movie, provenance
from ..shapes import check_tyx
from . import likelihood as L
from .crops import Sampler, Windows, normalisation, pool_size, split_frames, validation_crops
from .model_file import DenoiseModel
from .network import CONTEXT_MODES, BlindSpotNet, NetConfig

CHECKPOINT_FORMAT = "smlmdn-checkpoint"
#: steps when neither ``steps`` nor ``time_budget`` is given
DEFAULT_STEPS = 2000


@dataclass(frozen=True)
class FitConfig:
    """Training settings, validated on construction; see the module docstring.

    ``time_budget`` in seconds (None: no limit); ``steps=None``: train until ``time_budget`` when one
    is given, else :data:`DEFAULT_STEPS`. ``patch``: training crop side in px (None: see
    :meth:`resolved_patch`); ``threads``: torch CPU threads (None: torch's choice). Checks that need
    the movie (crop vs frame size, frames vs context) are :func:`validate`'s.

    Raises
    ------
    SmlmdnError
        A setting that cannot train (unknown head or context mode, a count < 1, a time budget or
        learning rate that is not a positive number, ...), with the option to change.
    """

    steps: int | None = None
    time_budget: float | None = None
    context: int = 1
    context_mode: str = "stem"
    width: int = 16
    depth: int = 3
    head: str = "gamma-poisson"
    blind: bool = True  # False: the non-blind network of the supervised bound (needs clean targets)
    patch: int | None = None  # None: 64 px, or the largest multiple of 2**depth that fits the frame
    batch: int = 4
    lr: float = 6e-3  # chosen by measurement: benchmarks/RESULTS.md, "Denoiser: learning rate"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    val_every: int = 100
    val_crops: int = 48
    patience: int = 8
    pool_frames: int = 256
    refresh_every: int = 200
    clip: float = 1.0
    max_restores: int = 3

    def __post_init__(self) -> None:
        """Check every setting that does not depend on the movie (raises :class:`SmlmdnError`)."""
        if self.head not in L.HEADS:
            raise SmlmdnError(f"unknown head {self.head!r}", f"use --head {' or --head '.join(L.HEADS)}")
        for name in ("steps", "batch", "width", "depth", "val_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SmlmdnError(f"--{name.replace('_', '-')} must be >= 1, got {value}", f"give a positive --{name}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise SmlmdnError(f"--time-budget must be > 0 seconds, got {self.time_budget}", "e.g. --time-budget 300")
        if self.context_mode not in CONTEXT_MODES:
            raise SmlmdnError(f"unknown context mode {self.context_mode!r}", f"use {' or '.join(CONTEXT_MODES)}")
        if self.context < 0:
            raise SmlmdnError(f"--context must be >= 0, got {self.context}", "use --context 0 (single frames) or more")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SmlmdnError(f"--lr must be a positive number, got {self.lr}", "use e.g. --lr 1e-3")
        device_rule.check_device_name(self.device)
        if self.threads is not None and self.threads < 1:
            raise SmlmdnError(f"--threads must be >= 1, got {self.threads}", "e.g. --threads 2")
        for name in ("val_crops", "pool_frames", "refresh_every"):
            if getattr(self, name) < 1:
                raise SmlmdnError(f"{name} must be >= 1, got {getattr(self, name)}", f"give a positive {name}")
        if self.patience < 0 or self.max_restores < 0:
            raise SmlmdnError(
                f"patience and max_restores must be >= 0, got {self.patience} and {self.max_restores}",
                "give 0 or more",
            )
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise SmlmdnError(f"clip must be a positive gradient norm, got {self.clip}", "use e.g. clip=1.0")

    def resolved_patch(self, frame_shape: tuple[int, int]) -> int:
        """Return the training crop side: ``patch``, or by default 64 px shrunk to fit the frame (a multiple of 2**depth)."""
        if self.patch is not None:
            return int(self.patch)
        mult = 2**self.depth
        return max(2 * mult, min(64, (min(frame_shape) // mult) * mult))

    def net_config(self) -> NetConfig:
        """Return the network configuration these settings train."""
        return NetConfig(
            width=self.width,
            depth=self.depth,
            context=self.context,
            head=self.head,
            context_mode=self.context_mode,
            blind=self.blind,
        )

    @property
    def max_steps(self) -> int | None:
        """The step limit: ``steps``; None when the time budget alone stops training."""
        if self.steps is not None:
            return int(self.steps)
        return None if self.time_budget else DEFAULT_STEPS


def resolve_device(device: str = "auto") -> tuple[torch.device, str]:
    """Resolve ``auto|cpu|cuda`` to a torch device and a sentence saying which one and why.

    Follows the rule of :func:`smlmdn.device.resolve_device` (and raises its :class:`SmlmdnError`).
    """
    if device_rule.resolve_device(device) == "cuda":
        return torch.device("cuda"), f"running on GPU: {torch.cuda.get_device_name(0)}"
    why = "asked for" if (device or "auto").lower() == "cpu" else "no CUDA device found"
    return torch.device("cpu"), f"running on CPU ({torch.get_num_threads()} threads): {why}"


def data_hash(photons: da.Array) -> str:
    """Short hash of a movie's shape, dtype and three sample frames (first, middle, last)."""
    t = photons.shape[0]
    idx = sorted({0, t // 2, t - 1})
    h = hashlib.sha256(repr((tuple(photons.shape), str(photons.dtype))).encode())
    h.update(
        np.ascontiguousarray(
            np.asarray(photons[idx].compute() if isinstance(photons, da.Array) else photons[idx])
        ).tobytes()
    )
    return h.hexdigest()[:16]


def check_movie(shape: tuple[int, int, int], config: FitConfig) -> None:
    """Refuse movies too small for ``config`` (frame size vs patch; frames vs context)."""
    t, y, x = shape
    mult = 2**config.depth
    patch = config.resolved_patch((y, x))
    if patch % mult or patch < 2 * mult:
        raise SmlmdnError(
            f"--patch {patch} must be a multiple of {mult} and at least {2 * mult} for --depth {config.depth}",
            f"use --patch {max(2 * mult, (patch // mult) * mult)}",
        )
    if min(y, x) < patch:
        raise SmlmdnError(
            f"movie frames are {y} x {x} px, smaller than the {patch} px training patch; "
            f"the minimum frame size is {patch} x {patch} px (or {2 * mult} x {2 * mult} with --patch {2 * mult})",
            f"use a smaller --patch (>= {2 * mult}, a multiple of {mult}) or a larger field of view",
        )
    need = 2 * config.context + 2
    if t < need:
        raise SmlmdnError(
            f"the movie has {t} frames; --context {config.context} needs at least {need} "
            f"(2 x {config.context} neighbours + one training and one validation frame)",
            "use a smaller --context (0 uses single frames) or a longer movie",
        )


def _lr_factor(frac: float, warm: float = 0.05, floor: float = 0.02) -> float:
    """Learning-rate multiplier at ``frac`` (0..1) of the stopping rule: linear warm-up, then cosine decay to ``floor``."""
    if frac < warm:
        return max(frac / warm, 0.01)
    f = min(1.0, (frac - warm) / (1 - warm))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * f))


#: A training loss: ``(inputs, p0, p1, clean) -> scalar``; inputs (n, 2K+1, P, P) in model counts, the
#: prior parameters ``p0, p1`` (n, P, P) in model counts, clean targets (n, P, P) or None.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


#: ``snapshot(step, elapsed_s, weights)``: called with a copy of the current weights
Snapshot = Callable[[int, float, dict[str, torch.Tensor]], None]


def likelihood_loss(head: str, context: int) -> LossFn:
    """Compute the self-supervised loss: mean NLL (nats/pixel) of each centre frame under the ``head`` prior."""

    def loss(x: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor, clean: torch.Tensor | None) -> torch.Tensor:
        return L.nll(head, x[:, context], p0, p1).mean()

    return loss


def clean_target_loss(scale: float) -> LossFn:
    """Compute the supervised upper bound: mean squared error of the prior mean against clean counts, in units of ``scale``."""

    def loss(x: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor, clean: torch.Tensor | None) -> torch.Tensor:
        assert clean is not None, "the clean-target loss needs clean targets"
        return (((p0.double() - clean.double()) / scale) ** 2).mean()

    return loss


def _prior(
    net: BlindSpotNet, x: torch.Tensor, norm: dict[str, float], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior parameters (n, P, P) x 2 in model counts for windows ``x`` (n, 2K+1, P, P) of model counts."""
    level, scale = norm["level"], norm["scale"]
    xin = (x - level) / scale
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            raw = net(xin)
    else:
        raw = net(xin)
    return net.params(raw, level, scale)


@dataclass
class TrainState:
    """Where training stands; saved in checkpoints as a plain dict (:func:`dataclasses.asdict`).

    ``elapsed`` in seconds of training; ``history`` rows are ``[step, train loss, validation loss,
    seconds]``; ``lr_mult`` is the learning-rate factor left by restores (halved by each);
    ``stopped`` says why training ended ("steps", "time budget", "early stopping", "diverged").
    """

    step: int = 0
    elapsed: float = 0.0
    best_val: float = math.inf
    best_step: int = 0
    lr_mult: float = 1.0
    restores: int = 0
    since_best: int = 0
    history: list[list[float]] = field(default_factory=list)
    stopped: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """Return the state saved in a checkpoint (keys it lacks keep their defaults)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def _with_overrides(config: FitConfig | None, overrides: dict[str, Any]) -> FitConfig:
    """Return ``config`` (default :class:`FitConfig`) with ``overrides``, validated; raises TypeError on an unknown field."""
    config = config if config is not None else FitConfig()
    names = {f.name for f in fields(FitConfig)}
    unknown = [key for key in overrides if key not in names]
    if unknown:
        raise TypeError(f"unknown fit option {unknown[0]}")
    return replace(config, **overrides) if overrides else config


def validate(config: FitConfig, movie_shape: tuple[int, ...], supervised: bool = False) -> None:
    """Raise :class:`SmlmdnError` unless ``config`` can train on a movie of ``movie_shape`` (T, Y, X).

    ``config`` checked its own settings when it was made; this checks them against the movie (shape,
    frame size vs crop, frames vs context). ``supervised``: clean targets are given (a non-blind
    network needs them).
    """
    if not config.blind and not supervised:
        raise SmlmdnError("a non-blind network sees the pixel it predicts", "train it on clean targets (clean=...)")
    check_tyx(movie_shape)
    check_movie((movie_shape[0], movie_shape[1], movie_shape[2]), config)


def _console_log(progress: bool) -> Callable[[str], None]:
    """One-line messages to the stderr console when ``progress``, else nowhere."""
    if not progress:
        return lambda msg: None
    from ..progress import console

    err = console()
    return lambda msg: err.print(msg, highlight=False, markup=False)


class _Trainer:
    """One training run: network, optimiser, crops and :class:`TrainState`; one method per event.

    Construction seeds the generators, builds the network, resumes from ``checkpoint`` when
    ``resume``, draws the validation crops and chooses the loss (``clean`` given: the clean-target
    MSE, else the likelihood), in that order (the order fixes the random streams).
    """

    def __init__(
        self,
        photons: da.Array,
        camera: Camera,
        config: FitConfig,
        device: torch.device,
        log: Callable[[str], None],
        clean: da.Array | None = None,
        checkpoint: str | Path | None = None,
        resume: bool = False,
    ) -> None:
        self.config, self.device, self.log = config, device, log
        self.movie_shape = tuple(photons.shape)
        frame_shape = (int(photons.shape[1]), int(photons.shape[2]))
        self.shift, self.factor = L.count_transform(camera.excess_noise, camera.read_noise_photons)
        self.norm = normalisation(photons, self.shift, self.factor)
        self.dhash = data_hash(photons)
        self.net_cfg = config.net_config()
        self.train_frames, val_frames = split_frames(photons.shape[0], config.context)
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.net = BlindSpotNet(self.net_cfg).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.state = TrainState()
        self.best_weights = copy.deepcopy(self.net.state_dict())
        self.ckpt_path = Path(checkpoint) if checkpoint else None
        if resume:
            self.resume()
        patch = int(config.resolved_patch(frame_shape))
        self.windows = Windows(photons, clean, config.context, self.shift, self.factor)
        self.vx, self.vc = validation_crops(
            self.windows, val_frames, frame_shape, config.seed, patch, config.depth, config.val_crops
        )
        self.sampler = Sampler(self.rng, patch)
        self.pool_n = pool_size(len(self.train_frames), config.pool_frames, config.context, frame_shape)
        self.supervised = clean is not None
        self.loss = (
            clean_target_loss(self.norm["scale"]) if self.supervised else likelihood_loss(config.head, config.context)
        )
        self.max_steps = config.max_steps
        self.last_loss = float("nan")
        self.start = time.perf_counter()

    def resume(self) -> None:
        """Continue from the checkpoint: weights, optimiser, state, random streams, normalisation."""
        path = self.ckpt_path
        if path is None or not path.is_file():
            raise SmlmdnError(f"no checkpoint to resume from ({path})", "run without --resume to start training")
        ck = _load_checkpoint(path)
        if ck["net"] != self.net_cfg.to_dict() or ck["data_hash"] != self.dhash:
            raise SmlmdnError(
                f"checkpoint {path} was made for another movie or network settings",
                "rerun with the same movie and options, or without --resume (with --overwrite) to start again",
            )
        self.net.load_state_dict(ck["weights"])
        self.best_weights = ck["best_weights"]
        self.opt.load_state_dict(ck["optimizer"])
        self.state = TrainState.from_dict(ck["state"])
        self.rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"])
        self.norm = ck["norm"]
        self.log(f"resuming from {path} at step {self.state.step} (best validation loss {self.state.best_val:.4f})")

    def save_checkpoint(self) -> None:
        """Write the training state atomically to the checkpoint path (if any); ``state`` as a plain dict."""
        if self.ckpt_path is None:
            return
        data = {
            "format": CHECKPOINT_FORMAT,
            "smlmdn_version": __version__,
            "net": self.net_cfg.to_dict(),
            "data_hash": self.dhash,
            "weights": self.net.state_dict(),
            "best_weights": self.best_weights,
            "optimizer": self.opt.state_dict(),
            "state": asdict(self.state),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "norm": self.norm,
        }
        with atomic_file(self.ckpt_path, overwrite=True) as tmp:
            torch.save(data, tmp)

    def refresh(self) -> None:
        """Draw a new pool of training frames for the sampler."""
        sel = np.sort(self.rng.choice(self.train_frames, size=self.pool_n, replace=False))
        self.sampler.pool, self.sampler.clean = self.windows.read(sel)

    def loss_on(self, x: np.ndarray, clean: np.ndarray | None) -> torch.Tensor:
        """Compute the loss of the network on crops ``x`` (n, 2K+1, P, P) (and clean crops (n, P, P))."""
        xt = torch.from_numpy(x).to(self.device)
        ct = torch.from_numpy(clean).to(self.device) if clean is not None else None
        p0, p1 = _prior(self.net, xt, self.norm, self.device)
        return self.loss(xt, p0, p1, ct)

    def validation_loss(self) -> float:
        """Mean loss over the fixed validation crops (nats/pixel for the likelihood)."""
        self.net.eval()
        total, n = 0.0, self.config.batch * 2
        with torch.no_grad():
            for i in range(0, len(self.vx), n):
                cb = self.vc[i : i + n] if self.vc is not None else None
                total += float(self.loss_on(self.vx[i : i + n], cb)) * len(self.vx[i : i + n])
        self.net.train()
        return total / len(self.vx)

    def restore(self, reason: str) -> bool:
        """Go back to the last good weights with half the learning rate; True when that was one time too many."""
        s = self.state
        self.net.load_state_dict(self.best_weights)
        s.restores += 1
        s.lr_mult *= 0.5
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr * s.lr_mult)
        self.log(
            f"[yellow]warning:[/yellow] {reason} at step {s.step}: went back to the last good weights "
            f"(step {s.best_step}) and halved the learning rate"
        )
        if s.restores > self.config.max_restores:
            s.stopped = "diverged"
            return True
        return False

    def fraction(self) -> float:
        """Progress through the stopping rule (0..1): ``max(step / steps, elapsed / time_budget)``."""
        s, budget = self.state, self.config.time_budget
        frac = s.step / self.max_steps if self.max_steps else 0.0
        return max(frac, s.elapsed / budget) if budget else frac

    def finished(self, frac: float) -> bool:
        """Return True (and set ``stopped``) when the step limit or the time budget is reached."""
        s = self.state
        hit_steps = bool(self.max_steps) and s.step >= (self.max_steps or 0)
        if hit_steps or frac >= 1.0:
            s.stopped = s.stopped or ("steps" if hit_steps else "time budget")
            return True
        return False

    def step(self, frac: float) -> tuple[dict[str, float] | None, bool]:
        """One optimiser step at ``frac`` of the schedule, and a validation when due.

        Returns the progress fields (None: the step did not count) and whether training stops.
        """
        s, cfg = self.state, self.config
        if s.step and s.step % cfg.refresh_every == 0 and self.pool_n < len(self.train_frames):
            self.refresh()
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * s.lr_mult * _lr_factor(frac)
        loss = self.loss_on(*self.sampler.crops(cfg.batch))
        s.step += 1
        if not torch.isfinite(loss):
            return None, self.restore("the training loss became NaN/Inf")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clip)
        self.opt.step()
        self.last_loss = float(loss.detach())
        if s.step % cfg.val_every == 0 or (self.max_steps and s.step >= self.max_steps):
            return self.validation_step()
        return {"loss": self.last_loss}, False

    def validation_step(self) -> tuple[dict[str, float] | None, bool]:
        """Validate, keep a new best, restore on a jump, checkpoint, stop early; as :meth:`step` returns."""
        s = self.state
        val = self.record_validation()
        jump = max(0.25, 0.1 * abs(s.best_val)) if math.isfinite(s.best_val) else math.inf
        if not math.isfinite(val) or val > s.best_val + jump:
            if self.restore(f"the validation loss jumped to {val:.4g} (best {s.best_val:.4g})"):
                return None, True
        elif val < s.best_val:
            self.keep_best(val)
            s.since_best = 0
        else:
            s.since_best += 1
        self.save_checkpoint()
        stop = bool(self.max_steps) and not self.config.time_budget and s.since_best >= self.config.patience
        if stop:
            s.stopped = "early stopping"
        return {"loss": self.last_loss, "val": val}, stop

    def record_validation(self) -> float:
        """Measure the validation loss and append ``[step, train loss, validation loss, seconds]`` to the history."""
        val = self.validation_loss()
        self.state.history.append([self.state.step, self.last_loss, val, round(time.perf_counter() - self.start, 2)])
        return val

    def keep_best(self, val: float) -> None:
        """Record the current weights as the best so far, with validation loss ``val``."""
        self.state.best_val, self.state.best_step = val, self.state.step
        self.best_weights = copy.deepcopy(self.net.state_dict())

    def run(self, progress: bool, snapshot: Snapshot | None, snapshot_at: tuple[float, ...]) -> None:
        """Train until the stopping rule; on Ctrl-C checkpoint and re-raise."""
        s = self.state
        marks = sorted(float(m) for m in snapshot_at)
        self.refresh()
        self.start = time.perf_counter() - s.elapsed
        self.net.train()
        try:
            with _track(self.config, s.step, s.elapsed, progress) as advance:
                while True:
                    s.elapsed = time.perf_counter() - self.start
                    frac = self.fraction()
                    while snapshot is not None and marks and s.elapsed >= marks[0]:
                        marks.pop(0)
                        snapshot(s.step, s.elapsed, copy.deepcopy(self.net.state_dict()))
                    if self.finished(frac):
                        break
                    shown, stop = self.step(frac)
                    if shown is not None:
                        advance(1 if self.max_steps else time.perf_counter() - self.start - s.elapsed, **shown)
                    if stop:
                        break
        except KeyboardInterrupt:
            s.elapsed = time.perf_counter() - self.start
            self.save_checkpoint()
            raise

    def finish(self, snapshot: Snapshot | None) -> None:
        """Validate the last weights unless just done, hand the last snapshot, log the outcome.

        Raises :class:`SmlmdnError` when no validation was ever finite.
        """
        s = self.state
        if not math.isfinite(s.best_val) or s.history == [] or s.history[-1][0] != s.step:
            val = self.record_validation()
            if math.isfinite(val) and val < s.best_val:
                self.keep_best(val)
        if snapshot is not None:
            snapshot(s.step, time.perf_counter() - self.start, copy.deepcopy(self.net.state_dict()))
        if not math.isfinite(s.best_val):
            raise SmlmdnError(
                "training diverged before any good validation",
                "lower --lr (e.g. --lr 3e-4) and check the camera numbers",
            )
        if s.stopped == "diverged":
            self.log(
                "[yellow]warning:[/yellow] training kept diverging; stopped and kept the last good weights "
                f"(step {s.best_step})"
            )

    def model(self, camera: Camera) -> DenoiseModel:
        """Return the trained model (best weights on the CPU) with its training record; logs the summary line."""
        s = self.state
        elapsed = time.perf_counter() - self.start
        self.log(
            f"trained {s.step} steps in {elapsed:.0f} s ({s.stopped}); best validation loss "
            f"{s.best_val:.4f} at step {s.best_step}"
        )
        training = {
            "steps": s.step,
            "best_step": s.best_step,
            "best_val_loss": s.best_val,
            "final_train_loss": self.last_loss,
            "stopped": s.stopped,
            "seconds": round(elapsed, 2),
            "steps_per_second": round(s.step / max(elapsed, 1e-9), 3),
            "history": s.history,
            "data_hash": self.dhash,
            "movie_shape": list(self.movie_shape),
            "device": str(self.device),
            "restores": s.restores,
            "supervised": self.supervised,
            "config": asdict(self.config),
            **provenance(),
        }
        return DenoiseModel(
            net=self.net_cfg,
            state_dict={name: v.detach().cpu().clone() for name, v in self.best_weights.items()},
            camera=camera,
            transform={"shift": self.shift, "factor": self.factor},
            norm=self.norm,
            training=training,
        )


def fit_model(
    photons: da.Array,
    camera: Camera,
    config: FitConfig | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    clean: da.Array | None = None,
    snapshot: Snapshot | None = None,
    snapshot_at: tuple[float, ...] = (),
    **overrides: Any,
) -> DenoiseModel:
    """Train a blind-spot denoiser on ``photons`` (T, Y, X) float32 detected photons; return the model.

    ``config`` (or keyword ``overrides`` of :class:`FitConfig` fields) sets the training. With
    ``checkpoint``, the training state is saved there atomically at each validation and on Ctrl-C;
    ``resume`` continues from it. ``log`` receives one-line messages (default: the stderr console
    when ``progress``). ``clean`` (expected photons, same shape) trains the same network supervised on
    clean targets instead: the benchmark's upper bound. ``snapshot(step, elapsed_s, weights)`` is
    called with a copy of the current weights the first time the elapsed training time passes each
    of ``snapshot_at`` (seconds), and at the end (for PSNR-vs-seconds curves; copying is cheap).
    Saving the model is separate (:meth:`DenoiseModel.save`).

    Raises TypeError on an unknown override, :class:`SmlmdnError` on bad settings or movies
    (:func:`validate`), a checkpoint that does not fit, or a training that never validated finite.
    """
    config = _with_overrides(config, overrides)
    validate(config, tuple(photons.shape), supervised=clean is not None)
    config = replace(config, patch=config.resolved_patch((photons.shape[1], photons.shape[2])))
    log = log if log is not None else _console_log(progress)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device, message = resolve_device(config.device)
    log(message)
    trainer = _Trainer(photons, camera, config, device, log, clean=clean, checkpoint=checkpoint, resume=resume)
    trainer.run(progress, snapshot, snapshot_at)
    trainer.finish(snapshot)
    return trainer.model(camera)


def checkpoint_path(output: str | Path) -> Path:
    """Where :func:`fit_file` (``smlmdn fit -o OUTPUT``) keeps its resumable training state (removed on success)."""
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


def fit_file(
    movie: str | Path,
    output: str | Path,
    camera: Camera,
    config: FitConfig,
    units: str = "adu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DenoiseModel:
    """Train on the movie file ``movie`` (T, Y, X, in ``units``) and save the model to ``output``; return it.

    What ``smlmdn fit`` runs. The movie is read lazily and converted to detected photons with
    ``camera`` (in ``adu``, the camera numbers are first checked against the data, with a warning
    when they disagree). The training state is checkpointed to :func:`checkpoint_path` at each
    validation and on Ctrl-C (KeyboardInterrupt is re-raised); ``resume`` continues from it. The
    checkpoint is removed once the model is saved. ``log`` receives one-line messages (see
    :func:`fit_model`).

    Raises :class:`SmlmdnError` for an ``output`` that exists (without ``overwrite``), a checkpoint
    left by an interrupted fit (without ``resume`` or ``overwrite``), and everything
    :func:`fit_model` refuses.
    """
    output = Path(output)
    ckpt = checkpoint_path(output)
    if not resume:
        check_output(output, overwrite)
        if ckpt.exists() and not overwrite:
            raise SmlmdnError(
                f"an interrupted fit left {ckpt}", "rerun with --resume to continue it, or --overwrite to start again"
            )
    elif output.exists() and not overwrite:
        raise SmlmdnError(f"output {output} already exists", "pass --overwrite to replace it, or choose another name")
    raw = open_movie(movie)
    if units == "adu":  # the likelihood is only right in photons: say so if the camera numbers look wrong
        check_camera_against_data(raw, camera)
    photons = movie_to_photons(raw, camera, units=units)
    model = fit_model(photons, camera, config, progress=progress, checkpoint=ckpt, resume=resume, log=log)
    model.training["movie"] = str(movie)
    model.save(output, overwrite=True)
    if ckpt.exists():
        ckpt.unlink()
    return model


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint's contents; raises :class:`SmlmdnError` when unreadable or not a checkpoint."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SmlmdnError(
            f"checkpoint {path} cannot be read ({type(exc).__name__})", "delete it and rerun without --resume"
        ) from exc
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise SmlmdnError(f"{path} is not an smlmdn training checkpoint", "delete it and rerun without --resume")
    return ck


def _track(config: FitConfig, completed: int, elapsed: float, progress: bool):
    from ..progress import track

    if config.max_steps:
        return track(total=config.max_steps, description="fit", enabled=progress, completed=completed)
    # time budget only: the bar counts seconds (a FitConfig has max_steps or a time_budget)
    assert config.time_budget is not None
    return track(total=math.ceil(config.time_budget), description="fit (s)", enabled=progress, completed=int(elapsed))
