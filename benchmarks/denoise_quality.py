"""Denoising quality benchmark: the Gamma-Poisson blind-spot denoiser against baselines (not a test).

For simulated movies at each ``--snr`` (same training budget, in steps, for every trained model):
PSNR and SSIM against the noise-free expected image, and background SNR, for

* raw photons, a Gaussian filter (sigma 1 px),
* ``prior`` (the blind-spot prediction alone: what Noise2Void outputs), the ``gamma-poisson``
  posterior mean and MAP, each with and without temporal context (``--context 0`` and ``1``),
* the ``gaussian`` head (Laine et al.'s Gaussian approximation) posterior mean,
* a supervised upper bound: the same network trained on the clean targets (MSE),
* CAREamics Noise2Void (run in the separate venv ``--careamics-python``; the table says why not when
  it cannot run), trained on the same photons with the same number of steps x batch.

Also prints fit steps/s, denoise frames/s (CPU; GPU when available) and, with ``--rss``, the peak
RSS of ``smlmdn denoise`` on 2,000 vs 20,000 frames (``--rss-frames``).

Usage::

    .venv/bin/python benchmarks/denoise_quality.py --quick
    .venv/bin/python benchmarks/denoise_quality.py --snr low medium high --frames 2000 --steps 1500 --json out.json

``--curves``: PSNR vs training seconds for context K = 0, 1, 2 (``--curve-runs 0 1:stem 1:branch ...``)
on one movie folder written by ``smlmdn simulate``, each a ``--budget`` s fit (or ``--curve-steps``)
snapshotted at ``--marks`` s, plus the ghost rate next to blinks and blink-edge fading of each final
model (and CAREamics N2V at its own epochs with ``--n2v-epochs``)::

    smlmdn simulate /tmp/dn/low --frames 2000 --size 64 --snr low --seed 1
    .venv/bin/python benchmarks/denoise_quality.py --curves --movie-dir /tmp/dn/low --budget 300 --threads 1 \
        --curve-runs 0 1:stem 2:stem 1:branch --marks 30 60 120 200 --json curves.json

Prints a Markdown table (paste into benchmarks/RESULTS.md) and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DEFAULT_BENCHVENV = HERE.parent.parent / ".benchvenv" / "bin" / "python"


# ------------------------------------------------------------------------------------------ N2V worker


def _stub_torchvision() -> None:
    """careamics 0.3.5 pins torchvision<=0.26 (torch<=2.11), and no CPU torchvision build for torch 2.13
    exists on this machine's index; careamics imports torchvision only for its LVAE code, not N2V. So:
    import torchmetrics/lightning first (they see no torchvision and skip its optional parts), then put
    an empty torchvision stub in sys.modules for careamics' unused imports."""
    import importlib.machinery
    import types

    import lightning.pytorch  # noqa: F401
    import torchmetrics  # noqa: F401

    mods = {}
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__path__ = []
        mods[name] = mod
    mods["torchvision"].__version__ = "0.0+stub"
    mods["torchvision"].transforms = mods["torchvision.transforms"]
    mods["torchvision.transforms"].functional = mods["torchvision.transforms.functional"]
    sys.modules.update(mods)


def n2v_worker(args: argparse.Namespace) -> None:
    """Run inside the benchmark venv: train CAREamics N2V on ``--n2v-in`` (T, Y, X) photons for
    ``--steps`` batches of ``--batch`` 64-px patches, predict the last ``--n2v-eval`` frames, save
    them to ``--n2v-out`` and print a JSON line with timings."""
    import torch

    try:
        import torchvision  # noqa: F401
    except Exception:  # missing or a CUDA-only build
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        _stub_torchvision()
    import careamics
    from careamics import CAREamist
    from careamics.config import create_n2v_config

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = np.load(args.n2v_in).astype(np.float32)
    t_eval = args.n2v_eval
    n_val = max(1, len(data) // 10)
    patch = min(64, (min(data.shape[1:]) // 8) * 8)
    epochs = args.n2v_epochs or 10
    # --steps 0: CAREamics' own epochs (every patch of the training data once per epoch, num_steps=None)
    cfg = create_n2v_config(
        experiment_name="smlmdn_bench",
        data_type="array",
        axes="SYX",
        patch_size=[patch, patch],
        batch_size=args.batch,
        num_epochs=epochs,
        num_steps=max(1, args.steps // epochs) if args.steps else None,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        careamist = CAREamist(cfg, work_dir=work, enable_progress_bar=False)
        careamist.train(train_data=data[: len(data) - n_val], val_data=data[len(data) - n_val :])
        fit_s = time.perf_counter() - t0
        val_curve = _lightning_val_losses(Path(work))
        t1 = time.perf_counter()
        pred = careamist.predict(data[-t_eval:], axes="SYX", data_type="array")
        pred_s = time.perf_counter() - t1
    if isinstance(pred, tuple):
        pred = pred[0]
    pred = (
        np.concatenate([np.asarray(p).reshape(-1, *data.shape[1:]) for p in pred])
        if isinstance(pred, list)
        else np.asarray(pred)
    )
    np.save(args.n2v_out, pred.reshape(t_eval, *data.shape[1:]).astype(np.float32))
    print(
        json.dumps(
            {
                "fit_s": fit_s,
                "predict_s": pred_s,
                "epochs": epochs,
                "patch": patch,
                "batch": args.batch,
                "version": careamics.__version__,
                "val_loss_per_epoch": val_curve,
            }
        )
    )


def _lightning_val_losses(work: Path) -> list[float]:
    """Validation loss after each epoch, from the CSV log Lightning writes under ``work`` (to show
    whether N2V had converged)."""
    import csv

    out = []
    for f in sorted(work.rglob("metrics.csv")):
        with open(f) as fh:
            out += [round(float(r["val_loss"]), 5) for r in csv.DictReader(fh) if r.get("val_loss")]
    return out


def run_n2v(
    python: Path,
    photons: np.ndarray,
    steps: int,
    batch: int,
    t_eval: int,
    threads: int | None,
    seed: int = 0,
    epochs: int | None = None,
) -> tuple[np.ndarray | None, dict]:
    """N2V prediction of the last ``t_eval`` frames via the benchmark venv, or (None, {"error": why})."""
    if not python.exists():
        return None, {
            "error": f"no benchmark venv at {python} (create it: python3 -m venv .benchvenv; "
            ".benchvenv/bin/pip install torch==2.13.0 careamics -e .)"
        }
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(src, photons)
        cmd = [
            str(python),
            str(HERE),
            "--n2v-worker",
            "--n2v-in",
            str(src),
            "--n2v-out",
            str(dst),
            "--n2v-eval",
            str(t_eval),
            "--steps",
            str(steps),
            "--batch",
            str(batch),
            "--seed",
            str(seed),
        ]
        if epochs:
            cmd += ["--n2v-epochs", str(epochs)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not dst.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, {"error": "CAREamics failed: " + " | ".join(tail)}
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return np.load(dst), info


def n2v_cached(movie_dir: Path, photons, args: argparse.Namespace) -> tuple[np.ndarray | None, dict]:
    """:func:`run_n2v` at CAREamics' own epochs on a movie folder, its prediction cached in the folder.

    N2V at its defaults takes far longer than our fit (tens of CPU minutes), so the prediction of the
    last ``eval_frames + 2`` frames is kept in ``MOVIE_DIR/n2v_e{epochs}_b{batch}_s{seed}_t{n}.npz``
    with its timing and the date it ran, and reused by later runs on the same folder (the table
    says so). Delete the file to retrain.
    """
    n_eval = args.eval_frames + 2
    cache = movie_dir / f"n2v_e{args.n2v_epochs}_b{args.n2v_batch}_s{args.seed}_t{n_eval}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["pred"], {**json.loads(str(z["info"])), "cached": str(cache)}
    if args.n2v_cache_only:
        return None, {
            "error": f"no cached N2V prediction {cache.name} (run with --n2v-epochs, without --n2v-cache-only)"
        }
    pred, info = run_n2v(
        Path(args.careamics_python),
        photons.compute(),
        0,
        args.n2v_batch,
        n_eval,
        args.threads,
        args.seed,
        epochs=args.n2v_epochs,
    )
    if pred is not None:
        info["ran"] = time.strftime("%Y-%m-%d %H:%M")
        np.savez(cache, pred=pred, info=json.dumps(info))
    return pred, info


# ----------------------------------------------------------------------------------------- benchmark


def gaussian_filter_movie(photons: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(f, sigma) for f in photons]).astype(np.float32)


def score(x: np.ndarray, clean: np.ndarray, masks, dr: float) -> dict[str, float]:
    from smlmdn.evaluate.image import background_snr, psnr, ssim

    return {
        "psnr": round(psnr(x, clean, dr), 2),
        "ssim": round(ssim(x, clean, dr), 4),
        "bg_snr": round(background_snr(x, masks), 2),
    }


def bench_snr(snr: str, args: argparse.Namespace) -> dict:
    import dask
    import dask.array as da

    from smlmdn.camera import to_photons
    from smlmdn.denoise import FitConfig, denoise_lazy, fit_model
    from smlmdn.evaluate.image import signal_background_masks
    from smlmdn.simulate import SimulationParams, simulate

    sim = simulate(SimulationParams.preset(snr, frames=args.frames, size=args.size, seed=args.seed))
    photons = to_photons(da.from_array(sim.movie, chunks=(500, args.size, args.size)), sim.camera)
    ev = slice(args.frames - args.eval_frames, args.frames)
    clean = sim.clean[ev]
    raw = photons[ev].compute()
    dr = float(clean.max() - clean.min())
    truth = sim.truth[(sim.truth.frame >= ev.start)].assign(frame=lambda d: d.frame - ev.start)
    masks = signal_background_masks(clean, truth, sim.camera.pixel_size)
    rows: dict[str, dict] = {}
    rows["raw photons"] = score(raw, clean, masks, dr)
    rows["gaussian filter (1 px)"] = score(gaussian_filter_movie(raw), clean, masks, dr)
    base = dict(
        steps=args.steps,
        width=args.width,
        depth=args.depth,
        batch=args.batch,
        seed=args.seed,
        threads=args.threads,
        val_every=max(50, args.steps // 10),
        patience=1000,
    )
    k = args.context
    runs = [
        ("gamma-poisson K=0", dict(context=0), ("prior", "mean", "map")),
        ("gamma-poisson K=1", dict(context=1), ("prior", "mean", "map")),
        (f"gaussian head K={k}", dict(context=k, head="gaussian"), ("mean",)),
        (f"supervised non-blind K={k} (clean targets)", dict(context=k, supervised=True, blind=False), ("prior",)),
    ]
    timing = {}
    for label, extra, estimates in runs:
        extra = dict(extra)
        supervised = extra.pop("supervised", False)
        t0 = time.perf_counter()
        model = fit_model(
            photons,
            sim.camera,
            FitConfig(**base, **extra),
            progress=False,
            log=lambda m: None,
            clean=da.from_array(sim.clean, chunks=photons.chunks) if supervised else None,
        )
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = denoise_lazy(photons[ev], model, estimates=estimates)
        out = dict(zip(out, dask.compute(*out.values()), strict=True))  # one network pass for all estimates
        den_s = time.perf_counter() - t1
        timing[label] = {
            "fit_steps_per_s": round(model.training["steps"] / fit_s, 2),
            "fit_s": round(fit_s, 1),
            "denoise_frames_per_s": round(args.eval_frames / den_s, 1),
            "best_val_loss": round(model.training["best_val_loss"], 4),
        }
        for est, value in out.items():
            name = f"{label} {'output' if supervised else est}"
            rows[name] = score(value, clean, masks, dr)
        print(f"  [{snr}] {label}: {fit_s:.0f} s fit, {den_s:.1f} s denoise", file=sys.stderr, flush=True)
    if args.careamics:
        t0 = time.perf_counter()
        pred, info = run_n2v(
            Path(args.careamics_python),
            photons.compute(),
            args.steps,
            args.batch,
            args.eval_frames,
            args.threads,
            args.seed,
        )
        if pred is not None:
            rows[f"CAREamics N2V {info.get('version', '')}".strip()] = score(pred, clean, masks, dr)
            timing["CAREamics N2V"] = {
                "fit_s": round(info["fit_s"], 1),
                "epochs": info["epochs"],
                "denoise_frames_per_s": round(args.eval_frames / info["predict_s"], 1),
            }
        else:
            rows["CAREamics N2V"] = {"psnr": None, "ssim": None, "bg_snr": None, "note": info["error"]}
        print(f"  [{snr}] N2V: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return {"snr": snr, "rows": rows, "timing": timing}


# ------------------------------------------------------------------------- PSNR vs seconds, ghosts


def ghost_stats(den: np.ndarray, clean: np.ndarray, truth, frame0: int, pixel_size: float, seed: int = 0) -> dict:
    """Temporal-denoising artefacts next to blinks (SUPPORT / SRDTrans failure modes), on frames ``frame0..``.

    Emitters are identified by their (static) position in the truth table. With ``box`` = the 3 x 3 px
    sum around an emitter's pixel and ``bg`` = the median over the scored frames of the clean box
    (the background; emitters are off most of the time):

    * ghost site: the emitter is off in frame t (no truth row) but on in t-1 or t+1, and no other
      emitter is on within 4 px in frame t. Ghost excess = box(den) - box(clean).
      ``ghost_rate`` = fraction of ghost sites whose excess exceeds 3 x the standard deviation of the
      same excess at control sites (random pixels with no emitter within 4 px in t-1..t+1), i.e. the
      rate of spot-like signal where there is none; ``ghost_amp`` = mean ghost excess as a fraction
      of the mean spot signal (box(clean) - bg over all on-sites).
    * edge recovery: median of (box(den) - bg) / (box(clean) - bg) at a blink's first and last frames
      (``edge``) and at frames inside a blink (on in t-1, t, t+1; ``inner``); 1 = faithful, < 1 faded.
    """
    t_n, hgt, wid = den.shape
    pos = truth[["x_nm", "y_nm"]].round(3).to_numpy()
    keys, ident = np.unique(pos, axis=0, return_inverse=True)
    ident = ident.ravel()
    sel = (truth.frame >= frame0).to_numpy() & (truth.frame < frame0 + t_n).to_numpy()
    frames = truth.frame.to_numpy()[sel] - frame0
    ids = ident[sel]
    on = np.zeros((len(keys), t_n), bool)
    on[ids, frames] = True
    pix = np.clip((keys / pixel_size).astype(int), 0, [wid - 1, hgt - 1])  # (x, y)

    def box(img: np.ndarray, t: np.ndarray, yx: np.ndarray) -> np.ndarray:
        p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
        return sum(p[t, yx[:, 0] + dy, yx[:, 1] + dx] for dy in range(3) for dx in range(3))

    # occupancy maps of emitters on in each frame (within 4 px)
    occ = np.zeros((t_n, hgt, wid), bool)
    for e, t in zip(*np.nonzero(on), strict=True):
        x, y = pix[e]
        occ[t, max(0, y - 4) : y + 5, max(0, x - 4) : x + 5] = True
    ghost_e, ghost_t, edge_e, edge_t, inner_e, inner_t = [], [], [], [], [], []
    for e in range(len(keys)):
        row = on[e]
        if not row.any():
            continue
        prev = np.concatenate([[False], row[:-1]])
        nxt = np.concatenate([row[1:], [False]])
        x, y = pix[e]
        # a ghost site: off here, on next door, and nobody else on near it in this frame
        cand = np.nonzero(~row & (prev | nxt))[0]
        cand = cand[(cand > 0) & (cand < t_n - 1)]
        cand = cand[~occ[cand, y, x]]
        ghost_e += [e] * len(cand)
        ghost_t += list(cand)
        ed = np.nonzero(row & (~prev | ~nxt))[0]
        ed = ed[(ed > 0) & (ed < t_n - 1)]
        edge_e += [e] * len(ed)
        edge_t += list(ed)
        inn = np.nonzero(row & prev & nxt)[0]
        inner_e += [e] * len(inn)
        inner_t += list(inn)
    yx = pix[:, ::-1]
    ge, gt = np.array(ghost_e, int), np.array(ghost_t, int)
    rng = np.random.default_rng(seed)
    ct = rng.integers(1, t_n - 1, 4000)
    cy, cx = rng.integers(1, hgt - 1, 4000), rng.integers(1, wid - 1, 4000)
    free = ~(occ[ct, cy, cx] | occ[ct - 1, cy, cx] | occ[ct + 1, cy, cx])
    ct, cyx = ct[free], np.stack([cy[free], cx[free]], 1)
    ctrl = box(den, ct, cyx) - box(clean, ct, cyx)
    thr = 3 * float(np.std(ctrl))
    ghost = box(den, gt, yx[ge]) - box(clean, gt, yx[ge]) if len(ge) else np.zeros(0)
    bg = np.array([np.median(box(clean, np.arange(t_n), np.repeat(yx[e : e + 1], t_n, 0))) for e in range(len(keys))])
    on_e, on_t = np.nonzero(on)
    spot = float(np.mean(box(clean, on_t, yx[on_e]) - bg[on_e])) if len(on_e) else float("nan")

    def recovery(es: list, ts: list) -> float:
        es, ts = np.array(es, int), np.array(ts, int)
        if not len(es):
            return float("nan")
        num = box(den, ts, yx[es]) - bg[es]
        dnm = box(clean, ts, yx[es]) - bg[es]
        ok = dnm > 0.2 * spot  # frames where the emitter was on for a useful part of the exposure
        return float(np.median(num[ok] / dnm[ok])) if ok.any() else float("nan")

    return {
        "ghost_sites": len(ge),
        "ghost_rate": round(float(np.mean(ghost > thr)) if len(ghost) else float("nan"), 4),
        "ghost_amp": round(float(np.mean(ghost)) / spot, 4) if len(ghost) else float("nan"),
        "control_rate": round(float(np.mean(ctrl > thr)), 4),
        "edge_recovery": round(recovery(edge_e, edge_t), 3),
        "inner_recovery": round(recovery(inner_e, inner_t), 3),
    }


def curves(args: argparse.Namespace) -> dict:
    """PSNR vs training seconds for each ``--curve-runs`` entry (K[:mode]) on the movie in ``--movie-dir``.

    Each run is one ``fit_model`` with ``time_budget=--budget`` (steps: until the budget), with the
    current weights snapshotted at ``--marks`` seconds; every snapshot denoises the scored frames (the
    last ``--eval-frames`` but 2, with 2 frames of temporal margin for every K) and is scored against
    ``clean.tif``. The final model (the best validation checkpoint, what ``smlmdn fit`` saves) also
    gets the ghost / blink-edge statistics of :func:`ghost_stats`.
    """
    import dataclasses

    import dask
    import pandas as pd
    import tifffile

    from smlmdn.camera import load_camera, to_photons
    from smlmdn.denoise import FitConfig, denoise_lazy, fit_model
    from smlmdn.evaluate.image import psnr
    from smlmdn.io import open_movie

    d = Path(args.movie_dir)
    camera = load_camera(d / "camera.json")
    photons = to_photons(open_movie(d / "movie.tif"), camera)
    t = photons.shape[0]
    e1 = t - 2
    e0 = e1 - args.eval_frames
    clean = np.asarray(tifffile.imread(d / "clean.tif", key=range(e0, e1)), np.float32)
    truth = pd.read_csv(d / "truth.csv")
    dr = float(clean.max() - clean.min())
    margin = photons[e0 - 2 : e1 + 2]
    raw = photons[e0:e1].compute()
    out = {
        "movie": str(d),
        "eval_frames": [e0, e1],
        "data_range": dr,
        "raw_psnr": round(psnr(raw, clean, dr), 2),
        "raw_ghosts": ghost_stats(raw, clean, truth, e0, camera.pixel_size),
        "runs": {},
    }
    print(f"  raw photons: {out['raw_psnr']} dB", file=sys.stderr, flush=True)

    def run_estimates(model, names):
        est = denoise_lazy(margin, model, estimates=names)
        return {n: v[2:-2] for n, v in zip(est, dask.compute(*est.values()), strict=True)}

    for spec in args.curve_runs:
        label, fit_kw, sup = _run_spec(spec)
        snaps: list = []
        # --curve-steps: equal steps instead of equal seconds (schedule over the steps, no early stopping)
        stop = (
            dict(steps=args.curve_steps, time_budget=None, patience=10**6)
            if args.curve_steps
            else dict(steps=None, time_budget=args.budget)
        )
        sizes = {
            n: getattr(args, n)
            for n in ("width", "depth", "batch", "lr")
            if getattr(args, n) and not spec.startswith("default")
        }
        cfg = FitConfig(**stop, seed=args.seed, threads=args.threads, **{**sizes, **fit_kw})
        # every setting of the run (defaults included) and the scored frames name its cached result
        key = hashlib.sha256(json.dumps([dataclasses.asdict(cfg), e0, e1, args.marks]).encode()).hexdigest()[:12]
        cached = d / f"run_{re.sub(r'[^A-Za-z0-9_.]', '-', spec)}_{key}.json"
        if cached.exists():
            out["runs"][label] = json.loads(cached.read_text())
            print(f"  {label}: cached {cached}", file=sys.stderr, flush=True)
            continue
        t0 = time.perf_counter()
        model = fit_model(
            photons,
            camera,
            cfg,
            progress=False,
            log=lambda m: None,
            clean=open_movie(d / "clean.tif") if sup else None,
            snapshot=lambda step, el, w, snaps=snaps: snaps.append((step, el, w)),
            snapshot_at=tuple(args.marks),
        )
        fit_s = time.perf_counter() - t0
        if spec == "default":  # kept for the localization benchmarks (research question 2)
            model.save(d / "model_default.pt")
        # the non-blind bound sees the pixel: its output ("prior" slot) is the estimate, no posterior
        names = ("prior",) if sup else ("mean", "prior")
        points = []
        for step, el, w in snaps:
            snap = dataclasses.replace(model, state_dict=w, training={})
            est = run_estimates(snap, names)
            est.setdefault("mean", est["prior"])
            points.append(
                {
                    "seconds": round(el, 1),
                    "step": step,
                    "mean": round(psnr(est["mean"], clean, dr), 2),
                    "prior": round(psnr(est["prior"], clean, dr), 2),
                }
            )
        est = run_estimates(model, names)
        est.setdefault("mean", est["prior"])
        final = {
            "mean": round(psnr(est["mean"], clean, dr), 2),
            "prior": round(psnr(est["prior"], clean, dr), 2),
            "steps": model.training["steps"],
            "best_step": model.training["best_step"],
            "fit_s": round(fit_s, 1),
            "restores": model.training["restores"],
            "best_val_loss": round(model.training["best_val_loss"], 4),
            "ghosts_mean": ghost_stats(est["mean"], clean, truth, e0, camera.pixel_size),
        }
        out["runs"][label] = {"points": points, "final": final, "ran": time.strftime("%Y-%m-%d %H:%M")}
        cached.write_text(json.dumps(out["runs"][label]))
        print(f"  {label}: {json.dumps(out['runs'][label])}", file=sys.stderr, flush=True)
    if args.n2v_epochs:
        t0 = time.perf_counter()
        pred, info = n2v_cached(d, photons[: e1 + 2], args)
        if pred is not None:
            pred = pred[: args.eval_frames]
            out["n2v"] = {
                **info,
                "psnr": round(psnr(pred, clean, dr), 2),
                "wall_s": round(time.perf_counter() - t0, 1),
                "ghosts": ghost_stats(pred, clean, truth, e0, camera.pixel_size),
            }
        else:
            out["n2v"] = info
        print(f"  N2V: {json.dumps(out['n2v'])}", file=sys.stderr, flush=True)
    return out


def _run_spec(spec: str) -> tuple[str, dict, bool]:
    """``--curve-runs`` entry -> (label, FitConfig fields, supervised?).

    ``default``: ``smlmdn fit``'s defaults; ``K`` or ``K:stem|branch``: context K in that design;
    ``K:sup``: the supervised bound, the same-size *non-blind* network (all 2K+1 frames, sees the
    pixel) trained on the clean movie; ``default@FIELD=VALUE,...``: the defaults with FitConfig fields
    changed (e.g. ``default@patch=32,batch=16``: same pixels per step as the default's 64 px x 4).
    """

    if spec == "default":
        return "default", {}, False
    if spec.startswith("default@"):  # e.g. default@patch=32,batch=16: the defaults with some fields changed
        fields = dict(kv.split("=") for kv in spec.removeprefix("default@").split(","))
        return (
            f"default, {', '.join(f'{k} {v}' for k, v in fields.items())}",
            {k: json.loads(v) if v[0].isdigit() or v[0] == "-" else v for k, v in fields.items()},
            False,
        )
    k_str, _, mode = spec.partition(":")
    k = int(k_str)
    if mode == "sup":
        return f"supervised non-blind K={k}", {"context": k, "blind": False}, True
    mode = mode or "stem"
    return f"K={k}" + (f" {mode}" if k else ""), {"context": k, "context_mode": mode}, False


def print_curves(res: dict, args: argparse.Namespace) -> None:
    print(
        f"\n### PSNR vs training seconds: `{res['movie']}`, frames {res['eval_frames'][0]}..{res['eval_frames'][1] - 1} scored, "
        f"{f'{args.curve_steps} steps' if args.curve_steps else f'budget {args.budget:g} s'} per run; raw photons {res['raw_psnr']} dB\n"
    )
    print(
        "| run | snapshots: seconds (step) -> posterior mean dB / prior dB | final (best val. weights): mean / prior dB | steps |"
    )
    print("|---|---|---:|---:|")
    for label, r in res["runs"].items():
        pts = "; ".join(f"{p['seconds']:.0f} s ({p['step']}): {p['mean']:.2f} / {p['prior']:.2f}" for p in r["points"])
        f = r["final"]
        print(f"| {label} | {pts} | {f['mean']:.2f} / {f['prior']:.2f} | {f['steps']} |")
    n2v = res.get("n2v")
    if n2v:
        if "psnr" in n2v:
            print(
                f"\nCAREamics Noise2Void {n2v.get('version', '')}: {n2v['psnr']:.2f} dB ({n2v['epochs']} epochs of the movie, "
                f"batch {n2v['batch']}, {n2v['patch']} px patches; fit {n2v['fit_s']:.0f} s)"
            )
        else:
            print(f"\nCAREamics Noise2Void: not run ({n2v.get('error')})")
    print(
        "\n| output | ghost sites | ghost rate | control rate | ghost amplitude (of a spot) | blink-edge recovery | inner recovery |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [("raw photons", res["raw_ghosts"])] + [
        (f"{lbl} mean", r["final"]["ghosts_mean"]) for lbl, r in res["runs"].items()
    ]
    if n2v and "ghosts" in n2v:
        rows.append(("CAREamics N2V", n2v["ghosts"]))
    for name, g in rows:
        print(
            f"| {name} | {g['ghost_sites']} | {g['ghost_rate']:.3f} | {g['control_rate']:.3f} | {g['ghost_amp']:+.3f} | "
            f"{g['edge_recovery']:.2f} | {g['inner_recovery']:.2f} |"
        )


#: ``--grid`` movies: (folder name, ``smlmdn simulate`` options, seed); 64 x 64 px, ``--frames`` frames.
GRID = [
    (
        "low-flat-lognormal",
        ["--snr", "low", "--brightness", "lognormal", "--flat-background", "--psf-sigma", "120"],
        11,
    ),
    ("low", ["--snr", "low"], 12),
    ("medium", ["--snr", "medium"], 13),
    ("high", ["--snr", "high"], 14),
    ("low-dense-long-on", ["--snr", "low", "--density", "60", "--on-time", "8"], 15),
]


def grid(args: argparse.Namespace) -> list[dict]:
    """:func:`curves` on every :data:`GRID` movie (simulated into ``--grid-dir`` when missing)."""
    import copy

    out = []
    names = args.grid_points or [g[0] for g in GRID]
    for name, extra, seed in GRID:
        if name not in names:
            continue
        d = Path(args.grid_dir) / name
        if not (d / "movie.tif").exists():
            cmd = [str(Path(sys.executable).parent / "smlmdn"), "simulate", str(d), "--frames", str(args.frames)]
            subprocess.run([*cmd, "--size", "64", "--seed", str(seed), "-q", *extra], check=True)
        sub = copy.copy(args)
        sub.movie_dir = str(d)
        print(
            f"# grid point {name}: smlmdn simulate DIR --frames {args.frames} --size 64 --seed {seed} {' '.join(extra)}"
        )
        res = curves(sub)
        res["point"], res["simulate"] = name, f"--seed {seed} {' '.join(extra)}"
        print_curves(res, sub)
        out.append(res)
    return out


def print_grid(results: list[dict]) -> None:
    print("\n### Summary: PSNR (dB) of the saved models' posterior mean, same movies, same run\n")
    runs = list(dict.fromkeys(lbl for r in results for lbl in r["runs"]))
    print("| movie | raw | CAREamics N2V | " + " | ".join(runs) + " | default - N2V | default - bound |")
    print("|---|---:|---:|" + "---:|" * len(runs) + "---:|---:|")
    for r in results:
        n2v = r.get("n2v", {}).get("psnr")
        vals = {lbl: r["runs"][lbl]["final"] for lbl in r["runs"]}
        cells = [f"{vals[lbl]['mean']:.2f} ({vals[lbl]['steps']})" if lbl in vals else "-" for lbl in runs]
        own = vals.get("default", {}).get("mean")
        bound = next((v["mean"] for lbl, v in vals.items() if lbl.startswith("supervised")), None)
        d_n2v = f"{own - n2v:+.2f}" if own is not None and n2v is not None else "-"
        d_bound = f"{own - bound:+.2f}" if own is not None and bound is not None else "-"
        n2v_cell = f"{n2v:.2f}" if n2v is not None else "not run"
        print(f"| {r['point']} | {r['raw_psnr']:.2f} | {n2v_cell} | " + " | ".join(cells) + f" | {d_n2v} | {d_bound} |")
    print("\n(steps trained in brackets)")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def peak_rss(frames_list: list[int], args: argparse.Namespace) -> dict:
    """Peak RSS (MB) of `smlmdn denoise` on simulated movies of each length (one fresh process each)."""
    from smlmdn.camera import to_photons  # noqa: F401 - fail early if the package is broken
    from smlmdn.simulate import SimulationParams, simulate_to_dir

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim_dir = tmp / "sim"
        simulate_to_dir(
            SimulationParams.preset("low", frames=max(frames_list), size=args.size, seed=args.seed),
            sim_dir,
            progress=False,
        )
        model = tmp / "m.pt"
        code = (
            "import sys, resource, torch, dask.array as da\n"
            f"torch.set_num_threads({args.threads or torch_threads()})\n"
            "from smlmdn.camera import load_camera, to_photons\n"
            "from smlmdn.io import open_movie, write_movie\n"
            "from smlmdn.denoise import fit_model, denoise_lazy, FitConfig\n"
            "cam = load_camera(sys.argv[2]); n = int(sys.argv[3])\n"
            "from smlmdn.denoise.apply import DEFAULT_BLOCK_FRAMES\n"
            "ph = to_photons(open_movie(sys.argv[1], block_frames=DEFAULT_BLOCK_FRAMES), cam)\n"
            "if n == 0:\n"
            "    fit_model(ph, cam, FitConfig(steps=5, width=8, depth=2), progress=False).save(sys.argv[4]); sys.exit()\n"
            "est = denoise_lazy(ph[:n], sys.argv[4])['mean']\n"
            "write_movie(est, sys.argv[5], progress=False)  # smlmdn denoise's path: 256-frame blocks\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
        )
        movie, camera = sim_dir / "movie.tif", sim_dir / "camera.json"
        subprocess.run([sys.executable, "-c", code, str(movie), str(camera), "0", str(model)], check=True)
        for n in frames_list:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code, str(movie), str(camera), str(n), str(model), str(tmp / f"d{n}.zarr")],
                capture_output=True,
                text=True,
                check=True,
            )
            out[n] = {
                "peak_rss_mb": round(float(proc.stdout.strip().splitlines()[-1]), 1),
                "frames_per_s": round(n / (time.perf_counter() - t0), 1),
            }
    return out


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    for res in results:
        print(
            f"\n### SNR preset `{res['snr']}` ({args.frames} frames of {args.size} x {args.size} px, scored on the last "
            f"{args.eval_frames}; {args.steps} training steps per model)\n"
        )
        print("| method | PSNR (dB) | SSIM | background SNR |")
        print("|---|---:|---:|---:|")
        for name, r in res["rows"].items():
            if r.get("psnr") is None:
                print(f"| {name} | n/a | n/a | n/a ({r.get('note', '')}) |")
            else:
                print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['bg_snr']:.2f} |")
        print("\n| model | fit steps/s | fit s | denoise frames/s | best val loss |")
        print("|---|---:|---:|---:|---:|")
        for name, t in res["timing"].items():
            print(
                f"| {name} | {t.get('fit_steps_per_s', '')} | {t.get('fit_s', '')} | {t.get('denoise_frames_per_s', '')} | "
                f"{t.get('best_val_loss', '')} |"
            )
        rows = res["rows"]
        k = args.context
        gp1, pr1 = rows.get(f"gamma-poisson K={k} mean"), rows.get(f"gamma-poisson K={k} prior")
        gh, sup = rows.get(f"gaussian head K={k} mean"), rows.get(f"supervised K={k} (clean targets) output")
        if gp1 and pr1 and gh and sup:
            print(
                f"\ntargets (K={k}): mean - prior = {gp1['psnr'] - pr1['psnr']:+.2f} dB (target >= +1); mean - gaussian head = "
                f"{gp1['psnr'] - gh['psnr']:+.2f} dB (target >= 0 at low SNR); supervised - mean = "
                f"{sup['psnr'] - gp1['psnr']:+.2f} dB (target <= 1)"
            )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--snr", nargs="+", default=["low", "medium", "high"], choices=["low", "medium", "high"])
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--eval-frames", type=int, default=200, help="score the last N frames")
    p.add_argument("--steps", type=int, default=1500, help="training steps for every trained model")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="--curves: peak learning rate of the K runs (default: fit's)")
    p.add_argument(
        "--context", type=int, default=None, help="K for the gaussian-head and supervised rows (default: fit's default)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="small run: at most 250 steps, 100 scored frames")
    p.add_argument("--careamics-python", default=str(DEFAULT_BENCHVENV), help="python of the venv with careamics")
    p.add_argument("--no-careamics", dest="careamics", action="store_false")
    p.add_argument("--rss", action="store_true", help="also measure peak RSS of denoising --rss-frames frames")
    p.add_argument("--rss-frames", type=int, nargs=2, default=[2000, 20000])
    p.add_argument("--rss-only", action="store_true", help="only the peak-RSS measurement (implies --rss)")
    p.add_argument("--json", type=Path, default=None)
    # PSNR-vs-seconds curves and ghost statistics on one simulated movie folder (smlmdn simulate)
    p.add_argument(
        "--curves", action="store_true", help="PSNR vs seconds for --curve-runs on --movie-dir (time-budget fits)"
    )
    p.add_argument(
        "--movie-dir",
        default=None,
        help="folder written by `smlmdn simulate` (movie.tif, clean.tif, truth.csv, camera.json)",
    )
    p.add_argument(
        "--curve-runs",
        nargs="*",
        default=["0", "1", "2"],
        help="runs: default, default@FIELD=V,..., K, K:stem|branch, K:sup (default: 0 1 2)",
    )
    p.add_argument("--budget", type=float, default=300.0, help="--curves: training seconds per run")
    p.add_argument(
        "--curve-steps",
        type=int,
        default=None,
        help="--curves: train each run for this many steps instead of --budget s",
    )
    p.add_argument("--marks", type=float, nargs="+", default=[30, 60, 120, 200], help="--curves: snapshot times (s)")
    p.add_argument(
        "--grid",
        action="store_true",
        help="--curves (--curve-runs, --budget, --n2v-epochs) on every movie of the GRID, with a summary table",
    )
    p.add_argument("--grid-dir", default="/tmp/smlmdn_denoise_grid", help="--grid: folder of the simulated movies")
    p.add_argument("--grid-points", nargs="*", default=None, help="--grid: only these GRID names")
    # internal: N2V worker mode (run by the benchmark venv's python)
    p.add_argument("--n2v-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n2v-in", help=argparse.SUPPRESS)
    p.add_argument("--n2v-out", help=argparse.SUPPRESS)
    p.add_argument("--n2v-eval", type=int, help=argparse.SUPPRESS)
    p.add_argument(
        "--n2v-epochs",
        type=int,
        default=None,
        help="CAREamics epochs (default 10; with --curves: run N2V with "
        "its own epochs of the whole movie, batch --n2v-batch, beside the curves)",
    )
    p.add_argument("--n2v-batch", type=int, default=16, help="--curves: CAREamics batch size")
    p.add_argument(
        "--n2v-cache-only",
        action="store_true",
        help="--curves: use N2V predictions cached in the movie folder, never train N2V here",
    )
    args = p.parse_args()
    if args.n2v_worker:
        args.batch = args.batch or 4
        n2v_worker(args)
        return
    from smlmdn.denoise import FitConfig

    defaults = FitConfig()
    args.width = args.width or defaults.width
    args.depth = args.depth or defaults.depth
    args.batch = args.batch or defaults.batch
    args.context = defaults.context if args.context is None else args.context
    if args.curves or args.grid:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        args.eval_frames = args.eval_frames if args.eval_frames != 200 else 300
        print(
            f"# denoise_quality --curves: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
            f"# {' '.join([Path(sys.executable).name, *sys.argv])}",
            flush=True,
        )
        if args.grid:
            res = grid(args)
            print_grid(res)
        else:
            res = curves(args)
            print_curves(res, args)
        if args.json:
            args.json.write_text(json.dumps(res, indent=1, default=str))
            print(f"wrote {args.json}")
        return
    if args.quick:
        args.steps = min(args.steps, 250)
        args.eval_frames = min(args.eval_frames, 100)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    header = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "net": {"width": args.width, "depth": args.depth, "batch": args.batch, "patch": "default (64 px)"},
    }
    print(f"# denoise_quality: {header['machine']}\n# {header['command']}", flush=True)
    args.rss = args.rss or args.rss_only
    results = [] if args.rss_only else [bench_snr(snr, args) for snr in args.snr]
    out = {"header": header, "results": results}
    if args.rss:
        out["peak_rss"] = peak_rss(list(args.rss_frames), args)
    print_table(results, args)
    if args.rss:
        print("\n| frames denoised | peak RSS (MB) | frames/s |\n|---:|---:|---:|")
        for n, r in out["peak_rss"].items():
            print(f"| {n} | {r['peak_rss_mb']} | {r['frames_per_s']} |")
        a, b = args.rss_frames
        print(
            f"\n{args.size} x {args.size} px frames, one model (width 8, depth 2), estimate 'mean' to Zarr; "
            f"peak RSS ratio {b} vs {a} frames: {out['peak_rss'][b]['peak_rss_mb'] / out['peak_rss'][a]['peak_rss_mb']:.2f} (target <= 1.2)"
        )
    text = json.dumps(out, indent=1, default=str)
    print("\n" + text if args.json is None else "")
    if args.json:
        args.json.write_text(text)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
