"""The CLI shell: every subcommand is listed, errors are one line with a fix, `info` reports a movie."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
from typer.testing import CliRunner

from smlmdn import __version__
from smlmdn.cli import app

runner = CliRunner()


def test_help_lists_every_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("fit", "denoise", "localize", "compare", "simulate", "demo", "info"):
        assert name in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "missing.tif")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: movie") and "Fix: check the path" in lines[0]
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", "info", str(tmp_path / "missing.tif")])
    assert debug.exit_code == 1 and "Traceback" in debug.output


def test_messages_keep_square_brackets(tmp_path: Path) -> None:
    """Paths and fixes with square brackets (``movie[ch1].tif``, ``pip install 'smlmdn[cluster]'``) are printed as they are."""
    result = runner.invoke(app, ["info", str(tmp_path / "movie[ch1].tif")])
    assert result.exit_code != 0
    assert "movie[ch1].tif" in " ".join(result.output.split())
    export_help = runner.invoke(app, ["export", "--help"])
    assert "smlmdn[bioimageio]" in export_help.output


def test_info_reports_shape_stats_and_camera(tmp_path: Path, rng: np.random.Generator) -> None:
    # sCMOS-like movie: e_per_adu 0.5, offset 100, background varying across the field.
    bg = np.linspace(20, 60, 48)[None, None, :] * np.ones((1, 32, 1))
    photons = rng.poisson(np.broadcast_to(bg, (40, 32, 48)))
    adu = np.round(photons / 0.5 + 100 + rng.normal(0, 3, photons.shape)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "m.tif", adu)
    result = runner.invoke(app, ["info", str(tmp_path / "m.tif"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["shape"] == [40, 32, 48] and info["dtype"] == "uint16" and len(info["frame_stats"]) == 10
    assert abs(info["camera_estimate"]["e_per_adu"] - 0.5) / 0.5 < 0.1
    text = runner.invoke(app, ["info", str(tmp_path / "m.tif")])
    assert text.exit_code == 0 and "40 frames of 32 x 48 px" in " ".join(text.output.split())
    wrong = runner.invoke(app, ["info", str(tmp_path / "m.tif"), "--e-per-adu", "2.0", "--json"])
    assert wrong.exit_code == 0 and "disagrees" in " ".join(json.loads(wrong.stdout)["camera_warnings"])


def test_disk_full_is_one_line_and_leaves_no_output(tmp_path: Path, monkeypatch) -> None:
    import errno

    import smlmdn.io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(smlmdn.io, "_write_in_order", full)
    result = runner.invoke(app, ["simulate", str(tmp_path / "sim"), "--frames", "4", "--size", "16", "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the disk is full" in result.output and "Fix:" in result.output
    assert not (tmp_path / "sim" / "movie.tif").exists() and not list(tmp_path.rglob("*.partial"))
