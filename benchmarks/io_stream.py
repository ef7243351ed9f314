"""Benchmark: streaming read -> to_photons -> Zarr write, against a plain in-memory tifffile + zarr baseline.

For each movie length (default 2,000 and 20,000 frames of 256 x 256 uint16) it writes a BigTIFF input,
then measures in separate subprocesses (so peak RSS is per run):
  smlmdn:   open_movie -> to_photons -> write_movie (.zarr), block by block
  baseline: tifffile.imread (whole movie in memory) -> same float32 conversion -> zarr array write
and prints MB/s (input MB per second) and peak RSS (MB). Targets from issue 3: smlmdn peak RSS ratio
(longest/shortest) <= 1.2, and smlmdn throughput >= 0.5 x baseline.

    .venv/bin/python benchmarks/io_stream.py [--frames 2000 20000] [--size 256] [--workdir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

MAKE = textwrap.dedent(
    """
    import sys
    import dask.array as da
    from smlmdn.io import write_movie
    n, size = int(sys.argv[2]), int(sys.argv[3])
    rng = da.random.default_rng(0)
    movie = (100 + rng.poisson(40, size=(n, size, size), chunks=(256, size, size))).astype("uint16")
    write_movie(movie, sys.argv[1], progress=False)
    """
)

SMLMDN = textwrap.dedent(
    """
    import resource, sys, time
    from smlmdn.camera import Camera, to_photons
    from smlmdn.io import open_movie, write_movie
    t0 = time.perf_counter()
    write_movie(to_photons(open_movie(sys.argv[1]), Camera()), sys.argv[2], progress=False)
    print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """
)

BASELINE = textwrap.dedent(
    """
    import resource, sys, time
    import numpy as np, tifffile, zarr
    t0 = time.perf_counter()
    movie = tifffile.imread(sys.argv[1])
    photons = (movie.astype(np.float32) - np.float32(100.0)) * np.float32(0.5)
    z = zarr.create_array(sys.argv[2], shape=photons.shape, dtype=photons.dtype,
                          chunks=(128,) + photons.shape[1:], zarr_format=3)
    z[:] = photons
    print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """
)


def run(script: str, *args: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True)
    seconds, rss = out.stdout.split()[-2:]
    return float(seconds), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (needs ~3x the movie size)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="smlmdn_io_bench_"))
    rows = []
    try:
        for n in args.frames:
            src = work / f"movie_{n}.tif"
            subprocess.run([sys.executable, "-c", MAKE, str(src), str(n), str(args.size)], check=True)
            mb = src.stat().st_size / 1e6
            s_time, s_rss = run(SMLMDN, str(src), str(work / f"smlmdn_{n}.zarr"))
            b_time, b_rss = run(BASELINE, str(src), str(work / f"baseline_{n}.zarr"))
            rows.append(
                {
                    "frames": n,
                    "size": args.size,
                    "input_MB": round(mb, 1),
                    "smlmdn_MBps": round(mb / s_time, 1),
                    "smlmdn_peak_rss_MB": round(s_rss, 1),
                    "baseline_MBps": round(mb / b_time, 1),
                    "baseline_peak_rss_MB": round(b_rss, 1),
                    "throughput_ratio": round(b_time / s_time, 2),
                }
            )
            for p in work.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rss = [r["smlmdn_peak_rss_MB"] for r in rows]
    summary = {
        "rss_ratio_longest_vs_shortest": round(rss[-1] / rss[0], 3),
        "rss_target_met": rss[-1] / rss[0] <= 1.2,
        "throughput_target_met": all(r["throughput_ratio"] >= 0.5 for r in rows),
    }
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}, indent=2))
        return
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(
        f"\nsmlmdn peak RSS ratio (longest/shortest): {summary['rss_ratio_longest_vs_shortest']} "
        f"(target <= 1.2: {'met' if summary['rss_target_met'] else 'NOT met'}); "
        f"throughput >= 0.5 x baseline: {'met' if summary['throughput_target_met'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
