"""Shared fixtures: tiny seeded movies; torch kept to one thread so tests behave on 2-core CI."""

from __future__ import annotations

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_movie(rng: np.random.Generator) -> np.ndarray:
    """(T, Y, X) = (12, 16, 20) uint16 ADU-like movie."""
    return (100 + rng.poisson(20, size=(12, 16, 20))).astype(np.uint16)
