"""`smlmdn simulate OUT_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..simulate import SimulationParams, simulate_to_dir
from . import options as o
from .app import command

SIM = "Simulation (units: nm, frames, detected photons)"


@command("simulate")
def simulate(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write movie.tif, clean.tif, truth.csv and camera.json into.")
    ],
    snr: Annotated[
        str,
        typer.Option(
            "--snr",
            help="Preset: high (3000 photons, bg 10), medium (1000, 20) or low (300, 30). Explicit options override it.",
            rich_help_panel=SIM,
        ),
    ] = "medium",
    frames: Annotated[
        int | None, typer.Option("--frames", help="Number of frames (default: 1000).", rich_help_panel=SIM)
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="Frame width and height in pixels (default: 64).", rich_help_panel=SIM)
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", help="Pixel size in the sample plane, nm (default: 100).", rich_help_panel=SIM),
    ] = None,
    density: Annotated[
        float | None,
        typer.Option(
            "--density",
            help="Labelled emitters per um^2 of field of view, for every structure (default: 20).",
            rich_help_panel=SIM,
        ),
    ] = None,
    photons: Annotated[
        float | None,
        typer.Option(
            "--photons",
            help="Mean detected photons per emitter per full on-frame (drawn per frame, see --brightness) (default: from --snr).",
            rich_help_panel=SIM,
        ),
    ] = None,
    photons_cv: Annotated[
        float | None,
        typer.Option(
            "--photons-cv",
            help="Coefficient of variation of an emitter's photons from frame to frame; 0 = constant (default: 0.3).",
            rich_help_panel=SIM,
        ),
    ] = None,
    brightness: Annotated[
        str | None,
        typer.Option(
            "--brightness",
            help="Distribution of the per-frame photons, same mean and CV: gamma or lognormal (heavier tails) (default: gamma).",
            rich_help_panel=SIM,
        ),
    ] = None,
    background: Annotated[
        float | None,
        typer.Option(
            "--background",
            help="Mean background, detected photons per pixel per frame (default: from --snr).",
            rich_help_panel=SIM,
        ),
    ] = None,
    flat_background: Annotated[
        bool,
        typer.Option(
            "--flat-background",
            help="Uniform background instead of a Gaussian illumination profile (centre 1.0, edges 0.6).",
            rich_help_panel=SIM,
        ),
    ] = False,
    psf_sigma: Annotated[
        float | None,
        typer.Option("--psf-sigma", help="Gaussian PSF standard deviation, nm (default: 130).", rich_help_panel=SIM),
    ] = None,
    on_time: Annotated[
        float | None,
        typer.Option("--on-time", help="Mean on-time, frames (exponential) (default: 3).", rich_help_panel=SIM),
    ] = None,
    off_time: Annotated[
        float | None,
        typer.Option("--off-time", help="Mean off-time, frames (exponential) (default: 300).", rich_help_panel=SIM),
    ] = None,
    structure: Annotated[
        str | None,
        typer.Option(
            "--structure",
            help="Where emitters sit: filaments, grid (sites 1.5 um apart) or random (default: filaments).",
            rich_help_panel=SIM,
        ),
    ] = None,
    camera_type: Annotated[
        str | None,
        typer.Option(
            "--camera-type",
            help="scmos (0.5 e-/ADU, 1.5 e- read noise) or emccd (gain 100, 10 e-/ADU, 50 e-) (default: scmos).",
            rich_help_panel=SIM,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Random seed; the same seed gives the same movie (default: 0).", rich_help_panel=SIM
        ),
    ] = None,
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
) -> None:
    """Simulate a 2D SMLM movie with ground truth: blinking emitters on a structure, integrated-Gaussian PSF, camera noise.

    Writes OUT_DIR/movie.tif (uint16 ADU), clean.tif (float32 expected photons incl. background), truth.csv (frame,x_nm,y_nm,photons; one row per emitter per on-frame; pixel (0,0) covers 0-1 px in x and y) and camera.json. Streams frame blocks to disk, so long movies need little memory.
    """
    params = SimulationParams.preset(
        snr,
        frames=frames,
        size=size,
        pixel_size=pixel_size,
        density=density,
        photons=photons,
        photons_cv=photons_cv,
        brightness=brightness,
        background=background,
        flat_background=flat_background or None,
        psf_sigma=psf_sigma,
        on_time=on_time,
        off_time=off_time,
        structure=structure,
        camera_type=camera_type,
        seed=seed,
    )
    paths = simulate_to_dir(params, out_dir, overwrite=overwrite, progress=not quiet)
    with open(paths["truth"]) as f:
        n_locs = sum(1 for _ in f) - 1
    cam = params.get_camera()
    typer.echo(
        f"simulated {params.frames} frames of {params.size} x {params.size} px ({params.pixel_size:g} nm), "
        f"{params.n_emitters} emitters on {params.structure} (about {params.active_density:.2g} on per um^2 per frame), "
        f"{n_locs} localizations in truth; "
        f"{params.camera_type} camera (offset {cam.offset:g} ADU, {cam.e_per_adu:g} e-/ADU, gain {cam.em_gain:g}); "
        f"wrote {', '.join(str(p) for p in paths.values())}"
    )
