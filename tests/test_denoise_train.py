"""Training: learns (validation loss falls, posterior beats raw and prior), seeded, safe on NaN, resumable."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch

from smlmdn.camera import to_photons
from smlmdn.denoise import FitConfig, denoise_lazy, fit_model
from smlmdn.denoise import likelihood as L
from smlmdn.errors import SmlmdnError
from smlmdn.evaluate.image import psnr
from smlmdn.simulate import SimulationParams, simulate

TINY = dict(width=8, depth=2, patch=16, batch=8, val_every=20, val_crops=16, seed=0)


@pytest.fixture(scope="module")
def sim():
    s = simulate(SimulationParams.preset("low", frames=240, size=32, density=40.0, seed=3))
    return s, to_photons(da.from_array(s.movie, chunks=(60, 32, 32)), s.camera)


@pytest.mark.slow
def test_fit_lowers_validation_loss_and_posterior_beats_raw_and_prior(sim):
    s, photons = sim
    model = fit_model(photons, s.camera, FitConfig(steps=200, context=0, lr=2e-3, **TINY), progress=False)
    hist = model.training["history"]
    assert hist[0][2] > model.training["best_val_loss"] + 0.01  # validation NLL went down
    frames = slice(0, 60)
    est = {k: v.compute() for k, v in denoise_lazy(photons[frames], model, estimates=("mean", "prior")).items()}
    clean = s.clean[frames]
    dr = float(clean.max() - clean.min())
    raw_db = psnr(photons[frames].compute(), clean, dr)
    mean_db, prior_db = psnr(est["mean"], clean, dr), psnr(est["prior"], clean, dr)
    assert mean_db > raw_db + 1.0, (raw_db, mean_db, prior_db)
    assert mean_db > prior_db, (raw_db, mean_db, prior_db)


def test_fit_is_deterministic_with_seed(sim):
    s, photons = sim
    cfg = FitConfig(steps=6, context=1, **TINY)
    a = fit_model(photons, s.camera, cfg, progress=False)
    b = fit_model(photons, s.camera, cfg, progress=False)
    c = fit_model(photons, s.camera, cfg, progress=False, seed=1)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert not all(torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)


def test_nan_loss_goes_back_to_last_good_weights_and_stops(sim, monkeypatch):
    s, photons = sim
    real = L.nll
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] > 30 else out

    monkeypatch.setattr(L, "nll", flaky)
    messages = []
    model = fit_model(
        photons, s.camera, FitConfig(steps=200, context=0, max_restores=2, **TINY), progress=False, log=messages.append
    )
    tr = model.training
    assert tr["stopped"] == "diverged" and tr["restores"] == 3
    assert np.isfinite(tr["best_val_loss"]) and tr["best_step"] == 20
    assert any("last good weights" in m for m in messages)
    assert all(torch.isfinite(v).all() for v in model.state_dict.values())


def test_validation_jump_restores_last_good_weights(sim, monkeypatch):
    s, photons = sim
    real = L.nll
    calls = {"n": 0}

    def jumpy(*args, **kwargs):  # the loss "collapses" by 5 nats after a while (not a NaN)
        calls["n"] += 1
        return real(*args, **kwargs) + (5.0 if calls["n"] >= 40 else 0.0)

    monkeypatch.setattr(L, "nll", jumpy)
    messages = []
    model = fit_model(photons, s.camera, FitConfig(steps=60, context=0, **TINY), progress=False, log=messages.append)
    assert model.training["restores"] >= 1
    assert any("validation loss jumped" in m for m in messages)


@pytest.mark.slow
def test_checkpoint_on_interrupt_and_resume(sim, tmp_path, monkeypatch):
    s, photons = sim
    ckpt = tmp_path / "m.pt.ckpt"
    cfg = FitConfig(steps=50, context=1, **TINY)
    real = L.nll
    calls = {"n": 0}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 35:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(L, "nll", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit_model(photons, s.camera, cfg, progress=False, checkpoint=ckpt)
    assert ckpt.is_file()
    monkeypatch.setattr(L, "nll", real)
    model = fit_model(photons, s.camera, cfg, progress=False, checkpoint=ckpt, resume=True)
    assert model.training["steps"] == 50
    # a checkpoint from other settings is refused
    with pytest.raises(SmlmdnError, match="another movie or network"):
        fit_model(
            photons, s.camera, FitConfig(steps=50, context=0, **TINY), progress=False, checkpoint=ckpt, resume=True
        )


def test_bad_movies_are_refused_with_the_minimum(sim):
    s, photons = sim
    with pytest.raises(SmlmdnError, match="minimum frame size is 16 x 16"):
        fit_model(photons[:, :12, :12], s.camera, FitConfig(steps=1, **TINY), progress=False)
    with pytest.raises(SmlmdnError, match="--context 2 needs at least 6"):
        fit_model(photons[:5], s.camera, FitConfig(steps=1, **{**TINY, "patch": 16}, context=2), progress=False)
    with pytest.raises(SmlmdnError, match="multiple of 4"):
        fit_model(photons, s.camera, FitConfig(steps=1, **{**TINY, "patch": 18}), progress=False)
    with pytest.raises(SmlmdnError, match="unknown head"):
        fit_model(photons, s.camera, FitConfig(steps=1, head="laplace", **TINY), progress=False)
    with pytest.raises(SmlmdnError, match=r"the movie must be \(T, Y, X\), got shape \(1, 240, 32, 32\)"):
        fit_model(photons[None], s.camera, FitConfig(steps=1, **TINY), progress=False)


@pytest.mark.slow  # trains for a 1.5 s budget by design, then fits again: ~3 s
def test_time_budget_alone_trains_until_the_budget_not_a_default_step_count(sim, monkeypatch):
    from smlmdn.denoise import train as T

    s, photons = sim
    monkeypatch.setattr(T, "DEFAULT_STEPS", 5)
    assert FitConfig(steps=None).max_steps == 5 and FitConfig(steps=None, time_budget=1.0).max_steps is None
    seen, lrs = [], []
    real_factor = T._lr_factor
    monkeypatch.setattr(T, "_lr_factor", lambda frac, *a, **k: lrs.append(frac) or real_factor(frac, *a, **k))
    model = fit_model(
        photons,
        s.camera,
        FitConfig(steps=None, time_budget=1.5, context=1, **TINY),
        progress=False,
        snapshot=lambda step, el, w: seen.append((step, el)),
        snapshot_at=(0.5,),
    )
    tr = model.training
    assert tr["stopped"] == "time budget" and tr["steps"] > 5 and tr["seconds"] >= 1.5
    # the schedule follows elapsed time: the fraction grows to ~1 at the budget, not step / DEFAULT_STEPS
    assert max(lrs) < 1.0 and max(lrs) > 0.5 and lrs == sorted(lrs)
    # snapshots: one when 0.5 s had passed, one at the end
    assert len(seen) == 2 and seen[0][1] >= 0.5 and seen[-1][0] == tr["steps"]
    # with both, steps win when they come first
    both = fit_model(photons, s.camera, FitConfig(steps=7, time_budget=60.0, **TINY), progress=False)
    assert both.training["steps"] == 7 and both.training["stopped"] == "steps"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_mixed_precision_fit_and_denoise(sim):
    s, photons = sim
    model = fit_model(photons, s.camera, FitConfig(steps=30, context=1, device="cuda", **TINY), progress=False)
    assert model.training["device"].startswith("cuda") and np.isfinite(model.training["best_val_loss"])
    est = denoise_lazy(photons[:8], model, device="cuda")["mean"].compute()
    cpu = denoise_lazy(photons[:8], model, device="cpu")["mean"].compute()
    assert np.isfinite(est).all()
    # bfloat16 autocast on the GPU vs float32 on the CPU: close, not equal
    assert np.median(np.abs(est - cpu) / (np.abs(cpu) + 1)) < 0.05


@pytest.mark.slow  # 60 training steps until it beats raw: ~2.5 s
def test_non_blind_supervised_bound_needs_clean_targets_and_learns_from_them(sim):
    """The benchmark's upper bound: the non-blind network refuses to train without clean targets
    (it would learn the identity), and on clean targets it beats the raw photons."""
    s, photons = sim
    cfg = FitConfig(steps=60, context=1, blind=False, lr=3e-3, **TINY)
    with pytest.raises(SmlmdnError, match="non-blind"):
        fit_model(photons, s.camera, cfg, progress=False)
    clean = da.from_array(s.clean, chunks=(60, 32, 32))
    model = fit_model(photons, s.camera, cfg, progress=False, clean=clean)
    frames = slice(1, 61)
    prior = denoise_lazy(photons[0:62], model, estimates=("prior",))["prior"].compute()[1:-1]
    dr = float(s.clean.max() - s.clean.min())
    assert psnr(prior, s.clean[frames], dr) > psnr(photons[frames].compute(), s.clean[frames], dr) + 1.0
    # its output already used each pixel: a posterior on top would count the pixel twice
    with pytest.raises(SmlmdnError, match="non-blind"):
        denoise_lazy(photons[0:62], model, estimates=("prior", "mean"))


def test_checkpoint_state_stays_a_plain_dict_and_reads_old_checkpoints() -> None:
    """Checkpoints store the training state as a plain dict: one written before TrainState reads back."""
    from dataclasses import asdict

    from smlmdn.denoise.train import TrainState

    old = {
        "step": 33,
        "elapsed": 1.5,
        "best_val": 4.2,
        "best_step": 20,
        "lr_mult": 0.5,
        "restores": 1,
        "since_best": 0,
        "history": [[20, 3.6, 4.2, 0.5]],
        "stopped": "",
    }

    state = TrainState.from_dict(old)

    assert asdict(state) == old and list(asdict(TrainState())) == list(old)


def test_losses_are_the_likelihood_or_the_clean_target_mse() -> None:
    from smlmdn.denoise.train import clean_target_loss, likelihood_loss

    x = torch.full((2, 3, 4, 4), 5.0)
    p0, p1 = torch.full((2, 4, 4), 4.0), torch.full((2, 4, 4), 2.0)

    nll = likelihood_loss("gamma-poisson", 1)(x, p0, p1, None)
    mse = clean_target_loss(2.0)(x, p0, p1, torch.full((2, 4, 4), 3.0))

    assert torch.equal(nll, L.nll("gamma-poisson", x[:, 1], p0, p1).mean())
    assert float(mse) == 0.25 and mse.dtype == torch.float64


@pytest.mark.unit
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("head", "laplace", "unknown head 'laplace'"),
        ("steps", 0, "--steps must be >= 1, got 0"),
        ("time_budget", 0.0, "--time-budget must be > 0 seconds"),
        ("context_mode", "sideways", "unknown context mode"),
        ("context", -1, "--context must be >= 0"),
        ("lr", float("nan"), "--lr must be a positive number"),
        ("threads", 0, "--threads must be >= 1"),
        ("device", "tpu", "unknown device 'tpu'"),
        ("refresh_every", 0, "refresh_every must be >= 1"),
        ("clip", 0.0, "clip must be a positive gradient norm"),
    ],
)
def test_fit_config_is_checked_once_where_it_is_made(field: str, value: object, message: str) -> None:
    with pytest.raises(SmlmdnError, match=message) as err:
        FitConfig(**{field: value})
    assert err.value.fix and "\n" not in err.value.one_line()
    # fit_model's keyword overrides make a FitConfig too: the same check, before any training
    with pytest.raises(SmlmdnError, match=message):
        fit_model(da.zeros((8, 16, 16), dtype=np.float32), SimulationParams().get_camera(), **{field: value})


@pytest.mark.unit
def test_fit_config_is_frozen() -> None:
    from dataclasses import FrozenInstanceError

    config = FitConfig()
    with pytest.raises(FrozenInstanceError):
        config.steps = 3  # type: ignore[misc]
