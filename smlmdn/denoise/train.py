"""Training the blind-spot denoiser on a movie: lazy patch sampling, schedule, checkpoints, safety nets.

Data: random square crops (``patch`` px, random dihedral flips) of random frames, drawn from a pool
of frames read from the dask movie a few blocks at a time (the pool is refreshed every
``refresh_every`` steps, so memory is bounded whatever the movie length). Validation uses fixed
crops (up to 64 px, larger than training crops) of held-out frames (every tenth group of consecutive frames, so held-out frames are spread
over the whole acquisition). With temporal context ``K`` the centre frames are ``K..T-K-1``.

Stopping rule: ``steps`` and/or ``time_budget`` (seconds). With only a time budget (``steps=None``)
training runs until the budget is spent, however many steps that is: a busy CPU gives fewer steps,
the same schedule. With neither, ``DEFAULT_STEPS``. With both, whichever comes first.

Optimisation: Adam, linear warm-up (5 %) then cosine decay to 2 % of ``lr``, where progress is the
fraction of the stopping rule done, ``max(step / steps, elapsed / time_budget)`` (elapsed time alone
when the budget is the only rule); gradient-norm clipping at 1; loss = exact
negative-binomial NLL in float64 (or the Gaussian NLL for the comparison head). Every
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch

from .. import __version__
from .. import device as device_rule
from ..camera import Camera
from ..errors import SmlmdnError
from ..io import atomic_file, provenance
from . import likelihood as L
from .model_file import DenoiseModel
from .network import CONTEXT_MODES, BlindSpotNet, NetConfig

CHECKPOINT_FORMAT = "smlmdn-checkpoint"
#: steps when neither ``steps`` nor ``time_budget`` is given
DEFAULT_STEPS = 2000


@dataclass
class FitConfig:
    """Training settings; see the module docstring. ``time_budget`` in seconds (None: no limit).

    ``steps=None``: train until ``time_budget`` when one is given, else :data:`DEFAULT_STEPS`.
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

    def resolved_patch(self, frame_shape: tuple[int, int]) -> int:
        """The training crop side: ``patch``, or by default 64 px shrunk to fit the frame (a multiple of 2**depth)."""
        if self.patch is not None:
            return int(self.patch)
        mult = 2**self.depth
        return max(2 * mult, min(64, (min(frame_shape) // mult) * mult))

    def net_config(self) -> NetConfig:
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
    """``auto|cpu|cuda`` -> a torch device and a sentence saying which one and why (the rule of
    :func:`smlmdn.device.resolve_device`; raises its :class:`SmlmdnError`)."""
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


def _read_windows(photons: da.Array, centres: np.ndarray, k: int, shift: float, factor: float) -> np.ndarray:
    """Frames ``c-k..c+k`` for each centre as model counts (n, 2k+1, Y, X) float32, read in one pass."""
    parts = [photons[c - k : c + k + 1] for c in centres]
    blocks = dask.compute(*parts) if isinstance(photons, da.Array) else [np.asarray(p) for p in parts]
    return np.stack([L.to_model_counts(b, shift, factor) for b in blocks])


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


class _Sampler:
    """Random crops (with dihedral augmentation) from a pool of frame windows in model counts."""

    def __init__(self, rng: np.random.Generator, patch: int) -> None:
        self.rng = rng
        self.patch = patch
        self.pool: np.ndarray | None = None
        self.clean: np.ndarray | None = None

    def crops(
        self, n: int, pool: np.ndarray | None = None, clean: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
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


def _lr_factor(frac: float, warm: float = 0.05, floor: float = 0.02) -> float:
    if frac < warm:
        return max(frac / warm, 0.01)
    f = min(1.0, (frac - warm) / (1 - warm))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * f))


def _loss(
    net: BlindSpotNet,
    head: str,
    x: torch.Tensor,
    norm: dict[str, float],
    k: int,
    clean: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    level, scale = norm["level"], norm["scale"]
    xin = (x - level) / scale
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            raw = net(xin)
    else:
        raw = net(xin)
    p0, p1 = net.params(raw, level, scale)
    if clean is not None:  # supervised upper bound: the prior mean regressed on clean counts
        return (((p0.double() - clean.double()) / scale) ** 2).mean()
    return L.nll(head, x[:, k], p0, p1).mean()


def fit_model(
    photons: da.Array,
    camera: Camera,
    config: FitConfig | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    clean: da.Array | None = None,
    snapshot: Callable[[int, float, dict[str, torch.Tensor]], None] | None = None,
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
    """
    config = copy.deepcopy(config) if config is not None else FitConfig()
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise TypeError(f"unknown fit option {key}")
        setattr(config, key, value)
    if config.head not in L.HEADS:
        raise SmlmdnError(f"unknown head {config.head!r}", f"use --head {' or --head '.join(L.HEADS)}")
    for name in ("steps", "batch", "width", "depth", "val_every"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise SmlmdnError(
                f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}", f"give a positive --{name}"
            )
    if config.time_budget is not None and not config.time_budget > 0:
        raise SmlmdnError(f"--time-budget must be > 0 seconds, got {config.time_budget}", "e.g. --time-budget 300")
    if config.context_mode not in CONTEXT_MODES:
        raise SmlmdnError(f"unknown context mode {config.context_mode!r}", f"use {' or '.join(CONTEXT_MODES)}")
    if config.context < 0:
        raise SmlmdnError(f"--context must be >= 0, got {config.context}", "use --context 0 (single frames) or more")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise SmlmdnError(f"--lr must be a positive number, got {config.lr}", "use e.g. --lr 1e-3")
    if not config.blind and clean is None:
        raise SmlmdnError("a non-blind network sees the pixel it predicts", "train it on clean targets (clean=...)")
    if photons.ndim != 3:
        raise SmlmdnError(
            f"the movie must be (T, Y, X), got shape {photons.shape}", "give a single-channel time series"
        )
    check_movie(tuple(photons.shape), config)
    config.patch = config.resolved_patch(tuple(photons.shape[1:]))
    if log is None:
        if progress:
            from ..progress import console

            err = console()
            log = lambda msg: err.print(msg, highlight=False)  # noqa: E731
        else:
            log = lambda msg: None  # noqa: E731
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device, message = resolve_device(config.device)
    log(message)

    k = config.context
    shift, factor = L.count_transform(camera.excess_noise, camera.read_noise_photons)
    norm = normalisation(photons, shift, factor)
    dhash = data_hash(photons)
    net_cfg = config.net_config()
    t = photons.shape[0]
    train_frames, val_frames = split_frames(t, k)

    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    net = BlindSpotNet(net_cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    state: dict[str, Any] = {
        "step": 0,
        "elapsed": 0.0,
        "best_val": math.inf,
        "best_step": 0,
        "lr_mult": 1.0,
        "restores": 0,
        "since_best": 0,
        "history": [],
        "stopped": "",
    }
    best_weights = copy.deepcopy(net.state_dict())
    ckpt_path = Path(checkpoint) if checkpoint else None
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise SmlmdnError(f"no checkpoint to resume from ({ckpt_path})", "run without --resume to start training")
        ck = _load_checkpoint(ckpt_path)
        if ck["net"] != net_cfg.to_dict() or ck["data_hash"] != dhash:
            raise SmlmdnError(
                f"checkpoint {ckpt_path} was made for another movie or network settings",
                "rerun with the same movie and options, or without --resume (with --overwrite) to start again",
            )
        net.load_state_dict(ck["weights"])
        best_weights = ck["best_weights"]
        opt.load_state_dict(ck["optimizer"])
        state.update(ck["state"])
        rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"])
        norm = ck["norm"]
        log(f"resuming from {ckpt_path} at step {state['step']} (best validation loss {state['best_val']:.4f})")

    # Fixed validation crops (own generator: independent of the training stream and of resuming).
    vrng = np.random.default_rng(config.seed + 1)
    vsel = np.sort(vrng.choice(val_frames, size=min(len(val_frames), 64), replace=False))
    vpool = _read_windows(photons, vsel, k, shift, factor)
    vclean = _read_clean(clean, vsel, shift, factor) if clean is not None else None
    # Validation crops are larger than training crops (up to 64 px or the frame): inference runs on whole
    # frames, and a net that only works on small crops (e.g. relying on borders) must show up here.
    mult = 2**config.depth
    vpatch = max(config.patch, min(max(2 * config.patch, 64), (min(photons.shape[1:]) // mult) * mult))
    n_vcrops = max(8, int(config.val_crops * (config.patch / vpatch) ** 2))
    vx, vc = _Sampler(vrng, vpatch).crops(n_vcrops, vpool, vclean)
    del vpool, vclean

    sampler = _Sampler(rng, config.patch)
    pool_n = int(
        min(
            len(train_frames),
            config.pool_frames,
            max(8, (128 * 2**20) // (4 * photons.shape[1] * photons.shape[2] * (2 * k + 1))),
        )
    )

    def refresh() -> None:
        sel = np.sort(rng.choice(train_frames, size=pool_n, replace=False))
        sampler.pool = _read_windows(photons, sel, k, shift, factor)
        sampler.clean = _read_clean(clean, sel, shift, factor) if clean is not None else None

    def validate() -> float:
        net.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(vx), config.batch * 2):
                xb = torch.from_numpy(vx[i : i + config.batch * 2]).to(device)
                cb = torch.from_numpy(vc[i : i + config.batch * 2]).to(device) if vc is not None else None
                total += float(_loss(net, config.head, xb, norm, k, cb, device)) * len(xb)
        net.train()
        return total / len(vx)

    def save_checkpoint() -> None:
        if ckpt_path is None:
            return
        data = {
            "format": CHECKPOINT_FORMAT,
            "smlmdn_version": __version__,
            "net": net_cfg.to_dict(),
            "data_hash": dhash,
            "weights": net.state_dict(),
            "best_weights": best_weights,
            "optimizer": opt.state_dict(),
            "state": state,
            "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "norm": norm,
        }
        with atomic_file(ckpt_path, overwrite=True) as tmp:
            torch.save(data, tmp)

    def restore(reason: str) -> None:
        nonlocal opt
        net.load_state_dict(best_weights)
        state["restores"] += 1
        state["lr_mult"] *= 0.5
        opt = torch.optim.Adam(net.parameters(), lr=config.lr * state["lr_mult"])
        log(
            f"[yellow]warning:[/yellow] {reason} at step {state['step']}: went back to the last good weights "
            f"(step {state['best_step']}) and halved the learning rate"
        )

    max_steps = config.max_steps
    budget = config.time_budget
    marks = sorted(float(m) for m in snapshot_at)

    def fraction(step: int, elapsed: float) -> float:
        frac = step / max_steps if max_steps else 0.0
        return max(frac, elapsed / budget) if budget else frac

    refresh()
    start = time.perf_counter() - state["elapsed"]
    net.train()
    last_loss = float("nan")
    try:
        with _track(config, state["step"], state["elapsed"], progress) as advance:
            while True:
                step = state["step"]
                state["elapsed"] = time.perf_counter() - start
                frac = fraction(step, state["elapsed"])
                while snapshot is not None and marks and state["elapsed"] >= marks[0]:
                    marks.pop(0)
                    snapshot(step, state["elapsed"], copy.deepcopy(net.state_dict()))
                if (max_steps and step >= max_steps) or frac >= 1.0:
                    hit_steps = bool(max_steps) and step >= max_steps
                    state["stopped"] = state["stopped"] or ("steps" if hit_steps else "time budget")
                    break
                if step and step % config.refresh_every == 0 and pool_n < len(train_frames):
                    refresh()
                for group in opt.param_groups:
                    group["lr"] = config.lr * state["lr_mult"] * _lr_factor(frac)
                xb, cb = sampler.crops(config.batch)
                xt = torch.from_numpy(xb).to(device)
                ct = torch.from_numpy(cb).to(device) if cb is not None else None
                loss = _loss(net, config.head, xt, norm, k, ct, device)
                state["step"] = step + 1
                if not torch.isfinite(loss):
                    restore("the training loss became NaN/Inf")
                    if state["restores"] > config.max_restores:
                        state["stopped"] = "diverged"
                        break
                    continue
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip)
                opt.step()
                last_loss = float(loss.detach())
                fields: dict[str, Any] = {"loss": last_loss}
                if state["step"] % config.val_every == 0 or (max_steps and state["step"] >= max_steps):
                    val = validate()
                    state["history"].append([state["step"], last_loss, val, round(time.perf_counter() - start, 2)])
                    jump = max(0.25, 0.1 * abs(state["best_val"])) if math.isfinite(state["best_val"]) else math.inf
                    if not math.isfinite(val) or val > state["best_val"] + jump:
                        restore(f"the validation loss jumped to {val:.4g} (best {state['best_val']:.4g})")
                        if state["restores"] > config.max_restores:
                            state["stopped"] = "diverged"
                            break
                    elif val < state["best_val"]:
                        state.update(best_val=val, best_step=state["step"], since_best=0)
                        best_weights = copy.deepcopy(net.state_dict())
                    else:
                        state["since_best"] += 1
                    save_checkpoint()
                    fields["val"] = val
                    if max_steps and not budget and state["since_best"] >= config.patience:
                        state["stopped"] = "early stopping"
                        advance(1, **fields)
                        break
                advance(1, **fields) if max_steps else advance(time.perf_counter() - start - state["elapsed"], **fields)
    except KeyboardInterrupt:
        state["elapsed"] = time.perf_counter() - start
        save_checkpoint()
        raise

    if not math.isfinite(state["best_val"]) or state["history"] == [] or state["history"][-1][0] != state["step"]:
        val = validate()
        state["history"].append([state["step"], last_loss, val, round(time.perf_counter() - start, 2)])
        if math.isfinite(val) and val < state["best_val"]:
            state.update(best_val=val, best_step=state["step"])
            best_weights = copy.deepcopy(net.state_dict())
    if snapshot is not None:
        snapshot(state["step"], time.perf_counter() - start, copy.deepcopy(net.state_dict()))
    if not math.isfinite(state["best_val"]):
        raise SmlmdnError(
            "training diverged before any good validation", "lower --lr (e.g. --lr 3e-4) and check the camera numbers"
        )
    if state["stopped"] == "diverged":
        log(
            f"[yellow]warning:[/yellow] training kept diverging; stopped and kept the last good weights (step {state['best_step']})"
        )
    elapsed = time.perf_counter() - start
    log(
        f"trained {state['step']} steps in {elapsed:.0f} s ({state['stopped']}); best validation loss "
        f"{state['best_val']:.4f} at step {state['best_step']}"
    )
    training = {
        "steps": state["step"],
        "best_step": state["best_step"],
        "best_val_loss": state["best_val"],
        "final_train_loss": last_loss,
        "stopped": state["stopped"],
        "seconds": round(elapsed, 2),
        "steps_per_second": round(state["step"] / max(elapsed, 1e-9), 3),
        "history": state["history"],
        "data_hash": dhash,
        "movie_shape": list(photons.shape),
        "device": str(device),
        "restores": state["restores"],
        "supervised": clean is not None,
        "config": asdict(config),
        **provenance(),
    }
    return DenoiseModel(
        net=net_cfg,
        state_dict={k2: v.detach().cpu().clone() for k2, v in best_weights.items()},
        camera=camera,
        transform={"shift": shift, "factor": factor},
        norm=norm,
        training=training,
    )


def _read_clean(clean: da.Array, centres: np.ndarray, shift: float, factor: float) -> np.ndarray:
    blocks = dask.compute(*[clean[c] for c in centres]) if isinstance(clean, da.Array) else [clean[c] for c in centres]
    return np.stack([(np.asarray(b, np.float32) + np.float32(shift)) / np.float32(factor) for b in blocks])


def _load_checkpoint(path: Path) -> dict[str, Any]:
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
