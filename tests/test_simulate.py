"""The SMLM simulator: ground truth, blinking, camera noise, determinism, streaming, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from smlmdn.camera import estimate_camera, load_camera, to_photons
from smlmdn.cli import app
from smlmdn.errors import SmlmdnError
from smlmdn.io import open_movie, read_attrs
from smlmdn.psf import integrated_gaussian
from smlmdn.simulate import OUTPUT_FILES, SimulationParams, background_map, make_truth, simulate, simulate_to_dir

OUTPUT_NAMES = list(OUTPUT_FILES.values())

runner = CliRunner()


def tiny(**kw) -> SimulationParams:
    base = dict(frames=30, size=24, density=20.0, off_time=30.0, seed=5)
    base.update(kw)
    return SimulationParams.preset("medium", **base)


@pytest.mark.parametrize("structure", ["filaments", "grid", "random"])
def test_truth_columns_frames_and_positions_inside_field(structure: str) -> None:
    p = tiny(structure=structure, frames=40)
    sim = simulate(p)
    t = sim.truth
    assert list(t.columns) == ["frame", "x_nm", "y_nm", "photons"]
    assert len(t) > 20
    assert t["frame"].between(0, p.frames - 1).all() and t["frame"].is_monotonic_increasing
    field = p.size * p.pixel_size
    assert t["x_nm"].between(0, field, inclusive="left").all() and t["y_nm"].between(0, field, inclusive="left").all()
    assert (t["photons"] > 0).all()
    assert sim.movie.shape == sim.clean.shape == (40, 24, 24)
    assert sim.movie.dtype == np.uint16 and sim.clean.dtype == np.float32


def test_grid_sites_are_spaced_more_than_a_micron() -> None:
    p = SimulationParams(frames=200, size=64, structure="grid", density=5.0, label_sigma_nm=0.0, off_time=20.0)
    t = make_truth(p)
    sites = np.unique(np.round(t[["x_nm", "y_nm"]].to_numpy(), 3), axis=0)
    d = np.hypot(*(sites[:, None, :] - sites[None, :, :]).transpose(2, 0, 1))
    assert len(sites) >= 4 and d[d > 0].min() > 1000


def test_one_row_per_emitter_per_frame() -> None:
    t = make_truth(tiny(frames=200, on_time=0.5, off_time=0.5, density=2.0))  # switches within frames
    assert not t.duplicated(["frame", "emitter"]).any()


def test_blinking_duty_cycle_and_photons_per_frame() -> None:
    on, off, frames = 4.0, 36.0, 400
    p = SimulationParams(
        frames=frames,
        size=64,
        density=10.0,
        on_time=on,
        off_time=off,
        photons=1000.0,
        photons_cv=0.0,
        structure="random",
    )
    t = make_truth(p)
    # With CV 0 the photons in a frame are 1000 x the fraction of the frame the emitter was on.
    assert t["photons"].max() <= 1000.0 + 1e-9
    on_frames = t["photons"].sum() / 1000.0
    duty = on_frames / (p.n_emitters * frames)
    assert duty == pytest.approx(on / (on + off), rel=0.06)
    # Stationary from frame 0: the first and last quarter carry the same on-fraction.
    first = t.loc[t.frame < frames // 4, "photons"].sum()
    last = t.loc[t.frame >= 3 * frames // 4, "photons"].sum()
    assert first == pytest.approx(last, rel=0.15)


def test_photons_of_full_on_frames_have_the_requested_mean_and_spread() -> None:
    p = SimulationParams(frames=300, size=48, density=20.0, on_time=20.0, off_time=60.0, photons=2000.0, photons_cv=0.3)
    t = make_truth(p)
    # Interior frames of long on-periods are full frames: the bulk of rows sits near 2000.
    full = t["photons"][t["photons"] > 0]
    med = np.median(full)
    assert 1700 < med < 2100
    upper = full[full > 0.3 * 2000]  # ignore short partial frames
    assert upper.std() / upper.mean() == pytest.approx(0.3, abs=0.06)


@pytest.mark.parametrize("brightness, skew", [("gamma", 2 * 0.3), ("lognormal", (1 + 0.3**2 + 2) * 0.3)])
def test_brightness_distributions_share_mean_and_cv_and_differ_in_tail(brightness: str, skew: float) -> None:
    from smlmdn.simulate import _periods_to_rows

    # 40 emitters on for all of 500 frames: every row is a full frame, photons = the drawn brightness.
    p = SimulationParams(photons=800.0, photons_cv=0.3, brightness=brightness)
    e = np.arange(40)
    _, _, photons = _periods_to_rows(p, e, np.zeros(40), np.full(40, 500.0), np.random.default_rng(1))
    assert len(photons) == 20000
    assert photons.mean() == pytest.approx(800.0, rel=0.01)
    assert photons.std() / photons.mean() == pytest.approx(0.3, rel=0.03)
    z = (photons - photons.mean()) / photons.std()
    assert (z**3).mean() == pytest.approx(skew, abs=0.12)  # gamma 2 CV = 0.6, lognormal (1 + CV^2 + 2) CV = 0.93


def test_explicit_gamma_is_the_default_movie_and_lognormal_changes_only_photons() -> None:
    a, b, c = simulate(tiny()), simulate(tiny(brightness="gamma")), simulate(tiny(brightness="lognormal"))
    np.testing.assert_array_equal(a.movie, b.movie)
    pd.testing.assert_frame_equal(a.truth[["frame", "x_nm", "y_nm"]], c.truth[["frame", "x_nm", "y_nm"]])
    assert not np.allclose(a.truth.photons, c.truth.photons)


def test_active_density_counts_emitters_on_per_frame() -> None:
    p = SimulationParams(frames=400, size=64, density=10.0, on_time=3.0, off_time=57.0, structure="random", seed=3)
    per_frame = len(make_truth(p)) / p.frames / (p.field_nm / 1000.0) ** 2
    assert p.active_density == pytest.approx(10.0 * 4.0 / 60.0)
    assert per_frame == pytest.approx(p.active_density, rel=0.1)


def test_clean_is_background_plus_integrated_gaussian_spots() -> None:
    p = tiny(frames=5)
    sim = simulate(p)
    bg = background_map(p)
    f = int(sim.truth["frame"].iloc[0])
    rows = sim.truth[sim.truth.frame == f]
    spots = integrated_gaussian(rows.x_nm.to_numpy() / 100, rows.y_nm.to_numpy() / 100, 1.3, (24, 24))
    expected = bg + (spots * rows.photons.to_numpy()[:, None, None]).sum(0)
    np.testing.assert_allclose(sim.clean[f], expected, rtol=1e-5, atol=1e-4)


def test_background_profile_mean_and_edges() -> None:
    p = SimulationParams(size=64, background=20.0)
    bg = background_map(p)
    assert bg.mean() == pytest.approx(20.0, rel=1e-9)
    assert bg[0, 32] / bg[32, 32] == pytest.approx(0.6, abs=0.03)
    flat = background_map(SimulationParams(size=64, background=20.0, flat_background=True))
    assert np.all(flat == 20.0)


@pytest.mark.parametrize("camera_type", ["scmos", "emccd"])
def test_noise_matches_the_camera_model(camera_type: str) -> None:
    p = SimulationParams(
        frames=40, size=64, density=0.0, background=25.0, flat_background=True, camera_type=camera_type, seed=2
    )
    sim = simulate(p)
    cam = sim.camera
    photons = to_photons(da.from_array(sim.movie), cam).compute().astype(np.float64)
    assert photons.mean() == pytest.approx(sim.clean.mean(), rel=0.01)
    quantisation = (cam.e_per_adu / cam.em_gain) ** 2 / 12
    expected_var = cam.excess_noise * 25.0 + cam.read_noise_photons**2 + quantisation
    assert photons.var() == pytest.approx(expected_var, rel=0.03)
    if camera_type == "scmos":
        assert expected_var == pytest.approx(25.0 + 1.5**2, rel=0.01)
    else:
        assert expected_var == pytest.approx(2 * 25.0, rel=0.01)


def test_mean_photons_track_clean_with_emitters() -> None:
    sim = simulate(tiny(frames=60, camera_type="emccd"))
    photons = to_photons(da.from_array(sim.movie), sim.camera).compute()
    # Averaged over frames, noise shrinks: the photon image follows the clean image pixel by pixel.
    diff = photons.mean(0) - sim.clean.mean(0)
    assert np.abs(diff).mean() < 0.1 * sim.clean.mean()
    assert photons.sum() == pytest.approx(sim.clean.sum(), rel=0.01)


def test_same_seed_same_movie_other_seed_other_movie() -> None:
    a, b, c = simulate(tiny()), simulate(tiny()), simulate(tiny(seed=6))
    np.testing.assert_array_equal(a.movie, b.movie)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not np.array_equal(a.movie, c.movie)


def test_streamed_output_equals_in_memory(tmp_path: Path) -> None:
    p = tiny(frames=23)
    sim = simulate(p)
    paths = simulate_to_dir(p, tmp_path / "sim", progress=False, block_frames=7)  # blocks do not divide T
    np.testing.assert_array_equal(tifffile.imread(paths["movie"]), sim.movie)
    np.testing.assert_array_equal(tifffile.imread(paths["clean"]), sim.clean)
    assert open_movie(paths["movie"]).dtype == np.uint16
    truth = pd.read_csv(paths["truth"])
    assert list(truth.columns) == ["frame", "x_nm", "y_nm", "photons"]
    np.testing.assert_array_equal(truth.frame.to_numpy(), sim.truth.frame.to_numpy())
    np.testing.assert_allclose(
        truth[["x_nm", "y_nm", "photons"]].to_numpy(), sim.truth[["x_nm", "y_nm", "photons"]].to_numpy(), atol=1e-4
    )
    assert load_camera(paths["camera"]) == sim.camera
    assert read_attrs(paths["movie"])["units"] == "adu" and read_attrs(paths["clean"])["units"] == "photons"
    assert not list((tmp_path / "sim").glob("*.partial"))


def test_existing_outputs_are_refused_unless_overwrite(tmp_path: Path) -> None:
    p = tiny(frames=4)
    simulate_to_dir(p, tmp_path, progress=False)
    before = (tmp_path / "movie.tif").read_bytes()
    with pytest.raises(SmlmdnError, match="already exists"):
        simulate_to_dir(tiny(frames=4, seed=9), tmp_path, progress=False)
    assert (tmp_path / "movie.tif").read_bytes() == before
    simulate_to_dir(tiny(frames=4, seed=9), tmp_path, progress=False, overwrite=True)
    assert (tmp_path / "movie.tif").read_bytes() != before


@pytest.mark.parametrize("camera_type", ["scmos", "emccd"])
def test_estimate_camera_recovers_gain_from_a_simulated_movie(camera_type: str) -> None:
    sim = simulate(SimulationParams.preset("medium", frames=100, size=64, camera_type=camera_type, seed=1))
    cam = sim.camera
    est = estimate_camera(sim.movie, em_gain=cam.em_gain, read_noise=cam.read_noise)
    assert est.e_per_adu == pytest.approx(cam.e_per_adu, rel=0.10)
    assert est.offset == pytest.approx(cam.offset, abs=10)


@pytest.mark.parametrize(
    "kw",
    [
        dict(frames=-1),
        dict(frames=0),
        dict(size=2),
        dict(photons=-5.0),
        dict(density=float("nan")),
        dict(structure="spiral"),
        dict(camera_type="ccd"),
        dict(psf_sigma=0.0),
        dict(brightness="poisson"),
    ],
)
def test_nonsense_parameters_raise(kw: dict) -> None:
    with pytest.raises(SmlmdnError):
        SimulationParams(**kw)


def test_presets_order_snr_and_overrides_win() -> None:
    hi, med, lo = (SimulationParams.preset(s) for s in ("high", "medium", "low"))
    assert hi.photons / hi.background > med.photons / med.background > lo.photons / lo.background
    assert SimulationParams.preset("low", photons=5000.0, frames=None).photons == 5000.0
    with pytest.raises(SmlmdnError, match="preset"):
        SimulationParams.preset("extreme")


def test_cli_simulate_writes_files_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "simulate",
        str(out),
        "--frames",
        "6",
        "--size",
        "16",
        "--snr",
        "high",
        "--camera-type",
        "emccd",
        "--seed",
        "3",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "6 frames" in result.output and "localizations in truth" in result.output
    assert tifffile.imread(out / "movie.tif").shape == (6, 16, 16)
    assert json.loads((out / "camera.json").read_text())["em_gain"] == 100.0
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "already exists" in again.output and "--overwrite" in again.output and "Traceback" not in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_cli_simulate_sets_every_grid_option(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "simulate",
        str(out),
        "--frames",
        "4",
        "--size",
        "12",
        "--density",
        "5",
        "--photons",
        "300",
        "--photons-cv",
        "0.5",
        "--brightness",
        "lognormal",
        "--background",
        "7",
        "--flat-background",
        "--psf-sigma",
        "110",
        "--on-time",
        "2",
        "--off-time",
        "40",
        "--camera-type",
        "emccd",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    sim = read_attrs(out / "movie.tif")["simulation"]
    expected = dict(
        density=5.0,
        photons=300.0,
        photons_cv=0.5,
        brightness="lognormal",
        background=7.0,
        flat_background=True,
        psf_sigma=110.0,
        on_time=2.0,
        off_time=40.0,
        camera_type="emccd",
    )
    assert {k: sim[k] for k in expected} == expected
    assert "on per um^2 per frame" in result.output


@pytest.mark.parametrize(
    "bad",
    [
        ["--frames", "-3"],
        ["--snr", "great"],
        ["--structure", "spiral"],
        ["--density", "-1"],
        ["--brightness", "uniform"],
    ],
)
def test_cli_simulate_rejects_nonsense(tmp_path: Path, bad: list[str]) -> None:
    result = runner.invoke(app, ["simulate", str(tmp_path / "x"), "--size", "8", "--frames", "2", *bad])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Fix:" in lines[0]
    assert not (tmp_path / "x" / "movie.tif").exists()


def test_truth_windows_join_seamlessly() -> None:
    from smlmdn.simulate import TRUTH_WINDOW, GroundTruth

    on, off = 6.0, 54.0
    p = SimulationParams(
        frames=2 * TRUTH_WINDOW + 300,
        size=32,
        density=30.0,
        on_time=on,
        off_time=off,
        photons_cv=0.0,
        photons=100.0,
        structure="random",
    )
    truth = GroundTruth(p)
    table = truth.table()
    assert truth.n_windows == 3 and not table.duplicated(["frame", "emitter"]).any()
    # Any frame range, across window edges, is the matching slice of the whole table.
    part = truth.frames(TRUTH_WINDOW - 5, TRUTH_WINDOW + 7)
    expected = table[(table.frame >= TRUTH_WINDOW - 5) & (table.frame < TRUTH_WINDOW + 7)].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected)
    # The duty cycle holds in every window, and an on-period is not cut at a window edge.
    for k in range(3):
        w = table[(table.frame // TRUTH_WINDOW) == k]
        n_frames = min(p.frames, (k + 1) * TRUTH_WINDOW) - k * TRUTH_WINDOW
        assert w.photons.sum() / 100.0 / (p.n_emitters * n_frames) == pytest.approx(on / (on + off), rel=0.08)
    # An emitter on for the whole last frame of a window is still on when the next window starts.
    for edge in (TRUTH_WINDOW, 2 * TRUTH_WINDOW):
        full = table[(table.frame == edge - 1) & np.isclose(table.photons, 100.0)].emitter
        assert len(full) > 3 and set(full) <= set(table[table.frame == edge].emitter)


def test_interrupted_run_leaves_no_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import smlmdn.simulate as sim_mod

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim_mod, "write_movie", boom)
    with pytest.raises(KeyboardInterrupt):
        simulate_to_dir(tiny(frames=3), tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.undo()
    paths = simulate_to_dir(tiny(frames=3), tmp_path / "out", progress=False)  # rerun works, no --overwrite needed
    assert all(p.exists() for p in paths.values()) and sorted(f.name for f in (tmp_path / "out").iterdir()) == sorted(
        OUTPUT_NAMES
    )
