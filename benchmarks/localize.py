"""Benchmark: smlmdn localize against Picasso's MLE on simulated movies (high / medium / low SNR).

For each SNR preset of :mod:`smlmdn.simulate` (filaments, sCMOS camera) it simulates a test movie and
reports, per method, recall / precision / Jaccard (%), lateral RMSE (nm) and the SMLM challenge 2019
efficiency (matching per frame, Hungarian, 250 nm; :func:`smlmdn.evaluate.match.match_localizations`),
"RMSE common" (the RMSE over the true emitters that every method found, so a method that finds
more dim emitters is not penalised for it), plus fits/s of the fit stage (spot
cutting + fitting) and localizations/s end to end (detection + fit: smlmdn's ``localize()``,
Picasso's ``identify`` + ``fit``). Timings are the best of 3 rounds in which all methods run in
turn, so load from other processes on a shared machine hits them alike.

Methods, run side by side in the same process on the same CPU thread count (``--threads``, default 1):
- smlmdn: ``localize()`` with its defaults (adaptive threshold, PSF sigma fixed at the simulated 130 nm);
- smlmdn fit-sigma: the same with the PSF width fitted per spot;
- Picasso gaussmle-spherical and gaussmle (its CPU Poisson MLE, one sigma / sigma x,y, both fit the
  width): ``picasso.localize.identify`` + ``fit`` on the ADU movie with the true camera numbers.
  Picasso's minimum net gradient has no adaptive default, so it is tuned for each SNR on a separate
  movie (another seed) for the best Jaccard -- an advantage smlmdn does not get.

Picasso (``picassosr``) is only installed in the benchmark environment::

    python3 -m venv .benchvenv && .benchvenv/bin/pip install torch==2.13.0 picassosr -e .
    .benchvenv/bin/python benchmarks/localize.py [--snr high medium low] [--frames 400] [--size 64] [--json out.json]

Run with any other interpreter the Picasso rows say why they are missing.

``--process`` (issue 15) instead compares whole processes, as a user runs them, on one movie (default:
a simulated 128 x 128 px x 2,000-frame "medium" movie): ``python -m smlmdn localize MOVIE -o
locs.hdf5`` (and ``-o locs.csv``) against a plain Picasso script (``io.load_movie``, ``identify``,
``get_spots``, ``fit_spots_gauss(mle=True)``, ``locs_from_fits_gauss``, ``io.save_locs``), each in its
own process, both with their default threads. One untimed warm-up round (numba caches, file cache),
then ``--rounds`` interleaved rounds (each in a new seeded random order); per process the wall time, CPU time (user + system, from
``wait4``) and peak RSS (``ru_maxrss`` of that process), medians reported. Picasso's minimum net gradient
is tuned for the best Jaccard on a separate movie (seed 2). It also times the fit kernels alone on the
same spots (smlmdn's candidates): fits/s of ``fit_spots`` (sigma fixed / fitted) and Picasso's
``fit_spots_gauss`` MLE (sx, sy and spherical). Rows: the default with HDF5 and CSV output, ``--single-emitter``
with HDF5 output, and with ``--baseline TREE`` the HDF5 default run with another source tree's code (a
before/after comparison in the same run)::

    .benchvenv/bin/python benchmarks/localize.py --process [--movie movie.tif --camera camera.json --truth truth.csv]

The script also checks
the Picasso HDF5 convention with Picasso itself: ``picasso.io.load_locs`` reads smlmdn's HDF5, and
Picasso's own fit of a single emitter agrees with smlmdn's converted coordinate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPEATS = 3  # fit-stage timings: best of this many runs (both methods)


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)


def _matcher() -> tuple[Callable[..., Any], str]:
    try:
        from smlmdn.evaluate.match import match_localizations

        return match_localizations, "smlmdn.evaluate.match"
    except ImportError:  # private fallback so the benchmark runs without the evaluate module
        from scipy.optimize import linear_sum_assignment

        def match_localizations(locs: pd.DataFrame, truth: pd.DataFrame, tolerance_nm: float = 250.0):
            tp = fp = fn = 0
            sq: list[float] = []
            for f in np.union1d(locs.frame.unique(), truth.frame.unique()):
                a = locs[locs.frame == f][["x_nm", "y_nm"]].to_numpy()
                b = truth[truth.frame == f][["x_nm", "y_nm"]].to_numpy()
                if len(a) and len(b):
                    d = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
                    cost = np.where(d <= tolerance_nm, d, 1e9)
                    r, c = linear_sum_assignment(cost)
                    ok = d[r, c] <= tolerance_nm
                    m = int(ok.sum())
                    sq += list(d[r, c][ok] ** 2)
                else:
                    m = 0
                tp += m
                fp += len(a) - m
                fn += len(b) - m
            jac = 100 * tp / max(1, tp + fp + fn)
            rmse = float(np.sqrt(np.mean(sq))) if sq else float("nan")
            eff = 100 - np.sqrt((100 - jac) ** 2 + (rmse if np.isfinite(rmse) else 0) ** 2)
            return argparse.Namespace(
                recall=100 * tp / max(1, tp + fn),
                precision=100 * tp / max(1, tp + fp),
                jaccard=jac,
                rmse_nm=rmse,
                efficiency=eff,
            )

        return match_localizations, "private Hungarian copy (smlmdn.evaluate.match not importable)"


def _scores(match: Callable[..., Any], locs: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    m = match(locs, truth, tolerance_nm=250.0)
    return {k: float(getattr(m, k)) for k in ("recall", "precision", "jaccard", "rmse_nm", "efficiency")}


# ------------------------------------------------------------------------------------------ smlmdn


def prepare_smlmdn(
    photons: np.ndarray, camera: Any, fit_sigma: bool
) -> tuple[pd.DataFrame, int, dict[str, Callable[[], Any]]]:
    """Localize once (for the scores); return the table, the number of fits and the timed stages."""
    import dask.array as da

    from smlmdn.localize import localize
    from smlmdn.localize.detect import default_threshold, detect
    from smlmdn.localize.fit import fit_spots

    sigma_px = 130.0 / camera.pixel_size
    movie = da.from_array(photons, chunks=(256, -1, -1))

    def end_to_end() -> pd.DataFrame:
        return localize(movie, camera, box=7, psf_sigma_nm=130.0, fit_sigma=fit_sigma, progress=False)

    cand = detect(photons, sigma_px, 7, default_threshold(sigma_px), read_noise_photons=camera.read_noise_photons)

    def fit_stage() -> None:  # cut + fit, on the same candidates as localize()
        _, ny, nx = photons.shape
        oy, ox = np.clip(cand.row - 3, 0, ny - 7), np.clip(cand.col - 3, 0, nx - 7)
        ar = np.arange(7)
        spots = photons[cand.frame[:, None, None], (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]]
        fit_spots(spots, sigma_px, fit_sigma=fit_sigma, read_noise_photons=camera.read_noise_photons)

    return end_to_end(), len(cand), {"end_to_end": end_to_end, "fit": fit_stage}


# ----------------------------------------------------------------------------------------- Picasso


def picasso_version() -> tuple[str | None, str]:
    try:
        import picasso

        return getattr(picasso, "__version__", "?"), ""
    except Exception as exc:  # report why, whatever it is
        return None, f"{type(exc).__name__}: {exc}"


_MEMMAPS: dict[int, np.memmap] = {}
_TMP = tempfile.TemporaryDirectory(prefix="smlmdn-bench-")


def as_memmap(movie_adu: np.ndarray) -> np.memmap:
    """Picasso's fit() accepts its own movie classes or a numpy memmap: store the ADU movie as .npy, map it."""
    key = id(movie_adu)
    if key not in _MEMMAPS:
        path = Path(_TMP.name) / f"movie{len(_MEMMAPS)}.npy"
        np.save(path, np.asarray(movie_adu))
        _MEMMAPS[key] = np.load(path, mmap_mode="r")
    return _MEMMAPS[key]


def prepare_picasso(
    movie_adu: np.ndarray, camera: Any, min_ng: float, method: str
) -> tuple[pd.DataFrame, int, dict[str, Callable[[], Any]]]:
    """Run Picasso identify + fit once; return the table (smlmdn convention), the number of fits and the timed stages."""
    from picasso import localize as plo

    movie_adu = as_memmap(movie_adu)
    cam = {
        "Baseline": camera.offset,
        "Sensitivity": camera.e_per_adu,
        "Gain": camera.em_gain,
        "Qe": camera.qe,
        "Pixelsize": camera.pixel_size,
    }

    def identify() -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids = plo.identify(movie_adu, min_ng, 7, threaded=False, return_info=False)
        return ids[0] if isinstance(ids, tuple) else ids

    ids = identify()

    def fit_stage() -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return plo.fit(
                movie_adu, camera_info=cam, identifications=ids, box=7, fitting_method=method, multiprocess=False
            )[0]

    if len(ids) == 0:
        return pd.DataFrame({"frame": np.zeros(0, np.int64), "x_nm": [], "y_nm": []}), 0, {"identify": identify}
    locs = fit_stage()
    # Picasso pixel centres are at integer coordinates: smlmdn/ThunderSTORM coordinate = picasso + 0.5
    out = pd.DataFrame(
        {
            "frame": locs["frame"].to_numpy().astype(np.int64),
            "x_nm": (locs["x"].to_numpy() + 0.5) * camera.pixel_size,
            "y_nm": (locs["y"].to_numpy() + 0.5) * camera.pixel_size,
        }
    )
    return out, len(ids), {"identify": identify, "fit": fit_stage}


def time_rounds(stages: dict[str, dict[str, Callable[[], Any]]], rounds: int) -> dict[str, dict[str, float]]:
    """Best-of-``rounds`` seconds of every stage of every method, interleaved (method A, B, ..., then again)
    so that load from other processes on a shared machine hits all methods alike."""
    best = {m: {k: float("inf") for k in st} for m, st in stages.items()}
    for _ in range(rounds):
        for m, st in stages.items():
            for k, f in st.items():
                t0 = time.perf_counter()
                f()
                best[m][k] = min(best[m][k], time.perf_counter() - t0)
    return best


def tune_picasso(
    movie_adu: np.ndarray, camera: Any, truth: pd.DataFrame, match: Callable[..., Any], method: str
) -> tuple[float, list]:
    """Minimum net gradient with the best Jaccard on a tuning movie (grid search)."""
    grid = [25, 50, 100, 175, 250, 400, 700, 1200, 2000, 4000, 8000]
    tried = []
    for ng in grid:
        locs, _, _ = prepare_picasso(movie_adu, camera, ng, method)
        tried.append((ng, _scores(match, locs, truth)["jaccard"] if len(locs) else 0.0))
    best = max(tried, key=lambda t: t[1])[0]
    return float(best), tried


def check_picasso_convention() -> dict[str, Any]:
    """Picasso reads smlmdn's HDF5, and Picasso's own fit of one emitter matches smlmdn's converted x, y."""
    import dask.array as da
    from picasso import io as pio
    from picasso import localize as plo

    from smlmdn.camera import Camera
    from smlmdn.localize import localize, write_localizations
    from smlmdn.psf import integrated_gaussian

    cam = Camera(offset=100.0, e_per_adu=1.0, em_gain=1.0, read_noise=0.0, pixel_size=100.0)
    rng = np.random.default_rng(0)
    x_px, y_px = 12.34, 23.45
    mu = 50000.0 * integrated_gaussian(x_px, y_px, 1.3, (48, 40)) + 10.0
    photons = rng.poisson(np.broadcast_to(mu, (5, 48, 40))).astype(np.float32)
    locs = localize(da.from_array(photons), cam, progress=False)
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_localizations(locs, Path(d) / "l.hdf5", cam)
        ploc, info = pio.load_locs(str(path))
        adu = (photons + 100).astype(np.uint16)
        ids = pd.DataFrame(
            {
                "frame": np.arange(5, dtype=np.uint32),
                "x": np.full(5, 12, np.int32),
                "y": np.full(5, 23, np.int32),
                "net_gradient": np.ones(5, np.float32),
            }
        )
        own, _ = plo.fit(
            as_memmap(adu),
            camera_info={"Baseline": 100.0, "Sensitivity": 1.0, "Gain": 1.0, "Qe": 1.0, "Pixelsize": 100.0},
            identifications=ids,
            box=7,
            fitting_method="gaussmle-spherical",
            multiprocess=False,
        )
    return {
        "picasso_load_locs_rows": len(ploc),
        "picasso_info_width_height_frames": [info[0]["Width"], info[0]["Height"], info[0]["Frames"]],
        "true_x_px_picasso_convention": x_px - 0.5,
        "smlmdn_hdf5_mean_x": float(ploc["x"].mean()),
        "picasso_own_fit_mean_x": float(own["x"].mean()),
        "smlmdn_hdf5_mean_y": float(ploc["y"].mean()),
        "picasso_own_fit_mean_y": float(own["y"].mean()),
        "max_abs_diff_px": float(
            max(
                abs(ploc["x"].to_numpy() - own["x"].to_numpy()).max(),
                abs(ploc["y"].to_numpy() - own["y"].to_numpy()).max(),
            )
        ),
    }


# ---------------------------------------------------------------------------------- whole process

PICASSO_SCRIPT = """
import sys
from picasso import io, localize
path, out, min_ng, offset, e_per_adu, gain, qe = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:8])
movie, info = io.load_movie(path)
ids = localize.identify(movie, min_ng, 7, return_info=False)
spots = localize.get_spots(movie, ids, 7, {"Baseline": offset, "Sensitivity": e_per_adu, "Gain": gain, "Qe": qe})
theta, loglik, iterations, _ = localize.fit_spots_gauss(spots, mle=True, return_stats=True)
locs = localize.locs_from_fits_gauss(ids, theta, 7, em=gain > 1, mle=True, log_likelihood=loglik, iterations=iterations)
io.save_locs(out, locs, info + [{"Generated by": "smlmdn benchmarks/localize.py --process"}])
"""


# Linux keeps a process's peak RSS across fork + exec, so a child forked by this (large) benchmark process
# would report at least this process's RSS: a small launcher (python -S, ~10 MB) forks the command instead
# and reports the command's own wall time and rusage (wait4) as one JSON line on the pipe fd it is given.
LAUNCHER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, u = os.wait4(pid, 0)
wall = time.perf_counter() - t0
os.write(int(sys.argv[1]), json.dumps({"wall_s": wall, "user_s": u.ru_utime, "sys_s": u.ru_stime, "peak_rss_mb": u.ru_maxrss / 1024.0,
                        "exit": os.waitstatus_to_exitcode(status)}).encode())
"""


def run_process(
    cmd: list[str], env: dict[str, str] | None = None, last_line: bool = False, cwd: str | None = None
) -> dict[str, Any]:
    """Run ``cmd`` to the end -> wall seconds, CPU seconds (user + system) and peak RSS (MB) of that process;
    with ``last_line``, also the last line it printed (``message``, at most 200 characters). ``cwd``: the
    directory to run it in (``python -m`` imports from there before ``PYTHONPATH``)."""
    import subprocess

    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-S", "-c", LAUNCHER, str(w), *cmd],
        env=env,
        stdout=subprocess.PIPE if last_line else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(w,),
        cwd=cwd,
    )
    os.close(w)
    out, err = proc.communicate()
    with os.fdopen(r) as f:
        text = f.read()
    res = json.loads(text) if text else {"exit": proc.returncode}
    if proc.returncode != 0 or res["exit"] != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({res['exit']}): {err.decode(errors='replace')[-2000:]}")
    times = {
        "wall_s": res["wall_s"],
        "cpu_s": res["user_s"] + res["sys_s"],
        "user_s": res["user_s"],
        "sys_s": res["sys_s"],
        "peak_rss_mb": res["peak_rss_mb"],
    }
    if last_line:
        times["message"] = (out.decode(errors="replace").strip().splitlines() or [""])[-1][:200]
    return times


def kernel_rates(photons: np.ndarray, camera: Any, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Fits/s of the fit kernels alone (best of ``rounds``) on the same 7 x 7 spots: smlmdn's candidates in ``photons``."""
    from smlmdn.localize.detect import default_threshold, detect
    from smlmdn.localize.fit import fit_spots

    sigma_px = 130.0 / camera.pixel_size
    cand = detect(photons, sigma_px, 7, default_threshold(sigma_px), read_noise_photons=camera.read_noise_photons)
    _, ny, nx = photons.shape
    oy, ox = np.clip(cand.row - 3, 0, ny - 7), np.clip(cand.col - 3, 0, nx - 7)
    ar = np.arange(7)
    spots = np.ascontiguousarray(
        photons[cand.frame[:, None, None], (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]]
    )
    kernels: dict[str, Callable[[], Any]] = {
        "smlmdn fit_spots (sigma fixed)": lambda: fit_spots(
            spots, sigma_px, read_noise_photons=camera.read_noise_photons
        ),
        "smlmdn fit_spots (fit sigma)": lambda: fit_spots(
            spots, sigma_px, fit_sigma=True, read_noise_photons=camera.read_noise_photons
        ),
    }
    if picasso_version()[0]:
        from picasso import localize as plo

        kernels["Picasso fit_spots_gauss MLE (sx, sy)"] = lambda: plo.fit_spots_gauss(spots, mle=True)
        kernels["Picasso fit_spots_gauss MLE (spherical)"] = lambda: plo.fit_spots_gauss(
            spots, mle=True, spherical=True
        )
    out = {}
    for name, f in kernels.items():
        f()  # compile / warm up
        best = min(_timed(f) for _ in range(rounds))
        out[name] = {"n_spots": len(spots), "seconds": best, "fits_per_s": len(spots) / best}
    return out


def _timed(f: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def process_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Whole-process smlmdn localize vs Picasso on one movie; returns the results and prints a Markdown table.

    The processes write into a temporary folder, removed at the end.
    """
    work = Path(tempfile.mkdtemp(prefix="smlmdn-process-"))
    try:
        return _process_benchmark(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _process_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """:func:`process_benchmark` in the folder ``work``."""
    import statistics

    from smlmdn.camera import load_camera, to_photons
    from smlmdn.io import open_movie
    from smlmdn.simulate import SimulationParams, simulate, simulate_to_dir

    if args.movie is None:
        sim = work / "sim"
        simulate_to_dir(
            SimulationParams.preset("medium", frames=args.process_frames, size=args.process_size, seed=1),
            sim,
            progress=False,
        )
        movie, camera_file, truth_file = sim / "movie.tif", sim / "camera.json", sim / "truth.csv"
    else:
        movie = Path(args.movie).resolve()
        camera_file = Path(args.camera).resolve() if args.camera else None
        truth_file = Path(args.truth).resolve() if args.truth else None
    camera = load_camera(camera_file)
    pversion, pwhy = picasso_version()
    match, match_source = _matcher()
    truth = pd.read_csv(truth_file) if truth_file else None
    shape = tuple(open_movie(movie).shape)
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    py = args.smlmdn_python or sys.executable
    if os.sep in py:  # a path: the processes run in the work folder
        py = str(Path(py).absolute())
    commands: dict[str, tuple[list[str], Path]] = {}
    envs: dict[str, dict[str, str]] = {}

    def smlmdn_command(name: str, out: Path, *options: str) -> None:
        cmd = [py, "-m", "smlmdn", "localize", str(movie), "--camera", str(camera_file), "-o", str(out)]
        commands[name] = ([*cmd, *options, "--overwrite", "-q"], out)

    for suffix in ("hdf5", "csv"):
        smlmdn_command(f"smlmdn localize -o {suffix}", work / f"smlmdn.{suffix}")
    smlmdn_command("smlmdn localize --single-emitter -o hdf5", work / "single.hdf5", "--single-emitter")
    if args.baseline is not None:  # the same command with another checkout's code, e.g. before a change
        name = f"smlmdn localize -o hdf5 ({args.baseline_label or args.baseline})"
        smlmdn_command(name, work / "baseline.hdf5")
        envs[name] = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(Path(args.baseline).resolve()), os.environ.get("PYTHONPATH", "")]),
        }
    min_ng = None
    if pversion:
        if args.picasso_min_ng is not None:
            min_ng = args.picasso_min_ng
        else:
            tune = simulate(SimulationParams.preset("medium", frames=200, size=shape[1], seed=2))
            min_ng, _ = tune_picasso(tune.movie, tune.camera, tune.truth, match, "gaussmle")
        out = work / "picasso.hdf5"
        commands["Picasso identify + MLE"] = (
            [
                sys.executable,
                "-c",
                PICASSO_SCRIPT,
                str(movie),
                str(out),
                str(min_ng),
                str(camera.offset),
                str(camera.e_per_adu),
                str(camera.em_gain),
                str(camera.qe),
            ],
            out,
        )
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in commands}
    for r in range(args.rounds + 1):  # round 0: warm-up, not counted
        # a new order each round (seeded): no command always runs right after the same one (in a fixed
        # order the first smlmdn row, right after Picasso's run, came out 4-8 % slower than the same code
        # in the baseline row)
        names = list(commands)
        random.Random(r).shuffle(names)
        for name in names:
            cmd = commands[name][0]
            # in the work folder: `python -m smlmdn` run in a source tree would import that tree's code first,
            # whatever PYTHONPATH says (every row would run the same code as the baseline row)
            res = run_process(cmd, envs.get(name, env), cwd=str(work))
            if r:
                runs[name].append(res)
    rows = []
    for name, (_, out) in commands.items():
        med = {k: statistics.median(x[k] for x in runs[name]) for k in runs[name][0]}
        if name.startswith("Picasso"):
            import h5py

            with h5py.File(out, "r") as f:
                ploc = f["locs"][...]
            locs = pd.DataFrame(
                {
                    "frame": ploc["frame"].astype(np.int64),
                    "x_nm": (ploc["x"] + 0.5) * camera.pixel_size,
                    "y_nm": (ploc["y"] + 0.5) * camera.pixel_size,
                }
            )
        else:
            from smlmdn.localize import read_localizations

            locs = read_localizations(out)
        row = {"process": name, "n_locs": len(locs), **med, "wall_s_all": [x["wall_s"] for x in runs[name]]}
        if truth is not None:
            row["jaccard"] = float(match(locs, truth, tolerance_nm=250.0).jaccard)
        rows.append(row)
    picasso_rows = [r for r in rows if r["process"].startswith("Picasso")]
    if picasso_rows:
        for r in rows:
            r["picasso_wall_over_this"] = picasso_rows[0]["wall_s"] / r["wall_s"]
    photons = np.asarray(to_photons(open_movie(movie)[: args.kernel_frames], camera), dtype=np.float32)
    kernels = kernel_rates(photons, camera)
    result = {
        "movie": str(movie),
        "shape": list(shape),
        "rounds": args.rounds,
        "picasso": pversion or f"not available: {pwhy}",
        "picasso_min_net_gradient": min_ng,
        "matching": match_source,
        "python": sys.executable,
        "smlmdn_python": py,
        "cpu_count": os.cpu_count(),
        "rows": rows,
        "kernels": kernels,
    }
    print(
        f"\nwhole process: {shape[0]} frames of {shape[1]} x {shape[2]} px ({movie}); median of {args.rounds} interleaved rounds "
        f"after a warm-up; {os.cpu_count()} CPUs, default threads; Picasso {result['picasso']} (min net gradient {min_ng})\n"
    )
    print("| process | localizations | Jaccard | wall s | CPU s (user + sys) | peak RSS MB | Picasso wall / this |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['process']} | {r['n_locs']:,} | {r.get('jaccard', float('nan')):.1f} | {r['wall_s']:.2f} | "
            f"{r['cpu_s']:.2f} ({r['user_s']:.2f} + {r['sys_s']:.2f}) | {r['peak_rss_mb']:.0f} | {r.get('picasso_wall_over_this', float('nan')):.2f} |"
        )
    print(
        f"\nfit kernels alone, same {next(iter(kernels.values()))['n_spots']:,} spots (7 x 7, smlmdn's candidates in the first "
        f"{len(photons)} frames), best of 3:\n"
    )
    print("| kernel | fits/s |")
    print("|---|---|")
    for name, k in kernels.items():
        print(f"| {name} | {k['fits_per_s']:,.0f} |")
    return result


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snr", nargs="+", default=["high", "medium", "low"])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--density", type=float, default=None, help="emitters per um^2 (default: the simulator's)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both methods (numba / BLAS)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--process", action="store_true", help="whole-process comparison instead (see above)")
    ap.add_argument("--movie", type=Path, default=None, help="--process: movie to localize (default: simulate one)")
    ap.add_argument("--camera", type=Path, default=None, help="--process: its camera file")
    ap.add_argument("--truth", type=Path, default=None, help="--process: its ground truth CSV (optional)")
    ap.add_argument("--process-frames", type=int, default=2000)
    ap.add_argument("--process-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="--process: timed rounds")
    ap.add_argument("--kernel-frames", type=int, default=500, help="--process: frames whose candidates the kernels fit")
    ap.add_argument(
        "--picasso-min-ng", type=float, default=None, help="--process: Picasso's minimum net gradient (default: tuned)"
    )
    ap.add_argument("--smlmdn-python", default=None, help="--process: interpreter for smlmdn (default: this one)")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="--process: also run smlmdn -o hdf5 with the code of this source tree (e.g. `git archive` of an older commit)",
    )
    ap.add_argument("--baseline-label", default=None, help="--process: the baseline row's name (default: its path)")
    args = ap.parse_args()
    if args.process:
        result = process_benchmark(args)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
        return
    _set_threads(args.threads)

    import numba

    numba.set_num_threads(args.threads)
    from smlmdn.camera import to_photons
    from smlmdn.simulate import SimulationParams, simulate

    match, match_source = _matcher()
    pversion, pwhy = picasso_version()
    results: dict[str, Any] = {
        "frames": args.frames,
        "size": args.size,
        "threads": args.threads,
        "matching": match_source,
        "picasso": pversion or f"not available: {pwhy}",
        "rows": [],
    }
    if pversion:
        try:
            results["picasso_convention_check"] = check_picasso_convention()
        except Exception as exc:
            results["picasso_convention_check"] = f"failed: {type(exc).__name__}: {exc}"
    # warm up numba (compile / load cache) outside the timings
    _s = simulate(SimulationParams.preset("high", frames=4, size=32, seed=99))
    for fs in (False, True):
        for f in prepare_smlmdn(np.asarray(to_photons(_s.movie, _s.camera)), _s.camera, fs)[2].values():
            f()
    if pversion:
        for method in ("gaussmle-spherical", "gaussmle"):
            prepare_picasso(_s.movie, _s.camera, 1000, method)

    for snr in args.snr:
        extra = {"density": args.density} if args.density else {}
        test = simulate(SimulationParams.preset(snr, frames=args.frames, size=args.size, seed=1, **extra))
        photons = np.asarray(to_photons(test.movie, test.camera), dtype=np.float32)
        n_truth = len(test.truth)
        runs: dict[str, tuple[pd.DataFrame, int, dict]] = {}
        info: dict[str, dict[str, Any]] = {}
        for label, fit_sigma in (("smlmdn", False), ("smlmdn fit-sigma", True)):
            runs[label] = prepare_smlmdn(photons, test.camera, fit_sigma)
        if pversion:
            tune = simulate(
                SimulationParams.preset(snr, frames=max(100, args.frames // 2), size=args.size, seed=2, **extra)
            )
            for method in ("gaussmle-spherical", "gaussmle"):
                label = f"Picasso {method}"
                try:
                    best, tried = tune_picasso(tune.movie, tune.camera, tune.truth, match, method)
                    runs[label] = prepare_picasso(test.movie, test.camera, best, method)
                    info[label] = {"min_net_gradient": best, "tuning": tried}
                except Exception as exc:  # the table says why
                    results["rows"].append(
                        {"snr": snr, "method": label, "note": f"failed: {type(exc).__name__}: {exc}"}
                    )
        else:
            results["rows"].append(
                {"snr": snr, "method": "Picasso MLE", "note": f"not run: picassosr not importable ({pwhy})"}
            )
        seconds = time_rounds({label: r[2] for label, r in runs.items()}, REPEATS)
        matches = {label: match(r[0], test.truth, tolerance_nm=250.0) for label, r in runs.items()}
        common = None  # the true emitters that every method found
        if all(hasattr(m, "pairs") for m in matches.values()):
            common = set.intersection(*(set(m.pairs.truth_index) for m in matches.values()))
        for label, (locs, n_fits, _) in runs.items():
            sec = seconds[label]
            e2e = sec["end_to_end"] if "end_to_end" in sec else sec["identify"] + sec.get("fit", 0.0)
            row = {
                "snr": snr,
                "method": label,
                "n_truth": n_truth,
                "n_locs": len(locs),
                **_scores(match, locs, test.truth),
                "fits_per_s": n_fits / sec["fit"] if sec.get("fit") else float("nan"),
                "locs_per_s_end_to_end": len(locs) / e2e,
                "n_fits": n_fits,
                "seconds_end_to_end": e2e,
                **info.get(label, {}),
            }
            if common is not None:
                pairs = matches[label].pairs
                sel = pairs[pairs.truth_index.isin(common)]
                row["rmse_common_nm"] = float(np.sqrt(np.mean(sel.distance_nm**2))) if len(sel) else float("nan")
                row["n_common"] = len(common)
            results["rows"].append(row)

    header = (
        f"{'snr':7s} {'method':36s} {'recall':>7s} {'prec':>7s} {'Jaccard':>8s} {'RMSE nm':>8s} {'RMSE common':>11s} "
        f"{'effic.':>7s} {'fits/s':>9s} {'locs/s e2e':>10s}"
    )
    print(
        f"\nlocalization benchmark: {args.frames} frames of {args.size} x {args.size} px per SNR, filaments, sCMOS; "
        f"{args.threads} CPU thread(s); matching: {match_source}; Picasso: {results['picasso']}"
    )
    print(header)
    print("-" * len(header))
    for r in results["rows"]:
        if "note" in r:
            print(f"{r['snr']:7s} {r['method']:36s} {r['note']}")
            continue
        name = r["method"] + (f" (ng {r['min_net_gradient']:g})" if "min_net_gradient" in r else "")
        print(
            f"{r['snr']:7s} {name:36s} {r['recall']:7.1f} {r['precision']:7.1f} {r['jaccard']:8.1f} {r['rmse_nm']:8.1f} "
            f"{r.get('rmse_common_nm', float('nan')):11.1f} {r['efficiency']:7.1f} {r['fits_per_s']:9.0f} {r['locs_per_s_end_to_end']:10.0f}"
        )
    if "picasso_convention_check" in results:
        print("\nPicasso HDF5 convention check (Picasso's load_locs on smlmdn's file vs Picasso's own fit):")
        print(json.dumps(results["picasso_convention_check"], indent=2))
    text = json.dumps(
        {**results, "rows": [{k: v for k, v in r.items() if k != "tuning"} for r in results["rows"]]},
        indent=2,
        default=float,
    )
    print("\nJSON:")
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    sys.exit(main())
