"""Benchmark: scale-out of `smlmdn denoise` / `smlmdn localize` on dask workers, worker memory against movie
length, and resuming an interrupted denoise run.

Everything runs through the CLI in subprocesses, as a user would run it, on simulated movies
(`smlmdn.simulate`, "medium" preset) and a tiny model (`smlmdn fit --steps 30 --width 8 --depth 2`):
this measures scaling, not denoising quality.

0. Per block (issue 15): seconds to denoise one 256-frame block of the movie with the tiny model, timed
   inside the process that runs it: in this process with torch on 1 thread, and in a dask.distributed
   worker (`smlmdn.cluster.dask_scheduler("local", workers=1)`, a single-threaded worker process) with
   smlmdn's worker allocator setting (`smlmdn.parallel.tune_worker_allocator`) and, for comparison, without
   it (a second cluster). Median of 3 after a warm-up block; user/system CPU and page faults from
   getrusage. Target: worker / in-process <= 1.2.
1. Throughput (frames/s = frames / wall-clock seconds of the whole command, so start-up, model loading and
   the LocalCluster start are included) of `smlmdn denoise` with `--scheduler threads` (the default path)
   and `--scheduler local --workers 1|2` (a dask.distributed LocalCluster of single-threaded worker
   processes), and of `smlmdn localize --scheduler local --workers 1|2`; speed-up = time(1) / time(2).
2. Peak RSS of the client (the CLI process) and of each worker process for a short and a long movie
   (default 2,000 vs 20,000 frames of --rss-size px) with `--scheduler local --workers 2`. Method: psutil
   polls the CLI process and all its descendants every 0.2 s and keeps each process's largest RSS; worker
   processes are the descendants other than multiprocessing's resource tracker. Target: long/short <= 1.2.
3. Resume: `smlmdn denoise --block-frames K` is SIGKILLed once about half of its blocks have a done marker
   (OUT.zarr.partial/.smlmdn_done/<block>), then the same command is rerun (it resumes); its wall time is
   compared to a full uninterrupted run of the same command.

    .venv/bin/python benchmarks/scale.py [--frames 2000] [--size 64] [--rss-frames 2000 20000]
        [--rss-size 32] [--resume-block-frames 100] [--workdir DIR] [--json] [--json-out FILE]

The machine's cores may be shared with other jobs: absolute numbers are noisy, compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

# The smlmdn entry point next to this interpreter (the project's venv), else the one on PATH.
_BIN = Path(sys.executable).parent / "smlmdn"
SMLMDN = [str(_BIN) if _BIN.exists() else (shutil.which("smlmdn") or "smlmdn")]


def simulate(out: Path, frames: int, size: int) -> Path:
    """Write a simulated medium-SNR movie (uint16 ADU TIFF) and its camera.json into ``out``."""
    from smlmdn.simulate import SimulationParams, simulate_to_dir

    simulate_to_dir(SimulationParams.preset("medium", frames=frames, size=size, seed=0), out, progress=False)
    return out


class PeakRSS:
    """Poll a process and its descendants every ``interval`` s; keep each process's peak RSS (bytes)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak: dict[int, int] = {}
        self.name: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                rss = p.memory_info().rss
                if p.pid not in self.name:
                    self.name[p.pid] = " ".join(p.cmdline())[:200]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        mb = 1024 * 1024
        client = self.peak.get(self.pid, 0) / mb
        workers = [
            v / mb for k, v in self.peak.items() if k != self.pid and "resource_tracker" not in self.name.get(k, "")
        ]
        return {
            "client_peak_rss_MB": round(client, 1),
            "n_workers_seen": len(workers),
            "worker_peak_rss_MB_max": round(max(workers, default=0.0), 1),
            "worker_peak_rss_MB_sum": round(sum(workers), 1),
        }


def run_cli(args: list[str], measure_rss: bool = False) -> dict:
    """Run ``smlmdn ARGS``; return its wall time (s) and, when asked, the peak RSS of it and its workers."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*SMLMDN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss = PeakRSS(proc.pid) if measure_rss else None
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if rss:
        rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"smlmdn {' '.join(args)} failed ({proc.returncode}):\n{out}\n{err}")
    return {"seconds": seconds, **(rss.summary() if rss else {})}


def interrupt_half(args: list[str], done_dir: Path, n_blocks: int) -> dict:
    """Start ``smlmdn ARGS``, SIGKILL it once at least half of ``n_blocks`` done markers exist."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*SMLMDN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    done = 0
    while proc.poll() is None:
        done = len([p for p in done_dir.glob("*") if p.name.isdigit()]) if done_dir.exists() else 0
        if done >= n_blocks / 2:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and any child it started (its own session)
            proc.wait()
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(
            "the run finished before half of its blocks were done; use more frames or smaller --resume-block-frames"
        )
    done = len([p for p in done_dir.glob("*") if p.name.isdigit()])
    return {"seconds_until_kill": time.perf_counter() - t0, "blocks_done_at_kill": done}


def block_seconds(model: str, block: object, repeats: int = 3, tune: bool = True) -> list[dict]:
    """Denoise ``block`` (halo frame + 256 frames + halo frame) ``repeats`` times after a warm-up, in
    whatever process runs this; ``tune=False`` first disables smlmdn's worker allocator setting."""
    import resource

    import numpy as np
    import torch

    from smlmdn import parallel
    from smlmdn.denoise.apply import _block

    if not tune and not parallel._ALLOCATOR_TUNED:
        parallel._ALLOCATOR_TUNED.append(False)  # as before the fix: glibc left as the nanny set it
    info = {0: {"chunk-location": (1,), "num-chunks": (3,)}}
    _block(np.asarray(block)[:20], model, ("mean",), 256, "cpu", 1, info)
    out = []
    for _ in range(repeats):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        _block(np.asarray(block), model, ("mean",), 256, "cpu", 1, info)
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        out.append(
            {
                "wall_s": wall,
                "user_s": r1.ru_utime - r0.ru_utime,
                "sys_s": r1.ru_stime - r0.ru_stime,
                "page_faults": r1.ru_minflt - r0.ru_minflt,
                "torch_threads": torch.get_num_threads(),
            }
        )
    return out


def per_block(model: Path, movie: Path, camera: Path) -> list[dict]:
    """Section 0: one 256-frame block in this process (1 torch thread) and in a worker process, with and without the allocator setting."""
    import statistics

    import numpy as np
    import torch

    from smlmdn.camera import load_camera, movie_to_photons
    from smlmdn.cluster import dask_scheduler
    from smlmdn.io import open_movie

    block = np.asarray(movie_to_photons(open_movie(movie)[:258], load_camera(camera)), np.float32)
    runs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs["in-process, torch 1 thread"] = block_seconds(str(model), block)
    finally:
        torch.set_num_threads(threads)
    for label, tune in (("dask worker, allocator setting off (before)", False), ("dask worker (smlmdn default)", True)):
        with dask_scheduler("local", workers=1) as client:
            runs[label] = client.submit(block_seconds, str(model), block, 3, tune, pure=False).result()
    base = statistics.median(r["wall_s"] for r in runs["in-process, torch 1 thread"])
    rows = []
    for label, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "user_s", "sys_s", "page_faults")}
        rows.append(
            {
                "where": label,
                "seconds": round(med["wall_s"], 2),
                "user_s": round(med["user_s"], 2),
                "sys_s": round(med["sys_s"], 2),
                "page_faults": int(med["page_faults"]),
                "torch_threads": rs[0]["torch_threads"],
                "vs_in_process": round(med["wall_s"] / base, 2),
            }
        )
    return rows


def machine() -> str:
    mem = psutil.virtual_memory().total / 1e9
    return f"{os.cpu_count()}-core {platform.machine()} {platform.system()}, {mem:.0f} GB RAM, Python {platform.python_version()}"


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000, help="frames of the throughput and resume movie")
    parser.add_argument("--size", type=int, default=64, help="frame side (px) of the throughput and resume movie")
    parser.add_argument("--rss-frames", type=int, nargs=2, default=[2000, 20000], help="short and long movie for RSS")
    parser.add_argument("--rss-size", type=int, default=32, help="frame side (px) of the RSS movies")
    parser.add_argument("--resume-block-frames", type=int, default=100, help="--block-frames of the resume runs")
    parser.add_argument("--steps", type=int, default=30, help="training steps of the tiny model")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON result to this file")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["block", "throughput", "rss", "resume"],
        choices=["block", "throughput", "rss", "resume"],
        help="which parts to run (default: all)",
    )
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="smlmdn_scale_bench_"))
    t_start = time.perf_counter()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    result: dict = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rss_method": "psutil poll of the CLI process and its descendants every 0.2 s (peak per process)",
        "throughput_note": "frames / wall-clock seconds of the whole command (start-up, model load, cluster start included)",
    }
    try:
        sim = simulate(work / "sim", args.frames, args.size)
        movie, camera = sim / "movie.tif", sim / "camera.json"
        model = work / "model.pt"
        log(f"fitting a tiny model ({args.steps} steps, width 8, depth 2)")
        run_cli(
            [
                "fit",
                str(movie),
                "-o",
                str(model),
                "--camera",
                str(camera),
                "--steps",
                str(args.steps),
                "--width",
                "8",
                "--depth",
                "2",
                "-q",
            ]
        )
        common = ["--model", str(model), "--camera", str(camera), "-q"]

        # 0. one block: in-process vs in a worker process
        if "block" in args.sections:
            log("one 256-frame block: in-process and in dask workers")
            result["per_block"] = per_block(model, movie, camera)
        if "throughput" in args.sections:
            throughput(args, result, work, movie, camera, common, log)
        if "rss" in args.sections:
            rss_section(args, result, work, common, log)
        if "resume" in args.sections:
            resume_section(args, result, work, movie, common, log)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    report(result, args)


def throughput(
    args: argparse.Namespace, result: dict, work: Path, movie: Path, camera: Path, common: list[str], log
) -> None:
    """Section 1: frames/s of whole denoise / localize commands on threads and on 1 and 2 local worker processes."""
    rows = []
    for label, sched in [
        ("threads", ["--scheduler", "threads"]),
        ("local, 1 worker", ["--scheduler", "local", "--workers", "1"]),
        ("local, 2 workers", ["--scheduler", "local", "--workers", "2"]),
    ]:
        out = work / "thr.zarr"
        log(f"denoise {args.frames} frames, {label}")
        r = run_cli(["denoise", str(movie), *common, "-o", str(out), *sched])
        shutil.rmtree(out)
        rows.append(
            {
                "command": "denoise",
                "scheduler": label,
                "frames": args.frames,
                "size_px": args.size,
                "seconds": round(r["seconds"], 1),
                "frames_per_s": round(args.frames / r["seconds"], 1),
            }
        )
    for n in (1, 2):
        out = work / "locs.parquet"
        log(f"localize {args.frames} frames, local, {n} worker(s)")
        r = run_cli(
            [
                "localize",
                str(movie),
                "--camera",
                str(camera),
                "-o",
                str(out),
                "-q",
                "--scheduler",
                "local",
                "--workers",
                str(n),
            ]
        )
        out.unlink()
        rows.append(
            {
                "command": "localize",
                "scheduler": f"local, {n} worker{'s' if n > 1 else ''}",
                "frames": args.frames,
                "size_px": args.size,
                "seconds": round(r["seconds"], 1),
                "frames_per_s": round(args.frames / r["seconds"], 1),
            }
        )
    sec = {(r["command"], r["scheduler"]): r["seconds"] for r in rows}
    result["throughput"] = rows
    result["speedup_2_vs_1_workers"] = {
        "denoise": round(sec[("denoise", "local, 1 worker")] / sec[("denoise", "local, 2 workers")], 2),
        "localize": round(sec[("localize", "local, 1 worker")] / sec[("localize", "local, 2 workers")], 2),
        "denoise_threads_vs_local_2_workers": round(
            sec[("denoise", "local, 2 workers")] / sec[("denoise", "threads")], 2
        ),
    }


def rss_section(args: argparse.Namespace, result: dict, work: Path, common: list[str], log) -> None:
    """Section 2: peak RSS of client and workers, short vs long movie, 2 worker processes."""
    rss_rows = []
    for n in args.rss_frames:
        s = simulate(work / f"rss_{n}", n, args.rss_size)
        out = work / "rss.zarr"
        log(f"denoise {n} frames of {args.rss_size} px, local, 2 workers (RSS)")
        r = run_cli(
            ["denoise", str(s / "movie.tif"), *common, "-o", str(out), "--scheduler", "local", "--workers", "2"],
            measure_rss=True,
        )
        shutil.rmtree(out)
        shutil.rmtree(s)
        rss_rows.append(
            {
                "frames": n,
                "size_px": args.rss_size,
                "seconds": round(r["seconds"], 1),
                "frames_per_s": round(n / r["seconds"], 1),
                **{k: v for k, v in r.items() if k != "seconds"},
            }
        )
    result["rss"] = rss_rows
    w = [r["worker_peak_rss_MB_max"] for r in rss_rows]
    c = [r["client_peak_rss_MB"] for r in rss_rows]
    result["rss_ratio_long_vs_short"] = {
        "worker_max": round(w[1] / w[0], 3),
        "client": round(c[1] / c[0], 3),
        "target_met": w[1] / w[0] <= 1.2 and c[1] / c[0] <= 1.2,
    }


def resume_section(args: argparse.Namespace, result: dict, work: Path, movie: Path, common: list[str], log) -> None:
    """Section 3: resume after SIGKILL vs full rerun (default scheduler: threads)."""
    k = args.resume_block_frames
    n_blocks = -(-args.frames // k)
    out = work / "resume.zarr"
    cmd = ["denoise", str(movie), *common, "-o", str(out), "--block-frames", str(k)]
    log(f"resume: {n_blocks} blocks of {k} frames, SIGKILL at half")
    killed = interrupt_half(cmd, Path(str(out) + ".partial") / ".smlmdn_done", n_blocks)
    resumed = run_cli(cmd)
    shutil.rmtree(out)
    full = run_cli(cmd)
    shutil.rmtree(out)
    result["resume"] = {
        "frames": args.frames,
        "block_frames": k,
        "blocks": n_blocks,
        **killed,
        "resume_seconds": round(resumed["seconds"], 1),
        "full_run_seconds": round(full["seconds"], 1),
        "resume_vs_full": round(resumed["seconds"] / full["seconds"], 3),
        "expected_if_perfect": round(1 - killed["blocks_done_at_kill"] / n_blocks, 3),
    }
    result["resume"]["seconds_until_kill"] = round(result["resume"]["seconds_until_kill"], 1)


def report(result: dict, args: argparse.Namespace) -> None:
    """Print the tables (or JSON) and write the JSON file."""
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Machine: {result['machine']}\nCommand: `{result['command']}`\n")
    if "per_block" in result:
        print("One 256-frame block, timed inside the process that runs it (median of 3 after a warm-up):\n")
        print(table(result["per_block"]))
        ratio = result["per_block"][-1]["vs_in_process"]
        print(f"\nWorker / in-process: {ratio} (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}).\n")
    if "throughput" in result:
        print(f"Throughput ({result['throughput_note']}):\n")
        print(table(result["throughput"]))
        s = result["speedup_2_vs_1_workers"]
        print(
            f"\nSpeed-up 2 vs 1 worker processes: denoise {s['denoise']}x, localize {s['localize']}x; "
            f"denoise with threads is {s['denoise_threads_vs_local_2_workers']}x faster than local 2 workers.\n"
        )
    if "rss" in result:
        print(f"Peak RSS with 2 worker processes ({result['rss_method']}):\n")
        print(table(result["rss"]))
        q = result["rss_ratio_long_vs_short"]
        print(
            f"\nPeak RSS ratio long/short: worker {q['worker_max']}, client {q['client']} "
            f"(target <= 1.2: {'met' if q['target_met'] else 'NOT met'}).\n"
        )
    if "resume" in result:
        print("Resume after SIGKILL (default threads scheduler):\n")
        print(table([result["resume"]]))
    print(f"\nTotal benchmark time: {result['total_seconds']} s")


if __name__ == "__main__":
    main()
