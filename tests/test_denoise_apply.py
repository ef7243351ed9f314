"""Applying a model: tiled/streamed output equals whole-frame output; model files round-trip and refuse misuse."""

from __future__ import annotations

import pickle
from dataclasses import replace

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from smlmdn.camera import Camera
from smlmdn.denoise import DenoiseModel, NetConfig, denoise_lazy, denoise_on_the_fly, load_model, receptive_halo
from smlmdn.denoise import likelihood as L
from smlmdn.denoise.model_file import FORMAT_VERSION
from smlmdn.denoise.network import BlindSpotNet
from smlmdn.errors import SmlmdnError

CAM = Camera(read_noise=1.5, pixel_size=100.0)


def _model(context=1, depth=2, width=6, head="gamma-poisson", seed=0, mode="stem") -> DenoiseModel:
    torch.manual_seed(seed)
    cfg = NetConfig(width=width, depth=depth, context=context, head=head, context_mode=mode)
    net = BlindSpotNet(cfg)
    with torch.no_grad():  # random but non-trivial weights
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    shift, factor = L.count_transform(CAM.excess_noise, CAM.read_noise_photons)
    return DenoiseModel(
        net=cfg,
        state_dict=net.state_dict(),
        camera=CAM,
        transform={"shift": shift, "factor": factor},
        norm={"level": 20.0, "scale": 5.0},
    )


@pytest.fixture(scope="module")
def movie():
    rng = np.random.default_rng(5)
    return rng.poisson(20.0, size=(11, 37, 45)).astype(np.float32) + rng.normal(0, 1.5, (11, 37, 45)).astype(np.float32)


# ~2 s each: the edit loop keeps one (temporal context, depth 2, stem), CI runs all
@pytest.mark.parametrize(
    "context,depth,mode",
    [
        pytest.param(0, 2, "stem", marks=pytest.mark.slow),
        (1, 2, "stem"),
        pytest.param(2, 2, "stem", marks=pytest.mark.slow),
        pytest.param(1, 3, "stem", marks=pytest.mark.slow),
        pytest.param(1, 2, "branch", marks=pytest.mark.slow),
    ],
)
def test_tiled_and_streamed_equal_whole_frame(movie, context, depth, mode):
    model = _model(context=context, depth=depth, width=4 if depth == 3 else 6, mode=mode)
    names = ("mean", "map", "std", "prior")
    whole = denoise_lazy(da.from_array(movie, chunks=(11, 37, 45)), model, estimates=names, tile=512)
    tiled = denoise_lazy(da.from_array(movie, chunks=(3, 37, 45)), model, estimates=names, tile=8, block_frames=3)
    # tiles of 8 px are far smaller than the receptive field: the halo and mask must do all the work
    assert receptive_halo(model.net) > 8
    w, t = dask.compute(whole, tiled)
    for name in names:
        assert w[name].shape == movie.shape and w[name].dtype == np.float32
        np.testing.assert_allclose(t[name], w[name], rtol=1e-5, atol=1e-4)
    # estimates of each frame only use frames t-K..t+K (with mirrored ends), nothing else
    sub = denoise_lazy(da.from_array(movie[2:9]), model, estimates=("mean",))["mean"].compute()
    np.testing.assert_allclose(sub[context : 7 - context], w["mean"][2 + context : 9 - context], rtol=1e-5, atol=1e-4)


def test_movie_edges_mirror_without_the_edge_frame(movie):
    """At t=0 with K=1 the missing frame -1 is frame 1 (never frame 0 itself, which would leak its noise)."""
    model = _model(context=1)
    out = denoise_lazy(da.from_array(movie), model, estimates=("prior",))["prior"].compute()
    stacked = np.concatenate([movie[1:2], movie])  # explicit [1, 0, 1, 2, ...]
    ref = denoise_lazy(da.from_array(stacked), model, estimates=("prior",))["prior"].compute()
    np.testing.assert_allclose(out[0], ref[1], rtol=1e-5, atol=1e-4)
    # and the prior at frame 0 does not depend on frame 0's own pixel values at that pixel
    bumped = movie.copy()
    bumped[0, 10, 10] += 500
    out2 = denoise_lazy(da.from_array(bumped), model, estimates=("prior",))["prior"].compute()
    assert out2[0, 10, 10] == pytest.approx(out[0, 10, 10], rel=1e-5, abs=1e-4)
    assert not np.allclose(out2[0, 10, 12], out[0, 10, 12])


def test_graph_ships_a_path_not_a_model(tmp_path, movie):
    model = _model()
    path = model.save(tmp_path / "m.pt")
    arr = denoise_lazy(da.from_array(movie, chunks=(2, 37, 45)), path, estimates=("mean", "std"))
    graph = dict(arr["mean"].__dask_graph__())
    assert len(pickle.dumps(graph)) < 200_000  # a 20 kB model x 6 blocks would not fit if shipped per task
    assert not any(isinstance(v, (DenoiseModel, torch.nn.Module)) for v in graph.values())
    # in-memory model: its bytes are one shared graph key
    arr2 = denoise_lazy(da.from_array(movie, chunks=(2, 37, 45)), model, estimates=("mean",))
    blob = model.to_bytes()
    assert pickle.dumps(dict(arr2["mean"].__dask_graph__())).count(blob[:64]) == 1
    np.testing.assert_allclose(arr["mean"].compute(), arr2["mean"].compute(), rtol=1e-6)


def test_estimates_are_photons_with_read_noise_shift_undone():
    model = _model(context=0)
    flat = np.full((3, 16, 16), 7.0, np.float32)
    est = denoise_lazy(da.from_array(flat), model, estimates=("mean", "map", "prior", "std"))
    out = {k: v.compute() for k, v in est.items()}
    # mean = F z-hat - r^2/F: a posterior mean between y and the prior mean, both in photons
    lo = np.minimum(flat, out["prior"]) - 1e-3
    hi = np.maximum(flat, out["prior"]) + 1e-3
    assert np.all((out["mean"] >= lo) & (out["mean"] <= hi))
    assert np.all(out["std"] > 0)


def test_model_file_round_trip(tmp_path, movie):
    model = _model()
    path = model.save(tmp_path / "model.pt")
    loaded = load_model(path, camera=CAM)
    assert loaded.hash() == model.hash() and loaded.net == model.net and loaded.camera == CAM
    a = denoise_lazy(da.from_array(movie[:4]), model)["mean"].compute()
    b = denoise_lazy(da.from_array(movie[:4]), path)["mean"].compute()
    # same weights (hashes equal above); float rounding may differ with the thread count of the dask
    # worker thread that runs the network, so compare to float32 precision rather than bit for bit
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not list(tmp_path.glob("*.partial"))


def test_on_the_fly_denoising_is_the_posterior_mean_of_a_model_file_for_this_camera(tmp_path, movie):
    path = _model().save(tmp_path / "model.pt")

    mean = denoise_on_the_fly(da.from_array(movie[:4]), path, CAM, device="cpu")

    np.testing.assert_allclose(
        mean.compute(), denoise_lazy(da.from_array(movie[:4]), path)["mean"].compute(), rtol=1e-6
    )
    with pytest.raises(SmlmdnError, match="read noise"):
        denoise_on_the_fly(da.from_array(movie[:4]), path, replace(CAM, read_noise=6.0))


def test_model_files_from_before_context_mode_load_as_the_branch_design(tmp_path, movie):
    model = _model(context=1, mode="branch")
    d = model.to_dict()
    d["net"] = {k: v for k, v in d["net"].items() if k != "context_mode"}
    torch.save(d, tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt")
    assert old.net.context_mode == "branch" and old.hash() == model.hash()
    a = denoise_lazy(da.from_array(movie[:4]), model)["mean"].compute()
    b = denoise_lazy(da.from_array(movie[:4]), old)["mean"].compute()
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_model_file_refusals(tmp_path):
    model = _model()
    path = model.save(tmp_path / "model.pt")
    with pytest.raises(SmlmdnError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(path.read_bytes()[:500])
    with pytest.raises(SmlmdnError, match="cannot be read"):
        load_model(bad)
    d = model.to_dict()
    for key, value, msg in [
        ("format_version", FORMAT_VERSION + 1, "format version"),
        ("smlmdn_version", "99.0.0", "incompatible"),
        ("format", "other", "not an smlmdn model"),
    ]:
        f = tmp_path / f"{key}.pt"
        torch.save({**d, key: value}, f)
        with pytest.raises(SmlmdnError, match=msg):
            load_model(f)
    with pytest.raises(SmlmdnError, match="pixel size 100 nm but the movie's is 160"):
        load_model(path, camera=replace(CAM, pixel_size=160.0))
    with pytest.raises(SmlmdnError, match=r"EMCCD|em_gain"):
        load_model(path, camera=replace(CAM, em_gain=100.0))
    with pytest.raises(SmlmdnError, match="read noise"):
        load_model(path, camera=replace(CAM, read_noise=6.0))
    load_model(path, camera=replace(CAM, offset=400.0, e_per_adu=0.2))  # other ADU scaling is fine: photons agree


def test_denoise_lazy_refusals(movie):
    with pytest.raises(SmlmdnError, match="unknown estimate"):
        denoise_lazy(da.from_array(movie), _model(), estimates=("median",))
    with pytest.raises(SmlmdnError, match="needs at least 3"):
        denoise_lazy(da.from_array(movie[:2]), _model(context=2))
    with pytest.raises(SmlmdnError, match=r"the movie must be \(T, Y, X\), got shape \(8, 8\)"):
        denoise_lazy(da.from_array(movie[0, :8, :8]), _model())


def test_loaded_models_are_a_bounded_cache():
    from smlmdn.denoise import apply

    blobs = [_model(seed=s).to_bytes() for s in range(apply.RUNNER_CACHE_SIZE + 2)]
    first = apply._runner(blobs[0], "cpu")
    assert apply._runner(blobs[0], "cpu") is first  # loaded once
    for blob in blobs[1:]:
        apply._runner(blob, "cpu")
    assert len(apply._RUNNERS) == apply.RUNNER_CACHE_SIZE  # the oldest models were let go
    assert apply._runner(blobs[0], "cpu") is not first
