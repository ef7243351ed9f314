"""Shared fixtures: tiny seeded movies; torch kept to one thread so tests behave on 2-core CI.

Every test has one kind, a marker (``pytest -m unit`` runs one kind):

- ``unit``: one function or class on small in-memory data (files only where the unit writes them);
- ``integration``: several modules together through files, the CLI run in-process, dask schedulers;
- ``e2e``: the whole pipeline or a fresh interpreter / subprocess, as a user runs it.

A test file's kind is in :data:`KINDS`; a test marked with another kind keeps its own. ``slow`` is
separate: tests that take more than a few seconds on 2 cores. ``pytest -m "not slow"`` is the edit
loop; plain ``pytest`` (CI) runs everything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TEST_KINDS = ("unit", "integration", "e2e")
#: Test file -> the kind of its tests.
KINDS = {
    "test_batch.py": "unit",
    "test_camera.py": "unit",
    "test_denoise_likelihood.py": "unit",
    "test_denoise_network.py": "unit",
    "test_device.py": "unit",
    "test_evaluate_image.py": "unit",
    "test_evaluate_match.py": "unit",
    "test_evaluate_precision.py": "unit",
    "test_evaluate_render_frc.py": "unit",
    "test_evaluate_report.py": "unit",
    "test_localize_detect.py": "unit",
    "test_localize_fit.py": "unit",
    "test_localize_extend.py": "unit",
    "test_localize_fit_torch.py": "unit",
    "test_localize_glrt.py": "unit",
    "test_localize_link.py": "unit",
    "test_localize_store.py": "unit",
    "test_localize_neighbours.py": "unit",
    "test_localize_passes.py": "unit",
    "test_localize_settings.py": "unit",
    "test_properties.py": "unit",
    "test_psf.py": "unit",
    "test_cli.py": "integration",
    "test_cluster.py": "integration",
    "test_compare.py": "integration",
    "test_denoise_apply.py": "integration",
    "test_denoise_cli.py": "integration",
    "test_denoise_train.py": "integration",
    "test_export.py": "integration",
    "test_io.py": "integration",
    "test_io_inputs.py": "integration",
    "test_localize_cli.py": "integration",
    "test_localize_formats.py": "integration",
    "test_omezarr.py": "integration",
    "test_simulate.py": "integration",
    "test_demo.py": "e2e",
    "test_examples.py": "e2e",
    "test_lazy_imports.py": "e2e",
    "test_scale.py": "e2e",
}


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its file's kind (:data:`KINDS`) unless it names its own; refuse files without one."""
    for item in items:
        if any(item.get_closest_marker(kind) for kind in TEST_KINDS):
            continue
        name = Path(str(item.fspath)).name
        if name not in KINDS:
            raise pytest.UsageError(f"{name} has no test kind: add it to KINDS in tests/conftest.py ({TEST_KINDS})")
        item.add_marker(KINDS[name])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_movie(rng: np.random.Generator) -> np.ndarray:
    """(T, Y, X) = (12, 16, 20) uint16 ADU-like movie."""
    return (100 + rng.poisson(20, size=(12, 16, 20))).astype(np.uint16)
