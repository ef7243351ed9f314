"""Scale-out (issue 7): batches go on past a bad file, interrupted denoising resumes from its finished
blocks, and a 2-process dask cluster writes exactly what the single-process run writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from smlmdn.camera import save_camera, to_photons
from smlmdn.cli import app
from smlmdn.denoise import fit_model
from smlmdn.io import DONE_DIR, open_movie, partial_path
from smlmdn.localize import read_localizations
from smlmdn.simulate import SimulationParams, simulate

runner = CliRunner()
# subprocesses (a SIGKILLed denoise and its resume), a 2-process cluster: minutes on 2 cores
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def acquisitions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small simulated acquisitions, a corrupt one, their camera file and a tiny model."""
    d = tmp_path_factory.mktemp("acq")
    raw = d / "raw"
    raw.mkdir()
    for seed in (1, 2):
        sim = simulate(SimulationParams.preset("high", frames=40, size=32, seed=seed))
        tifffile.imwrite(raw / f"cell{seed}.tif", sim.movie)
    (raw / "cell3.tif").write_bytes(b"II*\x00 this is not really a TIFF")
    save_camera(sim.camera, d / "camera.json")
    photons = to_photons(open_movie(raw / "cell1.tif"), sim.camera)
    model = fit_model(
        photons, sim.camera, steps=3, width=8, depth=1, patch=16, batch=2, val_every=3, val_crops=4, progress=False
    )
    model.save(d / "model.pt")
    return {"raw": raw, "camera": d / "camera.json", "model": d / "model.pt", "dir": d}


def test_batch_goes_on_past_a_corrupt_file_and_skips_finished(acquisitions: dict[str, Path], tmp_path: Path) -> None:
    a = acquisitions
    glob = str(a["raw"] / "*.tif")
    den = tmp_path / "den"
    result = runner.invoke(
        app, ["denoise", glob, "--model", str(a["model"]), "--camera", str(a["camera"]), "-o", str(den), "-q", "--json"]
    )
    assert result.exit_code == 1
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = events[-1]
    assert summary["event"] == "summary" and (summary["done"], summary["failed"]) == (2, 1)
    failed = [i for i in summary["items"] if i["status"] == "failed"]
    assert failed[0]["input"].endswith("cell3.tif") and "cannot read TIFF" in failed[0]["message"]
    assert sorted(p.name for p in den.iterdir()) == ["cell1_denoised.zarr", "cell2_denoised.zarr"]

    locs = tmp_path / "locs"
    result = runner.invoke(
        app,
        [
            "localize",
            glob,
            "--denoised",
            str(den),
            "--camera",
            str(a["camera"]),
            "-o",
            str(locs),
            "--format",
            "csv",
            "--format",
            "parquet",
            "-q",
        ],
    )
    assert result.exit_code == 1 and "1 of 3 movies failed" in " ".join(result.output.split())
    for name in ("cell1", "cell2"):
        table = read_localizations(locs / f"{name}.parquet")
        assert len(table) > 0 and table.attrs.get("mode", "hybrid") == "hybrid"
        assert (locs / f"{name}.csv").exists()

    again = runner.invoke(
        app,
        [
            "denoise",
            str(a["raw"] / "cell1.tif"),
            str(a["raw"] / "cell2.tif"),
            "--model",
            str(a["model"]),
            "--camera",
            str(a["camera"]),
            "-o",
            str(den),
            "--json",
        ],
    )
    assert again.exit_code == 0
    assert json.loads(again.stdout.splitlines()[-1])["skipped"] == 2


def _denoise_cmd(a: dict[str, Path], movie: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from smlmdn.cli import main; main()",
        "denoise",
        str(movie),
        "--model",
        str(a["model"]),
        "--camera",
        str(a["camera"]),
        "-o",
        str(out),
        "--block-frames",
        "2",
        "-q",
        "--threads",
        "1",
        *extra,
    ]


def test_killed_denoise_resumes_and_equals_an_uninterrupted_run(acquisitions: dict[str, Path], tmp_path: Path) -> None:
    a = acquisitions
    movie = tmp_path / "long.tif"
    sim = simulate(SimulationParams.preset("high", frames=400, size=48, seed=5))
    tifffile.imwrite(movie, sim.movie)
    out = tmp_path / "resumed.zarr"
    done = partial_path(out) / DONE_DIR
    n_blocks = 200
    proc = subprocess.Popen(_denoise_cmd(a, movie, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (done.exists() and len(list(done.glob("[0-9]*"))) >= 3):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "denoise did not start writing blocks"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # like a job killed at its time limit: no clean-up at all
    proc.wait()
    finished = len(list(done.glob("[0-9]*")))
    if finished >= n_blocks:
        pytest.fail("the run finished before it could be killed; make the movie longer")
    assert not out.exists()  # nothing under the final name
    chunk = partial_path(out) / "0" / "c" / "0" / "0" / "0"  # block 0, written before the kill
    stamp = chunk.stat().st_mtime_ns

    rerun = subprocess.run(_denoise_cmd(a, movie, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert out.exists() and not partial_path(out).exists()
    assert (out / "0" / "c" / "0" / "0" / "0").stat().st_mtime_ns == stamp  # block 0 was not recomputed

    whole = tmp_path / "whole.zarr"
    assert subprocess.run(_denoise_cmd(a, movie, whole), capture_output=True).returncode == 0
    np.testing.assert_array_equal(open_movie(out).compute(), open_movie(whole).compute())


def test_local_cluster_denoise_and_localize_equal_single_process(acquisitions: dict[str, Path], tmp_path: Path) -> None:
    a = acquisitions
    movie = a["raw"] / "cell1.tif"
    outs = {}
    for scheduler in ("synchronous", "local"):
        den = tmp_path / f"{scheduler}.zarr"
        locs = tmp_path / f"{scheduler}.parquet"
        args = ["--camera", str(a["camera"]), "--scheduler", scheduler, "--workers", "2", "-q"]
        result = runner.invoke(
            app, ["denoise", str(movie), "--model", str(a["model"]), "-o", str(den), "--block-frames", "8", *args]
        )
        assert result.exit_code == 0, result.output
        # hybrid localization on the same denoised input in both runs, so detection sees identical pixels
        result = runner.invoke(
            app, ["localize", str(movie), "--denoised", str(tmp_path / "synchronous.zarr"), "-o", str(locs), *args]
        )
        assert result.exit_code == 0, result.output
        outs[scheduler] = (open_movie(den).compute(), read_localizations(locs))
    # the network runs in other processes with their own thread pools: equal to float32 rounding
    np.testing.assert_allclose(outs["local"][0], outs["synchronous"][0], rtol=1e-6)
    cols = ["frame", "x_nm", "y_nm", "photons"]
    np.testing.assert_array_equal(outs["local"][1][cols].to_numpy(), outs["synchronous"][1][cols].to_numpy())
