"""`smlmdn compare` end to end on a tiny simulated movie: files, finite numbers that agree with the
evaluate functions called directly, null truth keys without truth, and one-line errors for bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smlmdn.camera import movie_to_photons
from smlmdn.cli import app
from smlmdn.compare import compare, read_truth
from smlmdn.denoise import fit_model
from smlmdn.errors import SmlmdnError
from smlmdn.evaluate import background_snr, match_localizations, nena_precision, psnr, signal_background_masks, ssim
from smlmdn.evaluate.compare_report import CompareReport
from smlmdn.io import open_movie, write_movie
from smlmdn.localize import localize
from smlmdn.localize.extend import own_frames
from smlmdn.simulate import SimulationParams, simulate_to_dir

runner = CliRunner()
FIGURES = (
    "crops.png",
    "renders.png",
    "metrics.png",
    "frc.png",
    "render_raw.png",
    "render_denoised.png",
    "render_hybrid.png",
)
DENOISE_KEYS = ("psnr", "ssim", "bg_snr")
LOCALIZE_KEYS = ("jaccard", "rmse_nm", "efficiency", "recall", "precision", "n")


def _simulated_with_model(d: Path, frames: int, **net: int) -> dict[str, Path]:
    """A ``frames``-frame 32 x 32 px medium-preset movie (seed 5) in ``d / "sim"`` and a tiny model trained with ``net``."""
    params = SimulationParams.preset("medium", frames=frames, size=32, seed=5)
    paths = simulate_to_dir(params, d / "sim", progress=False)
    camera = params.get_camera()
    photons = movie_to_photons(open_movie(paths["movie"]), camera)
    fit_model(photons, camera, depth=2, patch=16, progress=False, **net).save(d / "model.pt")
    return {**paths, "dir": d, "model": d / "model.pt"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 80-frame 32 x 32 px simulated movie (movie.tif, clean.tif, truth.csv, camera.json) and a 3-step tiny model."""
    return _simulated_with_model(tmp_path_factory.mktemp("cmp"), 80, steps=3, width=8, batch=2, val_crops=4)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 12-frame 32 x 32 px simulated movie and a 1-step model: for the errors raised before any work."""
    return _simulated_with_model(tmp_path_factory.mktemp("cmp_small"), 12, steps=1, width=4, batch=1, val_crops=1)


@pytest.fixture(scope="module")
def with_truth(data: dict[str, Path]) -> tuple[dict, Path]:
    camera = read_camera(data)
    out = data["dir"] / "report"
    report = compare(
        data["movie"],
        camera,
        out_dir=out,
        model=data["model"],
        truth=data["truth"],
        clean=data["clean"],
        keep_denoised=True,
        progress=False,
    )
    return report, out


def read_camera(data: dict[str, Path]):
    from smlmdn.camera import load_camera

    return load_camera(data["camera"])


@pytest.mark.slow
def test_compare_writes_every_file_with_the_issue_structure(with_truth: tuple[CompareReport, Path]) -> None:
    _, out = with_truth
    for name in (
        "report.json",
        "report.md",
        *FIGURES,
        "render_truth.png",
        "locs_raw.csv",
        "locs_hybrid.csv",
        "locs_denoised.csv",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert not out.with_name(out.name + ".partial").exists()
    on_disk = json.loads((out / "report.json").read_text())
    assert set(on_disk["denoise"]) == {"raw", "mean", "map", "prior"}
    assert set(on_disk["localize"]) == {"raw", "denoised", "hybrid", "raw linked", "denoised linked", "hybrid linked"}
    for name, values in on_disk["denoise"].items():
        for key in DENOISE_KEYS:
            assert isinstance(values[key], float) and math.isfinite(values[key]), (name, key)
    for mode, values in on_disk["localize"].items():
        for key in LOCALIZE_KEYS:
            assert values[key] is not None and math.isfinite(values[key]), (mode, key)
        assert values["n"] > 20
    md = (out / "report.md").read_text()
    assert "| raw |" in md and "| hybrid |" in md and "![crops](crops.png)" in md
    assert on_disk["answers"]["denoising"] in md and on_disk["answers"]["localization"] in md


#: report.json's keys, in order: the file's format (pinned so refactoring the report cannot change it).
REPORT_KEYS = (
    "denoise",
    "localize",
    "answers",
    "inputs",
    "settings",
    "masks",
    "camera",
    "provenance",
    "figures",
    "timing_s",
)
ROW_KEYS = {
    "denoise": ("psnr", "ssim", "bg_snr"),
    "localize": (
        *("jaccard", "rmse_nm", "efficiency", "recall", "precision", "tp", "fp", "fn", "median_error_nm"),
        *("error_over_crlb", "n", "median_crlb_nm", "nena_nm", "frc_nm", "frc_block_frames", "n_candidates"),
        *("n_rejected", "n_dropped_nonconverged", "n_dropped_outside", "n_saturated", "n_tracks", "n_extended"),
    ),
}
SECTION_KEYS = {
    "answers": ("denoising", "localization"),
    "settings": (
        *("estimates", "localize_estimate", "tolerance_nm", "box", "psf_sigma_nm", "fit_sigma", "threshold"),
        *("acceptance", "fdr", "pool", "link_distance_nm", "render_pixel_nm", "frc_render_pixel_nm", "frc_split"),
        *("data_range", "psnr_peak"),
    ),
    "masks": ("source", "signal_fraction", "background_fraction"),
    "timing_s": ("denoise", "image_metrics", "localize", "localization_metrics", "figures"),
}
INPUT_KEYS = ("movie", "shape", "units", "truth", "clean", "clean_units", "denoiser")
MODEL_KEYS = ("model", "model_hash", "training")
TRAINING_KEYS = ("steps", "seconds", "best_val_loss", "stopped", "device")
FIGURE_KEYS = ("crops", "renders", "metrics", "frc", "render_raw", "render_denoised", "render_hybrid")
ROWS = ("raw", "raw linked", "denoised", "denoised linked", "hybrid", "hybrid linked")


def assert_report_keys(report: dict, model: bool, truth: bool, estimates: tuple[str, ...]) -> None:
    """``report`` (report.json) has exactly the pinned keys, in the pinned order."""
    from smlmdn.camera import Camera
    from smlmdn.io import provenance

    assert tuple(report) == REPORT_KEYS
    assert tuple(report["denoise"]) == ("raw", *estimates)
    assert tuple(report["localize"]) == ROWS
    for section, keys in ROW_KEYS.items():
        for name, row in report[section].items():
            assert tuple(row) == keys, (section, name)
    for section, keys in SECTION_KEYS.items():
        assert tuple(report[section]) == keys, section
    assert tuple(report["inputs"]) == INPUT_KEYS + (MODEL_KEYS if model else ("denoised",))
    if model:
        assert tuple(report["inputs"]["training"]) == TRAINING_KEYS
    assert tuple(report["camera"]) == tuple(Camera().to_dict())
    assert tuple(report["provenance"]) == tuple(provenance())
    assert tuple(report["figures"]) == FIGURE_KEYS + (("render_truth",) if truth else ())


@pytest.mark.slow
def test_report_json_keys_are_pinned(with_truth: tuple[CompareReport, Path]) -> None:
    report, out = with_truth
    on_disk = json.loads((out / "report.json").read_text())
    # the returned report is what was written, and reads back from it unchanged
    assert report.report_dir == out and report.to_dict() == on_disk
    assert CompareReport.from_dict(on_disk, report_dir=out) == report
    assert_report_keys(on_disk, model=True, truth=True, estimates=("mean", "map", "prior"))
    assert on_disk["inputs"]["denoiser"] == on_disk["inputs"]["model"]
    assert on_disk["settings"]["frc_split"] == "blocks" and on_disk["settings"]["estimates"] == ["mean", "map", "prior"]


@pytest.mark.slow
def test_compare_numbers_agree_with_the_evaluate_functions(
    data: dict[str, Path], with_truth: tuple[CompareReport, Path]
) -> None:
    report, out = with_truth
    camera = read_camera(data)
    photons = movie_to_photons(open_movie(data["movie"]), camera)
    clean = open_movie(data["clean"]).astype(np.float32)
    mean = open_movie(out / "denoised" / "mean.zarr")
    truth = pd.read_csv(data["truth"])
    # Q1: PSNR / SSIM / background SNR of raw and of the kept posterior mean, computed directly
    masks = signal_background_masks(photons.compute(), truth=truth, pixel_size_nm=camera.pixel_size, psf_sigma_nm=130.0)
    for name, img in (("raw", photons), ("mean", mean)):
        img = np.asarray(img.compute())
        assert report.denoise[name].psnr == pytest.approx(psnr(img, clean.compute()), rel=1e-9)
        assert report.denoise[name].ssim == pytest.approx(ssim(img, clean.compute()), rel=1e-9)
        assert report.denoise[name].bg_snr == pytest.approx(background_snr(img, masks), rel=1e-9)
    # Q2: localize raw and hybrid directly with the same settings and match
    for mode, detect_on in (("raw", None), ("hybrid", mean)):
        locs = own_frames(localize(photons, camera, detect_on=detect_on, fit_on="raw", progress=False))
        m = match_localizations(locs, truth, tolerance_nm=250.0)
        got = report.localize[mode]
        assert got.n == len(locs) == m.n
        assert got.jaccard == pytest.approx(m.jaccard) and got.rmse_nm == pytest.approx(m.rmse_nm)
        assert got.efficiency == pytest.approx(m.efficiency)
        assert got.recall == pytest.approx(m.recall) and got.precision == pytest.approx(m.precision)
    # the denoised data must differ from raw, or the test would pass for a no-op denoiser
    assert report.denoise["mean"].psnr != report.denoise["raw"].psnr


@pytest.mark.slow
def test_compare_without_truth_gives_null_truth_keys_and_finite_n_nena(
    data: dict[str, Path], with_truth, tmp_path: Path
) -> None:
    _, first = with_truth
    camera = read_camera(data)
    mean = open_movie(first / "denoised" / "mean.zarr")
    den = tmp_path / "den.zarr"
    write_movie(mean, den, attrs={"units": "photons", "estimate": "mean"}, progress=False)
    out = tmp_path / "r"
    report = compare(data["movie"], camera, out_dir=out, denoised=den, progress=False)
    on_disk = json.loads((out / "report.json").read_text())
    assert set(on_disk["denoise"]) == {"raw", "mean"}
    assert_report_keys(on_disk, model=False, truth=False, estimates=("mean",))
    assert on_disk["inputs"]["denoiser"] == "a denoised movie" and on_disk["inputs"]["denoised"] == {"mean": str(den)}
    for values in on_disk["denoise"].values():
        assert values["psnr"] is None and values["ssim"] is None
        assert math.isfinite(values["bg_snr"])
    for mode, values in on_disk["localize"].items():
        for key in ("jaccard", "rmse_nm", "efficiency", "recall", "precision"):
            assert values[key] is None, (mode, key)
        assert values["n"] > 20 and math.isfinite(values["median_crlb_nm"])
        # NeNA of pooled blink positions would be ~0 by construction: not reported for linked modes
        assert (values["nena_nm"] is None) if mode.endswith("linked") else math.isfinite(values["nena_nm"])
    # NeNA straight from the written table agrees (CSV keeps nm to sub-nm precision)
    photons = movie_to_photons(open_movie(data["movie"]), camera)
    locs = own_frames(localize(photons, camera, progress=False))  # per-frame rows: own-frame fits
    assert report.localize["raw"].nena_nm == pytest.approx(nena_precision(locs, pixel_size_nm=camera.pixel_size))
    assert "Without ground truth" in on_disk["answers"]["localization"]
    assert "Without a noise-free reference" in on_disk["answers"]["denoising"]
    for name in FIGURES:
        assert (out / name).is_file()


@pytest.mark.slow
def test_cli_compare_on_smlmdn_denoise_outputs_and_refuses_an_existing_report(
    data: dict[str, Path], with_truth, tmp_path: Path
) -> None:
    report, _ = with_truth
    den = tmp_path / "den.zarr"
    made = runner.invoke(
        app,
        [
            "denoise",
            str(data["movie"]),
            "--model",
            str(data["model"]),
            "--camera",
            str(data["camera"]),
            "-o",
            str(den),
            "-e",
            "mean",
            "-e",
            "map",
            "-q",
        ],
    )
    assert made.exit_code == 0, made.output
    files = sorted(tmp_path.glob("den_*.zarr"))
    assert [f.name for f in files] == ["den_map.zarr", "den_mean.zarr"]
    out = tmp_path / "cli_report"
    args = [
        "compare",
        str(data["movie"]),
        "--camera",
        str(data["camera"]),
        *[a for f in files for a in ("--denoised", str(f))],
        "-o",
        str(out),
        "--truth",
        str(data["truth"]),
        "--clean",
        str(data["clean"]),
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Jacc %" in result.output and "hybrid" in result.output and "report.md" in result.output
    on_disk = json.loads((out / "report.json").read_text())
    assert set(on_disk["denoise"]) == {"raw", "mean", "map"} and on_disk["settings"]["localize_estimate"] == "mean"
    # the same model and movie give the same numbers through `smlmdn denoise` files as on the fly
    for name in ("raw", "mean", "map"):
        assert on_disk["denoise"][name]["psnr"] == pytest.approx(report.denoise[name].psnr, rel=1e-5)
    assert on_disk["localize"]["hybrid"]["jaccard"] == pytest.approx(report.localize["hybrid"].jaccard)
    before = (out / "report.json").read_text()
    again = runner.invoke(app, args)
    _one_line_error(again, "already exists", "--overwrite")
    assert (out / "report.json").read_text() == before


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_compare_needs_exactly_one_denoiser_output(small: dict[str, Path], tmp_path: Path) -> None:
    base = ["compare", str(small["movie"]), "--camera", str(small["camera"]), "-o", str(tmp_path / "r"), "-q"]
    _one_line_error(runner.invoke(app, base), "--model", "--denoised")
    both = runner.invoke(app, [*base, "--model", str(small["model"]), "--denoised", str(small["clean"])])
    _one_line_error(both, "both --model and --denoised")
    std = runner.invoke(app, [*base, "--model", str(small["model"]), "--estimate", "std"])
    _one_line_error(std, "cannot score estimate(s) std", "--estimate mean")
    assert not (tmp_path / "r").exists()


def test_truth_with_wrong_columns_is_refused_before_any_work(small: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad_truth.csv"
    pd.DataFrame({"frame": [0], "x [nm]": [1.0], "y [nm]": [2.0]}).to_csv(bad, index=False)
    with pytest.raises(SmlmdnError, match="lacks column"):
        read_truth(bad)
    out = tmp_path / "r"
    result = runner.invoke(
        app,
        [
            "compare",
            str(small["movie"]),
            "--camera",
            str(small["camera"]),
            "--model",
            str(small["model"]),
            "-o",
            str(out),
            "--truth",
            str(bad),
            "-q",
        ],
    )
    _one_line_error(result, "lacks column(s) x_nm, y_nm", "frame (0-based), x_nm, y_nm")
    assert not out.exists() and not out.with_name("r.partial").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_report(small: dict[str, Path], tmp_path: Path) -> None:
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "movie.tif").write_bytes(b"small")
    with pytest.raises(SmlmdnError, match="not an smlmdn report"):
        compare(small["movie"], read_camera(small), out_dir=keep, model=small["model"], overwrite=True, progress=False)
    assert (keep / "movie.tif").read_bytes() == b"small"


def test_failed_compare_leaves_no_partial_folder(small: dict[str, Path], tmp_path: Path) -> None:
    camera = read_camera(small)
    wrong = tmp_path / "wrong.zarr"
    write_movie(
        da.zeros((12, 32, 30), dtype=np.float32, chunks=(6, 32, 30)), wrong, attrs={"units": "photons"}, progress=False
    )
    out = tmp_path / "r"
    with pytest.raises(SmlmdnError, match="shape"):
        compare(small["movie"], camera, out_dir=out, denoised=wrong, progress=False)
    assert not out.exists() and not out.with_name("r.partial").exists()


@pytest.mark.slow
def test_clean_reference_in_emitted_photons_or_adu_gives_the_same_psnr(
    data: dict[str, Path], with_truth, tmp_path: Path
) -> None:
    """A clean movie from another simulator in *emitted* photons (before QE) or in ADU is converted to detected
    photons: the same PSNR as the detected-photon reference, not a QE-sized scale error; the report says so."""
    report, first = with_truth
    camera = read_camera(data)
    assert camera.qe != 1.0  # else the test could not fail
    detected = open_movie(data["clean"]).astype(np.float32)
    emitted = tmp_path / "clean_emitted.tif"
    write_movie(detected / np.float32(camera.qe), emitted, progress=False)
    out = tmp_path / "emitted_report"
    res = runner.invoke(
        app,
        [
            "compare",
            str(data["movie"]),
            "--camera",
            str(data["camera"]),
            "--denoised",
            str(first / "denoised" / "mean.zarr"),
            "-o",
            str(out),
            "--clean",
            str(emitted),
            "--clean-units",
            "emitted",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    again = json.loads((out / "report.json").read_text())
    for name in ("raw", "mean"):
        assert again["denoise"][name]["psnr"] == pytest.approx(report.denoise[name].psnr, abs=1e-3), name
    assert again["inputs"]["clean_units"] == "emitted" and "peak = max - min" in again["settings"]["psnr_peak"]
    md = (out / "report.md").read_text()
    assert "given in emitted photons, converted to detected photons" in md and "peak = max - min" in md
    # the same reference left in emitted photons would be scored as detected: a visibly different PSNR
    raw = movie_to_photons(open_movie(data["movie"]), camera)
    wrong = psnr(raw.compute(), open_movie(emitted).compute())
    assert abs(wrong - report.denoise["raw"].psnr) > 0.5

    from smlmdn.compare import clean_to_detected

    adu = detected / np.float32(camera.e_per_adu / camera.em_gain) + np.float32(camera.offset)
    np.testing.assert_allclose(
        clean_to_detected(adu, "adu", camera).compute(), detected.compute(), rtol=1e-5, atol=1e-3
    )
    with pytest.raises(SmlmdnError, match="clean-units"):
        compare(
            data["movie"],
            camera,
            out_dir=tmp_path / "bad",
            denoised=first / "denoised" / "mean.zarr",
            clean=data["clean"],
            clean_units="photons",
            progress=False,
        )
