"""Option types shared by every subcommand that reads a movie (camera numbers, units, output)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..camera import Camera, load_camera, read_camera_file

CAMERA_HELP = "Camera (units: offset ADU, e-per-adu photoelectrons/ADU, read-noise e- rms, pixel-size nm)"

CameraFile = Annotated[
    Path | None,
    typer.Option(
        "--camera",
        help="JSON or YAML file with keys offset, e_per_adu, qe, em_gain, read_noise, pixel_size.",
        rich_help_panel=CAMERA_HELP,
    ),
]
Offset = Annotated[
    float | None, typer.Option("--offset", help="Camera baseline in ADU (dark level).", rich_help_panel=CAMERA_HELP)
]
EPerADU = Annotated[
    float | None,
    typer.Option(
        "--e-per-adu",
        help="Photoelectrons per ADU (camera 'sensitivity'/conversion factor).",
        rich_help_panel=CAMERA_HELP,
    ),
]
QE = Annotated[
    float | None,
    typer.Option(
        "--qe", help="Quantum efficiency (0-1); only used to report emitted photons.", rich_help_panel=CAMERA_HELP
    ),
]
EMGain = Annotated[
    float | None,
    typer.Option("--em-gain", help="EMCCD electron-multiplying gain (1 for sCMOS/CCD).", rich_help_panel=CAMERA_HELP),
]
ReadNoise = Annotated[
    float | None, typer.Option("--read-noise", help="Read noise in electrons rms.", rich_help_panel=CAMERA_HELP)
]
PixelSize = Annotated[
    float | None, typer.Option("--pixel-size", help="Pixel size in the sample plane, nm.", rich_help_panel=CAMERA_HELP)
]
#: The camera options, by parameter name: injected by :func:`smlmdn.cli.app.command` into every
#: subcommand that takes a ``camera: Camera`` parameter (the command receives the built Camera).
CAMERA_OPTIONS = {
    "camera_file": (CameraFile, None),
    "offset": (Offset, None),
    "e_per_adu": (EPerADU, None),
    "qe": (QE, None),
    "em_gain": (EMGain, None),
    "read_noise": (ReadNoise, None),
    "pixel_size": (PixelSize, None),
}

FrameRange = Annotated[
    str | None,
    typer.Option(
        "--frames",
        metavar="START:STOP",
        help="Read only frames START to STOP-1 of the movie (0-based; either may be omitted), e.g. 0:60 for the complete part of a truncated file. Frame numbers in outputs still count from the start of the movie.",
    ),
]
#: Injected by :func:`smlmdn.cli.app.command` into every subcommand with a ``movie``/``movies`` parameter.
FRAME_OPTIONS = {"frame_range": (FrameRange, None)}

Units = Annotated[
    str,
    typer.Option(
        "--units", help="Units of the input movie: 'adu' (raw camera counts) or 'photons' (already photoelectrons)."
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def camera_from_options(
    camera_file: Path | None,
    offset: float | None,
    e_per_adu: float | None,
    qe: float | None,
    em_gain: float | None,
    read_noise: float | None,
    pixel_size: float | None,
    default: Camera | None = None,
    movie_numbers: dict[str, float] | None = None,
) -> Camera:
    """Return the camera from ``--camera FILE`` (or ``default``) with individual flags overriding it.

    ``movie_numbers`` (camera keys recorded in the movie, e.g. Picasso's YAML) sit between the
    defaults and the file: the file and the flags override them.
    """
    overrides = dict(
        offset=offset, e_per_adu=e_per_adu, qe=qe, em_gain=em_gain, read_noise=read_noise, pixel_size=pixel_size
    )
    if movie_numbers:
        base = {**(default or Camera()).to_dict(), **movie_numbers}
        if camera_file is not None:
            base.update(read_camera_file(camera_file))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return load_camera(None, **base)
    if camera_file is None and default is not None:
        base = default.to_dict()
        base.update({k: v for k, v in overrides.items() if v is not None})
        return load_camera(None, **base)
    return load_camera(camera_file, **overrides)
