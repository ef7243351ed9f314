"""Benchmark: smlmdn's two research questions on simulated movies (high / medium / low SNR).

1. How well does the Gamma-Poisson blind-spot denoiser denoise? PSNR / SSIM against the noise-free
   movie and background SNR, for the raw photons, the posterior mean, the posterior MAP and the prior
   mean alone (the blind-spot prediction, what Noise2Void outputs).
2. Does denoising before localization improve the super-resolution result? Jaccard, lateral RMSE and
   efficiency (SMLM challenge 2019; matching per frame within 250 nm) of ``smlmdn localize`` in the
   ``raw``, ``denoised`` and ``hybrid`` modes, with identical localization settings.

Every SNR uses the same simulation settings (filaments, sCMOS camera, ``--size``, ``--frames``) and
the same training settings (``--steps`` / ``--time-budget``, network size); each movie gets its own
model, trained on that movie (self-supervised: no clean data is used). Everything goes through
:func:`smlmdn.simulate.simulate_to_dir`, :func:`smlmdn.denoise.fit_model` and
:func:`smlmdn.compare.compare`, i.e. exactly what ``smlmdn simulate``, ``smlmdn fit`` and
``smlmdn compare`` run.

Usage::

    .venv/bin/python benchmarks/research_questions.py --quick            # 2-core CPU, minutes
    .venv/bin/python benchmarks/research_questions.py --snr high medium low --frames 2000 --size 128 --steps 3000

Prints the tables and writes them, with the exact command, into ``benchmarks/RESULTS.md`` between
``<!-- research_questions:start -->`` and ``<!-- research_questions:end -->`` (other sections are left
alone; ``--no-write`` skips it). The report folders (figures included) stay in ``--work-dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
START, END = "<!-- research_questions:start -->", "<!-- research_questions:end -->"
# fixed steps, no time budget: every SNR gets the same training even when the shared CPU slows down
QUICK = dict(frames=1000, size=64, steps=800, time_budget=None, width=16, depth=2, patch=32, batch=8, lr=2e-3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--snr", nargs="+", default=["high", "medium", "low"], choices=["high", "medium", "low"])
    p.add_argument("--quick", action="store_true", help=f"small settings for a 2-core CPU: {QUICK}")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3000, help="training steps per model (the same for every SNR)")
    p.add_argument("--time-budget", type=float, default=None, help="training seconds per model (None: steps only)")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--work-dir", type=Path, default=None, help="where simulations, models and reports go (default: a temp dir)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write all numbers as JSON")
    p.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.name}")
    args = p.parse_args(argv)
    if args.quick:
        given = {
            a.split("=")[0].lstrip("-").replace("-", "_")
            for a in (argv if argv is not None else sys.argv[1:])
            if a.startswith("--")
        }
        for k, v in QUICK.items():
            if k not in given:
                setattr(args, k, v)
    return args


def run_one(snr: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Simulate, fit and compare one SNR preset; returns the compare report with timings."""
    from smlmdn.camera import movie_to_photons
    from smlmdn.compare import compare
    from smlmdn.denoise import FitConfig, fit_model
    from smlmdn.io import open_movie
    from smlmdn.simulate import SimulationParams, simulate_to_dir

    d = work / snr
    params = SimulationParams.preset(snr, frames=args.frames, size=args.size, seed=args.seed)
    paths = simulate_to_dir(params, d / "data", overwrite=True, progress=False)
    camera = params.get_camera()
    photons = movie_to_photons(open_movie(paths["movie"]), camera)
    cfg = FitConfig(
        steps=args.steps,
        time_budget=args.time_budget,
        width=args.width,
        depth=args.depth,
        patch=args.patch,
        batch=args.batch,
        context=args.context,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    model = fit_model(photons, camera, cfg, progress=False)
    fit_s = time.perf_counter() - t0
    model.save(d / "model.pt")
    t1 = time.perf_counter()
    report = compare(
        paths["movie"],
        camera,
        out_dir=d / "report",
        model=d / "model.pt",
        truth=paths["truth"],
        clean=paths["clean"],
        device=args.device,
        overwrite=True,
        progress=False,
    ).to_dict()
    report["bench"] = {
        "fit_s": round(fit_s, 1),
        "compare_s": round(time.perf_counter() - t1, 1),
        "steps": model.training.get("steps"),
        "stopped": model.training.get("stopped"),
        "n_truth": len(Path(paths["truth"]).read_text().splitlines()) - 1,
        "device": model.training.get("device"),
    }
    return report


def _f(v: Any, d: int = 2) -> str:
    return "n/a" if v is None else (str(v) if isinstance(v, int) else f"{v:.{d}f}")


def tables(results: dict[str, dict[str, Any]]) -> str:
    """Both Markdown tables (one row per SNR and estimate / mode) and a line per SNR with the answers."""
    lines = [
        "Question 1 (denoising; PSNR/SSIM against the noise-free movie, background SNR on truth-defined regions):",
        "",
        "| SNR | estimate | PSNR (dB) | SSIM | bg SNR |",
        "|---|---|---:|---:|---:|",
    ]
    for snr, r in results.items():
        for name, v in r["denoise"].items():
            lines.append(f"| {snr} | {name} | {_f(v['psnr'])} | {_f(v['ssim'], 3)} | {_f(v['bg_snr'])} |")
    lines += [
        "",
        "Question 2 (localization; same settings in every mode, matching within 250 nm):",
        "",
        "| SNR | mode | n | Jaccard (%) | recall (%) | precision (%) | RMSE (nm) | median error (nm) | efficiency (%) | NeNA (nm) | FRC (nm) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for snr, r in results.items():
        for mode, v in r["localize"].items():
            lines.append(
                f"| {snr} | {mode} | {v['n']} | {_f(v['jaccard'], 1)} | {_f(v['recall'], 1)} | {_f(v['precision'], 1)} | "
                f"{_f(v['rmse_nm'], 1)} | {_f(v.get('median_error_nm'), 1)} | {_f(v['efficiency'], 1)} | {_f(v['nena_nm'], 1)} | {_f(v['frc_nm'], 1)} |"
            )
    lines += [
        "",
        "| SNR | emitter-frames in truth | training steps (stopped by) | fit s | denoise + localize + score s |",
        "|---|---:|---:|---:|---:|",
    ]
    for snr, r in results.items():
        b = r["bench"]
        lines.append(
            f"| {snr} | {b['n_truth']} | {b['steps']} ({b['stopped']}) | {b['fit_s']:.0f} | {b['compare_s']:.0f} |"
        )
    lines += [""]
    for snr, r in results.items():
        lines += [f"- **{snr}**: 1. {r['answers']['denoising']} 2. {r['answers']['localization']}"]
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:  # pragma: no cover
        gpu = "?"
    return f"{os.cpu_count()}-core {cpu} ({platform.system()}), {gpu}"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace (or append) the research_questions section of ``path``, leaving every other section alone."""
    section = f"{START}\n{text.rstrip()}\n{END}\n"
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + section + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(new)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="smlmdn_rq_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for snr in args.snr:
        print(
            f"[{snr}] simulating {args.frames} frames of {args.size} x {args.size} px, training, comparing ...",
            file=sys.stderr,
            flush=True,
        )
        results[snr] = run_one(snr, args, work)
        print(
            f"[{snr}] done ({results[snr]['bench']['fit_s']:.0f} s fit, {results[snr]['bench']['compare_s']:.0f} s compare)",
            file=sys.stderr,
            flush=True,
        )
    total = time.perf_counter() - t0
    body = tables(results)
    print(body)
    command = " ".join(
        [
            ".venv/bin/python",
            "benchmarks/research_questions.py",
            *map(shlex.quote, argv if argv is not None else sys.argv[1:]),
        ]
    )
    settings = (
        f"Settings: {args.frames} frames of {args.size} x {args.size} px (100 nm pixels), filaments, sCMOS, presets of "
        f"`smlmdn simulate --snr`; model width {args.width}, depth {args.depth}, context {args.context}, patch {args.patch}, "
        f"batch {args.batch}, lr {args.lr:g}, at most {args.steps} steps"
        + (f" or {args.time_budget:g} s" if args.time_budget else "")
        + " per movie; localization box 7 px, PSF sigma 130 nm, "
        "adaptive threshold; `denoised`/`hybrid` use the posterior mean. FRC with halves made of random blocks of frames."
    )
    section = "\n".join(
        [
            "## Research questions (`benchmarks/research_questions.py`)",
            "",
            f"Machine: {machine()}; run {dt.date.today().isoformat()}, {total / 60:.1f} min in all "
            "(wall-clock; the machine may be shared, so timings are noisy: the quality numbers are what to compare).",
            f"Command: `{command}`",
            "",
            settings,
            "",
            body,
            "",
            f"Reports with figures were written to `{work}/<snr>/report/` (not kept in the repository).",
        ]
    )
    if args.json:
        args.json.write_text(json.dumps({"results": results, "command": command}, indent=2, default=str))
    if not args.no_write:
        write_section(section)
        print(f"wrote the research_questions section of {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
