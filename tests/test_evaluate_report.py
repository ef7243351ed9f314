"""Report assembly: metric dicts, answers derived from the numbers, Markdown, rich tables, figures."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smlmdn.evaluate import report as R
from smlmdn.evaluate.compare_report import CompareReport, ReportSettings


def _loc(eff: float | None, jac: float = 70.0, rmse: float = 20.0, n: int = 100) -> dict:
    return {
        "jaccard": jac,
        "rmse_nm": rmse,
        "efficiency": eff,
        "recall": 80.0,
        "precision": 90.0,
        "n": n,
        "nena_nm": 10.0,
        "frc_nm": 40.0,
        "median_crlb_nm": 9.0,
    }


def _den(p_raw: float, p_mean: float, s_raw: float = 0.6, s_mean: float = 0.8) -> dict:
    return {
        "raw": {"psnr": p_raw, "ssim": s_raw, "bg_snr": 3.0},
        "mean": {"psnr": p_mean, "ssim": s_mean, "bg_snr": 6.0},
        "prior": {"psnr": p_mean - 1, "ssim": s_mean, "bg_snr": 5.0},
    }


@pytest.mark.parametrize(("hybrid_eff", "start"), [(60.0, "Yes"), (40.0, "No"), (50.4, "Not clearly")])
def test_localization_answer_follows_the_efficiency_difference(hybrid_eff: float, start: str) -> None:
    loc = {"raw": _loc(50.0), "denoised": _loc(30.0), "hybrid": _loc(hybrid_eff)}
    text = R.answer_localization(loc, has_truth=True)
    assert text.startswith(start)
    assert f"{hybrid_eff:.1f} %" in text and "50.0 %" in text


def test_denoising_answer_uses_psnr_gain_and_best_estimate() -> None:
    better = R.answer_denoising(_den(30.0, 33.0))
    assert better.startswith("Denoising clearly improves") and "+3.0 dB" in better and "posterior mean" in better
    worse = R.answer_denoising(_den(30.0, 25.0, s_mean=0.5))
    assert worse.startswith("Denoising makes this movie worse") and "-5.0 dB" in worse
    mixed = R.answer_denoising(_den(30.0, 25.0, s_mean=0.9))
    assert mixed.startswith("Denoising gives mixed results")
    no_clean = {k: {**v, "psnr": None, "ssim": None} for k, v in _den(1, 1).items()}
    assert R.answer_denoising(no_clean).startswith("Without a noise-free reference") and "2.0x" in R.answer_denoising(
        no_clean
    )


def test_localize_metrics_without_truth_has_null_truth_keys(rng: np.random.Generator) -> None:
    # 40 molecules, each seen in 10 consecutive frames with 10 nm scatter
    xy = rng.uniform(500, 2500, size=(40, 2))
    rows = [
        (f, x + rng.normal(0, 10), y + rng.normal(0, 10))
        for i, (x, y) in enumerate(xy)
        for f in range(i * 5, i * 5 + 10)
    ]
    locs = pd.DataFrame(rows, columns=["frame", "x_nm", "y_nm"]).assign(crlb_x_nm=10.0, crlb_y_nm=10.0)
    out, (freq, frc) = R.localize_metrics(locs, None, (300, 32, 32), 100.0)
    assert all(out[k] is None for k in R.LOCALIZE_TRUTH_KEYS)
    assert out["n"] == 400 and out["median_crlb_nm"] == pytest.approx(10.0)
    assert out["nena_nm"] == pytest.approx(10.0, rel=0.25)
    assert out["frc_block_frames"] == 15 and len(freq) == len(frc)
    with_truth, _ = R.localize_metrics(locs, locs[["frame", "x_nm", "y_nm"]], (300, 32, 32), 100.0)
    assert with_truth["jaccard"] == 100.0 and with_truth["rmse_nm"] == 0.0 and with_truth["median_error_nm"] == 0.0


def test_json_number_and_frc_blocks() -> None:
    assert (
        R.json_number(float("nan")) is None
        and R.json_number(np.float32(2.5)) == 2.5
        and R.json_number(np.int64(3)) == 3
    )
    assert R.frc_block_frames(100) == 10 and R.frc_block_frames(1000) == 50 and R.frc_block_frames(10**6) == 100


def _report() -> CompareReport:
    settings = dict.fromkeys(f.name for f in fields(ReportSettings))
    inputs = dict(movie="m.tif", shape=(10, 20, 20), units="adu", truth=None, clean="c.tif", clean_units="detected")
    return CompareReport.from_dict(
        {
            "denoise": _den(30.0, 33.0),
            "localize": {"raw": _loc(50.0), "denoised": _loc(None), "hybrid": _loc(55.0)},
            "answers": {"denoising": "A1.", "localization": "A2."},
            "inputs": {**inputs, "denoiser": "a denoised movie", "denoised": {"mean": "d.zarr"}},
            "settings": {**settings, "estimates": ["mean"], "data_range": 100.0},
            "masks": {"source": "the ground truth", "signal_fraction": 0.1, "background_fraction": 0.6},
            "camera": {},
            "provenance": {},
            "figures": {"crops": "crops.png"},
        }
    )


def test_markdown_tables_and_figures(tmp_path: Path) -> None:
    report = _report()
    md = R.report_markdown(report)
    assert "| mean | 33.00 | 0.800 | 6.00 |" in md and "| denoised | 100 |" in md and "n/a" in md and "A1." in md
    assert "![crops](crops.png)" in md and "data range 100.00 detected photons" in md
    json.dumps(report.to_dict(), allow_nan=False)
    assert CompareReport.from_dict(report.to_dict()) == report
    frames = [0, 5]
    imgs = {
        "raw": np.random.default_rng(0).poisson(5, (2, 20, 20)).astype(np.float32),
        "mean": np.full((2, 20, 20), 5.0),
    }
    paths = [
        R.figure_crops(frames, imgs, tmp_path / "c.png"),
        R.figure_renders({"raw": np.eye(30), "hybrid": np.zeros((30, 30))}, tmp_path / "r.png", 10.0),
        R.figure_metrics(report, tmp_path / "m.png"),
        R.figure_frc({"raw": (np.linspace(0.001, 0.1, 20), np.linspace(1, 0, 20))}, {"raw": 25.0}, tmp_path / "f.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(Exception, match="already exists"):
        R.figure_metrics(report, tmp_path / "m.png")
    assert len(R.rich_tables(report)) == 2


def test_crop_window_centres_on_the_brightest_pixel() -> None:
    img = np.zeros((1, 200, 100))
    img[0, 150, 90] = 10
    ys, xs = R.crop_window((200, 100), img, size=48)
    assert ys.start <= 150 < ys.stop and xs.start <= 90 < xs.stop and ys.stop - ys.start == 48 and xs.stop == 100
    assert R.crop_window((30, 30), img[:, :30, :30]) == (slice(0, 30), slice(0, 30))
