"""`smlmdn info MOVIE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..camera import Camera, CameraEstimate, check_camera
from ..info import movie_info
from ..io import open_movie
from .app import command


@command("info")
def info(
    movie: Annotated[Path, typer.Argument(help="Movie: TIFF/OME-TIFF/BigTIFF, a folder or glob of TIFFs, Zarr/OME-Zarr, or .npy.")],
    camera: Optional[Camera] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")] = False,
) -> None:
    """Print shape, dtype, chunks, size on disk, frame statistics (ADU) and camera numbers estimated from the data.

    When camera numbers are given (--camera or flags), they are checked against the estimate.
    """
    arr = open_movie(movie)
    given = camera is not None
    camera = camera or Camera()
    result = movie_info(arr, movie, em_gain=camera.em_gain, read_noise=camera.read_noise)
    if given and result["camera_estimate"]:
        est = result["camera_estimate"]
        result["camera_warnings"] = check_camera(camera, CameraEstimate(**est))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    out = Console()
    t, y, x = result["shape"]
    out.print(f"[bold]{movie}[/bold]: {t} frames of {y} x {x} px, {result['dtype']}, "
              f"{result['size_on_disk_bytes'] / 1e6:.1f} MB on disk, chunks of {result['chunks'][0]} frames "
              f"({result['n_blocks']} blocks)")
    table = Table(title="frame statistics (ADU, sampled frames)")
    for col in ("frame", "min", "median", "mean", "max", "std"):
        table.add_column(col, justify="right")
    for s in result["frame_stats"]:
        table.add_row(str(s["frame"]), *(f"{s[k]:.1f}" for k in ("min", "median", "mean", "max", "std")))
    out.print(table)
    est = result["camera_estimate"]
    if est:
        out.print(f"camera estimated from the data (photon transfer, em_gain={camera.em_gain:g}, "
                  f"read_noise={camera.read_noise:g} e-): offset ≈ {est['offset']:.1f} ADU, "
                  f"e_per_adu ≈ {est['e_per_adu']:.3f} photoelectrons/ADU")
    else:
        out.print(f"camera estimate not possible: {result.get('camera_estimate_error')}")
