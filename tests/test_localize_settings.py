"""The localization mode table and the settings object: validated once where they enter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from smlmdn.camera import Camera
from smlmdn.errors import SmlmdnError
from smlmdn.localize import MODES, LocalizeSettings, localize_movie
from smlmdn.localize.settings import DENOISED, HYBRID, RAW, choose_mode, get_mode, mode_for


def test_the_mode_table_says_what_each_mode_detects_and_fits_on() -> None:
    assert list(MODES) == ["raw", "denoised", "hybrid"]
    assert (RAW.detect_on_denoised, RAW.fit_on) == (False, "raw")
    assert (DENOISED.detect_on_denoised, DENOISED.fit_on) == (True, "detect")
    assert (HYBRID.detect_on_denoised, HYBRID.fit_on) == (True, "raw")
    with pytest.raises(dataclasses.FrozenInstanceError):
        RAW.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("mode", list(MODES.values()))
def test_localize_arguments_map_back_to_their_mode(mode) -> None:
    assert mode_for(mode.needs_denoised, mode.fit_on) is mode
    assert get_mode(mode.name.upper()) is mode


@pytest.mark.parametrize(
    ("name", "have_denoised", "expected"),
    [(None, False, "raw"), (None, True, "hybrid"), ("denoised", True, "denoised"), ("RAW", False, "raw")],
)
def test_choose_mode_defaults_to_hybrid_with_a_denoised_movie(name, have_denoised, expected) -> None:
    assert choose_mode(name, have_denoised).name == expected


@pytest.mark.parametrize(
    ("name", "have_denoised", "message"),
    [
        ("sideways", False, "unknown --mode"),
        ("hybrid", False, "--mode hybrid needs a denoised movie"),
        ("raw", True, "--mode raw ignores"),
    ],
)
def test_choose_mode_refuses_what_cannot_work(name, have_denoised, message) -> None:
    with pytest.raises(SmlmdnError, match=message):
        choose_mode(name, have_denoised)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"box": 6}, "box must be an odd number"),
        ({"box": True}, "box must be an odd number"),
        ({"psf_sigma_nm": float("nan")}, "psf sigma must be > 0"),
        ({"threshold": 0.0}, "threshold must be > 0"),
        ({"fdr": 1.0}, "fdr must be a false-discovery rate"),
        ({"pool": 6}, "pool must be a whole number"),
        ({"link_distance_nm": 0.0}, "link distance must be > 0"),
    ],
)
def test_settings_refuse_values_that_cannot_work(changes: dict, message: str) -> None:
    with pytest.raises(SmlmdnError, match=message):
        LocalizeSettings(**changes)


def test_settings_check_the_frame_they_are_used_on() -> None:
    settings = LocalizeSettings(box=9, psf_sigma_nm=130.0)
    settings.check_frame((32, 32), 100.0)
    with pytest.raises(SmlmdnError, match="larger than the frame"):
        settings.check_frame((8, 32), 100.0)
    with pytest.raises(SmlmdnError, match=r"only 0\.13 px"):
        settings.check_frame((32, 32), 1000.0)


def test_localize_movie_refuses_a_detection_movie_the_mode_does_not_use() -> None:
    photons = np.ones((2, 16, 16), dtype=np.float32)
    with pytest.raises(SmlmdnError, match="the hybrid mode needs"):
        localize_movie(photons, Camera(), LocalizeSettings(), mode=HYBRID, progress=False)
    with pytest.raises(SmlmdnError, match="the raw mode takes no"):
        localize_movie(photons, Camera(), LocalizeSettings(), mode=RAW, detect_on=photons, progress=False)
