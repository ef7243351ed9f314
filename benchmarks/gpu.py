"""Benchmark: the GPU paths in one table (issue 15): training, block denoising and the torch MLE fitter.

Rows, each on the GPU (when torch sees one) and on the CPU for the ratio:

- ``fit steps/s``: training steps of the blind-spot net at ``smlmdn fit``'s defaults (width 16, depth 3,
  context 1, batch 4 crops of 64 px, NB loss in float64, Adam, gradient clipping), mixed precision
  (bfloat16 autocast, as ``smlmdn fit`` uses on CUDA) on and off;
- ``denoise frames/s``: posterior-mean denoising of 256 x 256 and 1024 x 1024 frames with the code
  ``smlmdn denoise`` runs per block (:class:`smlmdn.denoise.apply._Runner`, bfloat16 autocast on
  CUDA, 256 px tiles), plus the network's FLOPs per frame (``torch.utils.flop_counter``) and the
  achieved FLOP/s as a share of a measured matmul peak (bfloat16 on CUDA, float32 on the CPU);
- ``MLE fits/s``: the torch fitter (:func:`smlmdn.localize.fit_torch.fit_spots_torch`, float64; float32
  through the same chunk kernel, since the public function is float64 only) on 10^5 and 10^6 simulated
  7 x 7 spots (1,000 photons, background 10, sigma 1.3 px), and the numba CPU fitter
  (:func:`smlmdn.localize.fit.fit_spots`) with its agreement: median / max |dx| (px) over spots both
  fitters converged on;
- peak GPU memory per row (``torch.cuda.max_memory_allocated``).

Sized to finish in under 5 minutes on one GPU machine at the default sizes (not yet run on a GPU: none
was lent so far; the CPU rows at full size take most of it). ``--quick`` uses small sizes (128 and 256 px frames, 10^4 and
5 x 10^4 spots) and ``--cpu`` ignores the
GPU, so the script can be smoke-run anywhere::

    python benchmarks/gpu.py                 # on a GPU machine: the issue's sizes, GPU and CPU rows
    python benchmarks/gpu.py --quick --cpu   # smoke run on a CPU (small sizes)
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smlmdn.camera import Camera
from smlmdn.denoise import likelihood as L
from smlmdn.denoise.apply import DEFAULT_TILE, _Runner
from smlmdn.denoise.model_file import DenoiseModel
from smlmdn.denoise.network import BlindSpotNet, NetConfig
from smlmdn.localize import fit_torch
from smlmdn.localize.fit import CONVERGED, fit_spots
from smlmdn.psf import integrated_gaussian_1d

LEVEL, SCALE = 20.0, 4.5  # normalisation of the synthetic inputs (background ~20 photons)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def _timed(device: torch.device, f: Callable[[], Any]) -> float:
    _sync(device)
    t0 = time.perf_counter()
    f()
    _sync(device)
    return time.perf_counter() - t0


def train_rate(
    device: torch.device, amp: bool, steps: int, cfg: NetConfig, batch: int = 4, patch: int = 64
) -> dict[str, float]:
    """Training steps/s (after 3 warm-up steps) on Poisson crops, with or without bfloat16 autocast."""
    torch.manual_seed(0)
    net = BlindSpotNet(cfg).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.poisson(torch.full((batch, cfg.in_frames, patch, patch), LEVEL)).to(device)
    k = cfg.context

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            raw = net((x - LEVEL) / SCALE)
        p0, p1 = net.params(raw, LEVEL, SCALE)
        loss = L.nll(cfg.head, x[:, k], p0, p1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    _reset_peak(device)
    seconds = _timed(device, lambda: [step() for _ in range(steps)])
    return {"rate": steps / seconds, "seconds": seconds, "peak_mb": _peak_mb(device)}


def _model(cfg: NetConfig) -> DenoiseModel:
    torch.manual_seed(0)
    state = BlindSpotNet(cfg).state_dict()
    return DenoiseModel(
        net=cfg,
        state_dict=state,
        camera=Camera(),
        transform={"shift": 0.0, "factor": 1.0},
        norm={"level": LEVEL, "scale": SCALE},
    )


def network_flops(cfg: NetConfig, side: int) -> float:
    """Floating-point operations (multiply-add = 2) of one forward pass of one ``side`` x ``side`` frame."""
    from torch.utils.flop_counter import FlopCounterMode

    net = BlindSpotNet(cfg).eval()
    x = torch.zeros((1, cfg.in_frames, side, side))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def peak_flops(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """Measured matmul FLOP/s (best of 5) of ``n`` x ``n`` matrices: the machine's practical peak."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = min(_timed(device, lambda: a @ b) for _ in range(5))
    return 2.0 * n**3 / best


def denoise_rate(device: torch.device, cfg: NetConfig, side: int, frames: int) -> dict[str, float]:
    """Frames/s of the posterior mean for ``frames`` frames of ``side`` px (one block, halo frames given)."""
    runner = _Runner(_model(cfg), str(device.type))
    k = cfg.context
    rng = np.random.default_rng(0)
    photons = rng.poisson(LEVEL, size=(frames + 2 * k, side, side)).astype(np.float32)
    if device.type == "cuda":  # warm-up (cuDNN autotune, allocator); on a CPU one frame costs as much as the run
        runner.estimates(photons[: 1 + 2 * k], ("mean",), DEFAULT_TILE, k, k)
    _reset_peak(device)
    seconds = _timed(device, lambda: runner.estimates(photons, ("mean",), DEFAULT_TILE, k, k))
    return {"rate": frames / seconds, "seconds": seconds, "peak_mb": _peak_mb(device)}


def simulated_spots(
    n: int, seed: int = 0, box: int = 7, photons: float = 1000.0, bg: float = 10.0, sigma: float = 1.3
) -> np.ndarray:
    """``n`` Poisson spots (n, box, box) photons, centres uniform within +-0.5 px of the box centre."""
    rng = np.random.default_rng(seed)
    cx, cy = box / 2 + rng.uniform(-0.5, 0.5, n), box / 2 + rng.uniform(-0.5, 0.5, n)
    ex, ey = integrated_gaussian_1d(cx, sigma, box), integrated_gaussian_1d(cy, sigma, box)
    return rng.poisson(photons * ey[:, :, None] * ex[:, None, :] + bg).astype(np.float64)


def torch_fit(
    spots: np.ndarray, sigma: float, device: torch.device, dtype: torch.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """The torch fitter in ``dtype`` -> (x, y) (n, 2) and status (n,). float64 is the public
    :func:`~smlmdn.localize.fit_torch.fit_spots_torch`; float32 runs its chunk kernel on float32 spots."""
    if dtype == torch.float64:
        res = fit_torch.fit_spots_torch(spots, sigma, device=device)
        return res.theta[:, :2], res.status
    y = torch.as_tensor(spots, dtype=dtype, device=device)
    # the kernel's signature may carry a known-photons offset (multi-emitter fits): pass zeros then
    extra = (torch.zeros_like(y),) if "off" in inspect.signature(fit_torch._fit_chunk).parameters else ()
    xy, status = [], []
    with torch.no_grad():
        for s in range(0, len(y), 262144):
            out = fit_torch._fit_chunk(y[s : s + 262144], *extra, float(sigma), 4, 0.0, 1.0, 100, 1e-3)
            xy.append(out[0][:, :2].double().cpu())
            status.append(out[5].cpu())
    return torch.cat(xy).numpy(), torch.cat(status).numpy()


def fit_rows(
    device: torch.device, n: int, reference: tuple[np.ndarray, np.ndarray] | None, spots: np.ndarray
) -> list[dict[str, Any]]:
    """Torch fits/s in float32 and float64 on ``device`` and their agreement with the numba ``reference``."""
    rows = []
    for dtype in (torch.float32, torch.float64):
        torch_fit(spots[:1000], 1.3, device, dtype)  # warm-up
        _reset_peak(device)
        t0 = time.perf_counter()
        xy, status = torch_fit(spots, 1.3, device, dtype)
        seconds = time.perf_counter() - t0
        row = {
            "key": f"fit{n}",
            "what": f"torch MLE fits/s, {n:.0e} spots",
            "device": device.type,
            "setting": str(dtype).replace("torch.", ""),
            "rate": n / seconds,
            "seconds": seconds,
            "peak_mb": _peak_mb(device),
        }
        if reference is not None:
            ref_xy, ref_status = reference
            m = min(len(ref_xy), n)
            both = (status[:m] == CONVERGED) & (ref_status[:m] == CONVERGED)
            d = np.abs(xy[:m][both] - ref_xy[:m][both]).max(axis=1)
            row["agreement"] = (
                f"|dx| vs numba: median {np.median(d):.1e}, max {d.max():.1e} px over {int(both.sum()):,} spots; "
                f"converged {np.mean(status[:m] == CONVERGED):.4f} vs {np.mean(ref_status[:m] == CONVERGED):.4f}"
            )
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, e.g. on a CPU)")
    ap.add_argument("--cpu", action="store_true", help="ignore any GPU: CPU rows only")
    ap.add_argument("--cpu-threads", type=int, default=None, help="torch threads on the CPU (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    t_start = time.perf_counter()
    gpu = torch.device("cuda") if (torch.cuda.is_available() and not args.cpu) else None
    devices = [d for d in (gpu, torch.device("cpu")) if d is not None]
    cfg = NetConfig(width=16, depth=3, context=1)
    q = args.quick
    sizes = {
        "steps": {"cuda": 20 if q else 200, "cpu": 5 if q else 20},
        "sides": (128, 256) if q else (256, 1024),
        "frames": {"cuda": (16, 4) if q else (512, 64), "cpu": (4, 2) if q else (16, 2)},
        "spots": [10_000, 50_000] if q else [100_000, 1_000_000],
        "cpu_torch_fit_max": 50_000
        if q
        else 100_000,  # the torch fitter on the CPU is slow: time it on at most this many
    }
    rows: list[dict[str, Any]] = []
    for dev in devices:
        for amp in (False, True):
            if dev.type == "cpu" and amp:
                continue  # bfloat16 autocast on a CPU is not what anyone trains with
            r = train_rate(dev, amp, sizes["steps"][dev.type], cfg)
            rows.append(
                {
                    "key": "train",
                    "what": "fit steps/s (batch 4 x 64 px)",
                    "device": dev.type,
                    "setting": "AMP bf16" if amp else "float32",
                    **r,
                }
            )
        for side, frames in zip(sizes["sides"], sizes["frames"][dev.type], strict=True):
            r = denoise_rate(dev, cfg, side, frames)
            flops = network_flops(cfg, side)
            r["flops_per_frame"] = flops
            r["achieved_tflops"] = flops * r["rate"] / 1e12
            rows.append(
                {
                    "key": f"denoise{side}",
                    "what": f"denoise frames/s, {side} x {side}",
                    "device": dev.type,
                    "setting": "bf16 autocast" if dev.type == "cuda" else "float32",
                    **r,
                }
            )
    peaks = {}
    for dev in devices:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        peaks[dev.type] = peak_flops(dev, dtype, 8192 if dev.type == "cuda" else (1024 if q else 2048))
    for r in rows:
        if "achieved_tflops" in r:
            r["share_of_peak"] = r["achieved_tflops"] * 1e12 / peaks[r["device"]]
    for n in sizes["spots"]:
        spots = simulated_spots(n)
        fit_spots(spots[:1000], 1.3)  # numba warm-up (compile / cache)
        t0 = time.perf_counter()
        res = fit_spots(spots, 1.3)
        seconds = time.perf_counter() - t0
        reference = (res.theta[:, :2], res.status)
        rows.append(
            {
                "key": f"fit{n}",
                "what": f"numba MLE fits/s, {n:.0e} spots",
                "device": "cpu",
                "setting": f"float64, {os.cpu_count()} cores",
                "rate": n / seconds,
                "seconds": seconds,
                "peak_mb": float("nan"),
            }
        )
        for dev in devices:
            m = n if dev.type == "cuda" else min(n, sizes["cpu_torch_fit_max"])
            part = spots[:m]
            for r in fit_rows(dev, m, (reference[0][:m], reference[1][:m]), part):
                r["key"] = f"fit{n}"
                if m != n:
                    r["what"] = f"torch MLE fits/s, {m:.0e} of {n:.0e} spots"
                rows.append(r)
    total = time.perf_counter() - t_start
    name = torch.cuda.get_device_name(0) if gpu is not None else "none"
    print(
        f"\nGPU benchmark: GPU {name}; CPU {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"{'quick sizes' if q else 'full sizes'}; {total:.0f} s in all"
    )
    print(
        "matmul peak: "
        + ", ".join(f"{d} {p / 1e12:.2f} TFLOP/s ({'bf16' if d == 'cuda' else 'fp32'})" for d, p in peaks.items())
        + "\n"
    )
    print("| what | device | setting | rate | peak GPU MB | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        notes = r.get("agreement", "")
        if "flops_per_frame" in r:
            notes = f"{r['flops_per_frame'] / 1e9:.2f} GFLOP/frame, {r['achieved_tflops']:.3f} TFLOP/s = {100 * r['share_of_peak']:.1f} % of matmul peak"
        peak = "" if np.isnan(r["peak_mb"]) else f"{r['peak_mb']:.0f}"
        rate = f"{r['rate']:,.0f}" if r["rate"] >= 100 else f"{r['rate']:.3g}"
        print(f"| {r['what']} | {r['device']} | {r['setting']} | {rate} | {peak} | {notes} |")
    if gpu is not None:
        print(
            "\nGPU / CPU ratios (same row key; the same setting on the CPU where there is one, else its float32 row):"
        )
        for r in rows:
            if r["device"] != "cuda":
                continue
            cpu = [c for c in rows if c["device"] == "cpu" and c["key"] == r["key"]]
            same = [c for c in cpu if c["setting"] == r["setting"]] or cpu
            if same:
                print(
                    f"- {r['what']} ({r['setting']}): {r['rate'] / same[0]['rate']:.1f}x the CPU's {same[0]['what']} ({same[0]['setting']})"
                )
    if args.json:
        args.json.write_text(
            json.dumps({"gpu": name, "peaks": peaks, "rows": rows, "seconds": total}, indent=2, default=float) + "\n"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
