"""`smlmdn info MOVIE`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..camera import Camera, CameraEstimate, check_camera
from ..info import movie_info
from ..io import inspect_movie
from .app import command


@command("info")
def info(
    movie: Annotated[
        Path,
        typer.Argument(
            help="Movie: TIFF/OME-TIFF/BigTIFF/ImageJ, multi-file OME-TIFF (any member), a folder of TIFFs (one movie), Zarr/OME-Zarr, .npy or Picasso .raw (+ .yaml)."
        ),
    ],
    camera: Camera | None = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")] = False,
) -> None:
    """Print layout and files, shape, dtype, chunks, size on disk, NaN/Inf and saturation counts (all frames), frame statistics (ADU) and camera numbers estimated from the data.

    When camera numbers are given (--camera, flags, or recorded in a Picasso .yaml), they are checked
    against the estimate; only the numbers given are judged.
    """
    source = inspect_movie(movie)
    arr = source.array
    given = camera is not None
    camera = camera or Camera()
    # a typical SMLM PSF (sigma ~130 nm) in this camera's pixels
    result = movie_info(
        arr,
        movie,
        em_gain=camera.em_gain,
        read_noise=camera.read_noise,
        source=source,
        psf_sigma_px=130.0 / camera.pixel_size,
    )
    if given and result["camera_estimate"]:
        est = result["camera_estimate"]
        result["camera_warnings"] = check_camera(camera, CameraEstimate(**est))
    if not as_json:
        for message in result["warnings"]:
            warnings.warn(message, stacklevel=1)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    out = Console()
    t, y, x = result["shape"]
    out.print(
        f"[bold]{escape(str(movie))}[/bold]: {result['layout']}, {t} frames of {y} x {x} px, {result['dtype']}, "
        f"{result['size_on_disk_bytes'] / 1e6:.1f} MB on disk, chunks of {result['chunks'][0]} frames "
        f"({result['n_blocks']} blocks)",
        highlight=False,
        soft_wrap=True,
    )
    if len(result["files"]) > 1:
        shown = ", ".join(Path(f).name for f in result["files"][:6]) + (", ..." if len(result["files"]) > 6 else "")
        out.print(
            f"read from {len(result['files'])} files, in this order: {shown}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    for note in result["notes"]:
        out.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    if result["camera_from_movie"]:
        out.print(
            "camera numbers recorded with the movie: "
            + ", ".join(f"{k}={v:g}" for k, v in result["camera_from_movie"].items()),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    checks = "all frames finite" if result["finite"] else f"{result['nonfinite_pixels']} NaN/Inf pixels"
    if result["saturation_level"] is not None:
        checks += f", {result['saturated_pixels']} saturated pixels (= {result['saturation_level']:g} ADU) in {result['saturated_frames']} frames"
    out.print(f"checked all {t} frames: {checks}", highlight=False, soft_wrap=True, markup=False)
    table = Table(title="frame statistics (ADU, sampled frames)")
    for col in ("frame", "min", "median", "mean", "max", "std"):
        table.add_column(col, justify="right")
    for s in result["frame_stats"]:
        table.add_row(str(s["frame"]), *(f"{s[k]:.1f}" for k in ("min", "median", "mean", "max", "std")))
    out.print(table)
    est = result["camera_estimate"]
    if est:
        how = "frame pairs" if est["method"] == "temporal" else "noise-only spatial frequencies"
        out.print(
            f"camera estimated from the data (photon transfer over {how}, em_gain={camera.em_gain:g}, "
            f"read_noise={camera.read_noise:g} e-): offset ≈ {est['offset']:.1f} ± {est['offset_sd']:.1f} ADU, "
            f"e_per_adu ≈ {est['e_per_adu']:.3f} ± {est['e_per_adu_sd']:.3f} photoelectrons/ADU",
            markup=False,
        )
    else:
        out.print(f"camera estimate not possible: {result.get('camera_estimate_error')}", markup=False)
