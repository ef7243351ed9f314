"""Denoising movies into files: what ``smlmdn denoise`` does, as library functions.

:class:`DenoiseSettings` holds every choice of the command, checked once where it is made;
:func:`plan_outputs` names each movie's output files (one per estimate; a batch writes into a folder)
and refuses names that cannot be written; :func:`denoise_movie` denoises one movie into its files,
block by block, all estimates from one network pass per block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import DENOISED_SUFFIX, batch_outputs, estimate_output, is_batch
from ..camera import Camera, from_photons, movie_to_photons
from ..device import check_device_name
from ..errors import SmlmdnError
from ..io import check_output, open_movie, write_movies
from .likelihood import ESTIMATES

#: Units of the written estimates.
OUT_UNITS = ("photons", "adu")
#: Output formats of a batch (``--format``).
BATCH_FORMATS = ("zarr", "ome.zarr", "tif")
#: Units of the input movie.
IN_UNITS = ("adu", "photons")
#: Output names denoise can write.
OUTPUT_SUFFIXES = (".zarr", ".tif", ".tiff")
#: The smallest spatial tile, px.
MIN_TILE = 8


@dataclass(frozen=True)
class DenoiseSettings:
    """How ``smlmdn denoise`` denoises and writes, checked on construction.

    ``estimates``: names from :data:`~smlmdn.denoise.ESTIMATES` (lower-cased, duplicates dropped,
    each written to its own output); ``out_units``: ``photons`` (float32 detected photons) or
    ``adu`` (the movie's camera: uint16 in TIFF, float32 in Zarr); ``units``: the input movie's
    units (``adu`` or ``photons``); ``device``: ``auto``, ``cpu`` or ``cuda``; ``tile``: largest
    spatial tile per network call, px (>= 8); ``block_frames``: frames per block (None: the movie's
    blocks, at most :data:`~smlmdn.denoise.apply.DEFAULT_BLOCK_FRAMES`); ``threads``: torch CPU
    threads (None: torch's choice); ``pyramid``: OME-Zarr resolution levels (None: only for large
    frames); ``batch_format``: output format of a batch (``zarr``, ``ome.zarr`` or ``tif``).

    Raises
    ------
    SmlmdnError
        An unknown estimate, units, device or format, ``std`` asked in ADU, or a count out of range,
        with the option to change.
    """

    estimates: tuple[str, ...] = ("mean",)
    out_units: str = "photons"
    units: str = "adu"
    device: str = "auto"
    tile: int = 256
    block_frames: int | None = None
    threads: int | None = None
    pyramid: bool | None = None
    batch_format: str = "zarr"

    def __post_init__(self) -> None:
        """Normalise the names and check every setting (raises :class:`SmlmdnError`)."""
        names = tuple(dict.fromkeys(e.lower() for e in (self.estimates or ("mean",))))
        bad = [e for e in names if e not in ESTIMATES]
        if bad:
            raise SmlmdnError(f"unknown --estimate {', '.join(bad)}", f"use one or more of {', '.join(ESTIMATES)}")
        object.__setattr__(self, "estimates", names)
        out_units = self.out_units.lower()
        if out_units not in OUT_UNITS:
            raise SmlmdnError(f"unknown --out-units {self.out_units!r}", "use --out-units photons or --out-units adu")
        object.__setattr__(self, "out_units", out_units)
        if out_units == "adu" and "std" in names:
            raise SmlmdnError(
                "--estimate std is a spread, not an intensity: it cannot be written as ADU",
                "write std with --out-units photons",
            )
        if self.units not in IN_UNITS:
            raise SmlmdnError(f"unknown units {self.units!r}", "use --units adu or --units photons")
        check_device_name(self.device)
        if self.threads is not None and self.threads < 1:
            raise SmlmdnError(f"--threads must be >= 1, got {self.threads}", "e.g. --threads 2")
        if self.block_frames is not None and self.block_frames < 1:
            raise SmlmdnError(f"--block-frames must be >= 1, got {self.block_frames}", "e.g. --block-frames 64")
        if self.tile < MIN_TILE:
            raise SmlmdnError(f"--tile must be >= {MIN_TILE} px, got {self.tile}", "use e.g. --tile 256")
        fmt = self.batch_format.lower().lstrip(".")
        if fmt not in BATCH_FORMATS:
            raise SmlmdnError(f"unknown --format {self.batch_format!r}", "use zarr, ome.zarr or tif")
        object.__setattr__(self, "batch_format", fmt)


@dataclass(frozen=True)
class OutputPlan:
    """Where each movie's estimates go: ``outputs[movie][estimate]`` is a path; ``batch``: written into a folder."""

    batch: bool
    outputs: dict[Path, dict[str, Path]]

    def finished_marker(self, movie: Path) -> Path:
        """Return the output written last for ``movie`` (its existence marks the movie as done)."""
        return list(self.outputs[movie].values())[-1]


def plan_outputs(movies: Sequence[Path], output: Path, settings: DenoiseSettings, overwrite: bool) -> OutputPlan:
    """Name every output of ``movies`` (expanded paths) for ``-o output``.

    One movie: ``output`` itself, or ``NAME_<estimate>.ext`` for several estimates. Several movies
    (a batch, :func:`smlmdn.batch.is_batch`): ``output`` is a folder and each movie's output is
    ``<movie>_denoised.<batch_format>`` (suffixed per estimate likewise). Raises :class:`SmlmdnError`
    for a name that is not ``.zarr``, ``.ome.zarr`` or ``.tif``, or (one movie, without
    ``overwrite``) an output that exists.
    """
    paths = list(movies)
    batch = is_batch(paths, [output])
    if batch:
        suffix = f"{DENOISED_SUFFIX}.{settings.batch_format}"
        targets = {p: outs[0] for p, outs in batch_outputs(paths, output, [suffix]).items()}
    else:
        targets = {paths[0]: output}
    several = len(settings.estimates) > 1
    outputs = {p: {name: estimate_output(t, name, several) for name in settings.estimates} for p, t in targets.items()}
    for outs in outputs.values():
        for path in outs.values():
            if not path.name.lower().endswith(OUTPUT_SUFFIXES):
                raise SmlmdnError(
                    f"unknown output format for {path}", "end the output name in .zarr, .ome.zarr or .tif"
                )
            if not batch:
                check_output(path, overwrite)
    return OutputPlan(batch, outputs)


@dataclass(frozen=True)
class DenoisedMovie:
    """What :func:`denoise_movie` wrote: the ``outputs`` (one per estimate) and the movie's ``frames``."""

    outputs: tuple[Path, ...]
    frames: int


def denoise_movie(
    movie: str | Path,
    model: str | Path,
    model_hash: str,
    camera: Camera,
    outputs: Mapping[str, Path],
    settings: DenoiseSettings,
    overwrite: bool = False,
    progress: bool = True,
) -> DenoisedMovie:
    """Denoise one movie (T, Y, X, in ``settings.units``) with the model file ``model`` into ``outputs``.

    ``outputs``: estimate name -> output path (``.zarr``, ``.ome.zarr`` or ``.tif``; see
    :func:`plan_outputs`); ``model_hash``: the model's hash, recorded in every output with the
    units, estimate, model path, camera numbers and source movie. The movie is read lazily in
    frame blocks, one network pass per block feeds every estimate, and Zarr outputs resume from
    their finished blocks (:func:`smlmdn.io.write_movies`). Estimates are written in photons
    (float32) or, with ``out_units="adu"``, in the movie's camera units (uint16 in TIFF).

    Raises :class:`SmlmdnError` for a movie that cannot be read or is too short for the model, and
    for outputs that exist (without ``overwrite``).
    """
    import torch

    from .apply import DEFAULT_BLOCK_FRAMES, denoise_lazy

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    frames = settings.block_frames or min(open_movie(movie).chunks[0][0], DEFAULT_BLOCK_FRAMES)  # flat memory
    photons = movie_to_photons(open_movie(movie, block_frames=frames), camera, units=settings.units)
    lazy = denoise_lazy(photons, model, estimates=settings.estimates, device=settings.device, tile=settings.tile)
    arrays: dict[str | Path, Any] = {}  # dask arrays
    attrs: dict[str | Path, dict[str, Any]] = {}
    for name, path in outputs.items():
        arr = lazy[name]
        if settings.out_units == "adu":
            tiff = not path.name.lower().endswith(".zarr")
            arr = from_photons(arr, camera, np.uint16 if tiff else np.float32)
        arrays[path] = arr
        attrs[path] = {
            "units": settings.out_units,
            "estimate": name,
            "model": str(model),
            "model_hash": model_hash,
            "camera": camera.to_dict(),
            "source": str(movie),
        }
    # one network pass per block feeds every estimate's output
    written = write_movies(
        arrays,
        overwrite=overwrite,
        attrs=attrs,
        pixel_size=camera.pixel_size,
        progress=progress,
        description="denoise",
        pyramid=settings.pyramid,
    )
    return DenoisedMovie(tuple(Path(w) for w in written), int(photons.shape[0]))
