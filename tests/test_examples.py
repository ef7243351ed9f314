"""The examples stay working: the shell batch loop runs end to end; the SLURM script parses; the Dask
example runs on a local 2-process cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the smlmdn console script
    return env


@pytest.mark.parametrize("script", ["batch_denoise.sh", "slurm_array.sh"])
def test_shell_examples_parse(script: str) -> None:
    assert subprocess.run(["bash", "-n", str(EXAMPLES / script)]).returncode == 0


@pytest.mark.slow
def test_batch_loop_example_runs_and_reruns_as_a_no_op(tmp_path: Path) -> None:
    env = {**_env(), "STEPS": "4", "FRAMES": "60"}
    cmd = ["bash", str(EXAMPLES / "batch_denoise.sh"), "", str(tmp_path / "out")]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    for name in ("cell1", "cell2"):
        assert (tmp_path / "out" / "denoised" / f"{name}_denoised.zarr").is_dir()
        assert (tmp_path / "out" / "locs" / f"{name}.csv").stat().st_size > 0
        assert (tmp_path / "out" / "locs" / f"{name}.hdf5").is_file()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and "0 done, 2 skipped" in again.stdout


@pytest.mark.slow
def test_dask_cluster_example_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "dask_cluster.py"), str(tmp_path / "dex"), "10"],
        env=_env(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "localizations;" in result.stdout and (tmp_path / "dex" / "locs_hybrid.csv").is_file()
