"""Benchmark: the whole pipeline as a user runs it, each step's wall time and peak RSS (issue 15).

``smlmdn simulate`` -> ``smlmdn fit --time-budget`` -> ``smlmdn denoise`` -> ``smlmdn localize`` (raw and
hybrid with the denoised movie), each a separate process; for every movie length given (``--frames``,
e.g. a short and a 10x longer one) so that flat memory shows as equal peak RSS. Wall time, CPU time
and peak RSS (``ru_maxrss`` of the command's own process, from ``wait4`` in a small launcher, so the
benchmark's own memory is not counted) per step. Default scheduler (threads: everything in one
process per step).

    .venv/bin/python benchmarks/end_to_end.py --size 64 --frames 2000 20000 --time-budget 60 [--workdir DIR]

The issue asks for 256 x 256 x 50,000 frames; choose the sizes the machine's time allows and say so.
On a CPU, ``--denoise-frames N`` denoises only the first N frames (the hybrid step is then skipped):

    .venv/bin/python benchmarks/end_to_end.py --size 256 --frames 50000 --time-budget 300 --denoise-frames 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localize import run_process  # benchmarks/localize.py: the fork/exec launcher that measures one process


def run(args: list[str]) -> dict:
    """Run ``python -m smlmdn ARGS`` -> wall/CPU seconds, peak RSS (MB) and last printed line of that process."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return run_process([sys.executable, "-m", "smlmdn", *args], env, last_line=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="frame side, px")
    ap.add_argument("--frames", type=int, nargs="+", default=[2000, 20000], help="movie lengths")
    ap.add_argument("--time-budget", type=float, default=60.0, help="smlmdn fit --time-budget, s")
    ap.add_argument("--snr", default="medium")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument(
        "--denoise-frames",
        type=int,
        default=None,
        help="denoise only the first N frames (--frames 0:N) and skip the hybrid localization: a CPU cannot "
        "denoise 50,000 frames of 256 x 256 px in a session (~0.5 frames/s)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="smlmdn_e2e_"))
    rows = []
    t0 = time.perf_counter()
    try:
        for n in args.frames:
            d = work / f"f{n}"
            partial = args.denoise_frames is not None and args.denoise_frames < n
            sim = d / "sim"
            steps = [
                (
                    "simulate",
                    ["simulate", str(sim), "--frames", str(n), "--size", str(args.size), "--snr", args.snr, "-q"],
                ),
                (
                    "fit",
                    [
                        "fit",
                        str(sim / "movie.tif"),
                        "--camera",
                        str(sim / "camera.json"),
                        "-o",
                        str(d / "model.pt"),
                        "--time-budget",
                        str(args.time_budget),
                        "-q",
                    ],
                ),
                (
                    "denoise",
                    [
                        "denoise",
                        str(sim / "movie.tif"),
                        "--camera",
                        str(sim / "camera.json"),
                        "--model",
                        str(d / "model.pt"),
                        "-o",
                        str(d / "denoised.zarr"),
                        "-q",
                        *(["--frames", f"0:{args.denoise_frames}"] if partial else []),
                    ],
                ),
                (
                    "localize raw",
                    [
                        "localize",
                        str(sim / "movie.tif"),
                        "--camera",
                        str(sim / "camera.json"),
                        "-o",
                        str(d / "raw.hdf5"),
                        "-q",
                    ],
                ),
                (
                    "localize hybrid",
                    [
                        "localize",
                        str(sim / "movie.tif"),
                        "--camera",
                        str(sim / "camera.json"),
                        "--denoised",
                        str(d / "denoised.zarr"),
                        "-o",
                        str(d / "hybrid.hdf5"),
                        "-q",
                    ],
                ),
            ]
            if partial:
                steps = [(name, cmd) for name, cmd in steps if name != "localize hybrid"]
            for name, cmd in steps:
                print(f"{name}: {n} frames of {args.size} px", file=sys.stderr, flush=True)
                res = run(cmd)
                frames = args.denoise_frames if partial and name == "denoise" else n
                rows.append({"frames": n, "size": args.size, "step": name, "step_frames": frames, **res})
            shutil.rmtree(d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - t0
    print(
        f"\nend to end, {args.size} x {args.size} px, --snr {args.snr}, fit --time-budget {args.time_budget:g} s; "
        f"{os.cpu_count()} CPUs; {total:.0f} s in all\n"
    )
    print("| frames | step | wall s | CPU s | peak RSS MB | frames/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['frames']:,} | {r['step']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['step_frames'] / r['wall_s']:.1f} |"
        )
    if len(args.frames) > 1:
        a, b = args.frames[0], args.frames[-1]
        print(f"\npeak RSS, {b:,} vs {a:,} frames:")
        for step in dict.fromkeys(r["step"] for r in rows):
            ra = next(r for r in rows if r["frames"] == a and r["step"] == step)
            rb = next(r for r in rows if r["frames"] == b and r["step"] == step)
            print(f"- {step}: {rb['peak_rss_mb'] / ra['peak_rss_mb']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
