"""Raw-mode localization never imports torch (seconds of start-up and hundreds of MB): checked in a fresh
interpreter, since this test process has torch loaded already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import smlmdn
from smlmdn.camera import Camera, save_camera
from smlmdn.psf import render_spots

ROOT = Path(smlmdn.__file__).resolve().parent.parent
HEAVY = ("torch", "distributed", "matplotlib", "skimage")
# each test starts a fresh interpreter (3-6 s on 2 cores): CI runs them, the edit loop does not
pytestmark = pytest.mark.slow


def _modules_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of :data:`HEAVY` did it import?"""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_and_the_localizer_imports_no_torch() -> None:
    loaded = _modules_after("import smlmdn.cli, smlmdn.localize, smlmdn.io, smlmdn.camera")
    assert not any(loaded.values()), loaded


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_localize_raw_mode_runs_without_importing_torch(tmp_path: Path, device: str) -> None:
    from smlmdn.device import gpu_driver_present

    if device == "auto" and gpu_driver_present():
        pytest.skip("a GPU driver is installed: --device auto rightly asks torch whether it can use it")
    rng = np.random.default_rng(0)
    clean = render_spots(np.array([10.3, 20.6]), np.array([12.7, 8.2]), np.full(2, 2000.0), 1.3, (32, 32)) + 10.0
    photons = rng.poisson(np.broadcast_to(clean, (6, 32, 32)))
    tifffile.imwrite(tmp_path / "movie.tif", (photons * 2 + 100).astype(np.uint16))
    save_camera(Camera(offset=100.0, e_per_adu=0.5, read_noise=0.0, pixel_size=100.0), tmp_path / "camera.json")
    args = [
        "localize",
        str(tmp_path / "movie.tif"),
        "--camera",
        str(tmp_path / "camera.json"),
        "-o",
        str(tmp_path / "locs.csv"),
        "-o",
        str(tmp_path / "locs.hdf5"),
        "--device",
        device,
        "-q",
    ]
    code = f"from smlmdn.cli import app\ntry:\n    app({args!r}, prog_name='smlmdn')\nexcept SystemExit as e:\n    assert not e.code, e.code"
    loaded = _modules_after(code)
    assert (tmp_path / "locs.csv").exists() and (tmp_path / "locs.hdf5").exists()
    assert not loaded["torch"] and not loaded["distributed"], loaded


def test_cuda_available_without_a_driver_does_not_import_torch() -> None:
    code = "import smlmdn.device as d\nd.gpu_driver_present = lambda: False\nassert d.cuda_available() is False"
    assert not _modules_after(code)["torch"]


def test_the_command_imports_dask_without_xarray_and_scipy_sparse_and_both_still_import() -> None:
    """``smlmdn`` (``__main__.run``) spares the start-up imports of xarray and scipy.sparse that dask.array makes."""
    pytest.importorskip("xarray")
    probe = (
        "import sys\n"
        "from smlmdn.__main__ import _import_dask_array_lean\n"
        "_import_dask_array_lean()\n"
        "import smlmdn.cli\n"
        "assert 'xarray' not in sys.modules, 'xarray imported'\n"
        "assert 'scipy.sparse' not in sys.modules, 'scipy.sparse imported'\n"
        "import xarray, scipy.sparse, dask.array as da\n"
        "assert scipy.sparse.eye(2).sum() == 2\n"
        "print(float(da.from_array(xarray.DataArray([1.0, 2.0]).values).sum().compute()))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "3.0"
