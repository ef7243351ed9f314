"""`smlmdn demo --tiny` runs the whole pipeline end to end (simulate, fit, denoise, localize, compare)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smlmdn.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_demo_tiny_runs_end_to_end_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", str(out), "--tiny", "-q"])
    assert result.exit_code == 0, result.output
    for name in (
        "data/movie.tif",
        "data/clean.tif",
        "data/truth.csv",
        "data/camera.json",
        "model.pt",
        "report/report.json",
        "report/report.md",
        "report/crops.png",
        "report/renders.png",
        "report/metrics.png",
        "report/frc.png",
        "report/denoised/mean.zarr",
    ):
        assert (out / name).exists(), name
    report = json.loads((out / "report" / "report.json").read_text())
    for name in ("raw", "mean", "map", "prior"):
        assert all(math.isfinite(report["denoise"][name][k]) for k in ("psnr", "ssim", "bg_snr")), name
    for mode in ("raw", "denoised", "hybrid"):
        assert report["localize"][mode]["n"] > 0 and math.isfinite(report["localize"][mode]["jaccard"])
    # the terminal summary: the table, both answers and where the pictures are
    assert "Jacc %" in result.output and "Does denoising before localization help?" in result.output
    assert str(out / "report") in result.output and "crops.png" in result.output
    again = runner.invoke(app, ["demo", str(out), "--tiny", "-q"])
    assert again.exit_code == 1 and "already exists" in again.output and "--overwrite" in again.output
