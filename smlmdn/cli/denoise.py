"""`smlmdn denoise MOVIE --model model.pt -o OUT`: posterior estimates of a movie, written block by block."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import dask.array as da
import numpy as np
import typer

from ..camera import from_photons, movie_to_photons
from ..errors import SmlmdnError
from ..io import check_output, open_movie, write_movie
from . import options as o
from .app import command

ESTIMATE_HELP = (
    "mean (posterior mean, default), map (posterior mode), std (posterior standard deviation: per-pixel uncertainty) "
    "or prior (the blind-spot prediction alone, like Noise2Void). Repeat for several; each gets its own output."
)


def output_for(output: Path, estimate: str, several: bool) -> Path:
    """The output path of one estimate: OUT itself when only one is written, else ``NAME_<estimate>.ext``.

    ``denoised.zarr`` -> ``denoised_mean.zarr``, ``denoised.ome.zarr`` -> ``denoised_std.ome.zarr``,
    ``out.tif`` -> ``out_map.tif``.
    """
    if not several:
        return output
    name = output.name
    lower = name.lower()
    for ext in (".ome.zarr", ".ome.tiff", ".ome.tif", ".zarr", ".tiff", ".tif"):
        if lower.endswith(ext):
            return output.with_name(f"{name[: -len(ext)]}_{estimate}{name[-len(ext):]}")
    return output.with_name(f"{name}_{estimate}")


@command("denoise")
def denoise(
    movie: Annotated[Path, typer.Argument(help="Raw movie (camera ADU unless --units photons): TIFF/OME-TIFF, folder/glob of TIFFs, Zarr/OME-Zarr, .npy.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file from `smlmdn fit`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output movie: .zarr, .ome.zarr or .tif. With several --estimate: NAME_<estimate>.ext each.")],
    estimate: Annotated[Optional[list[str]], typer.Option("--estimate", "-e", help=ESTIMATE_HELP)] = None,
    out_units: Annotated[str, typer.Option("--out-units", help="photons (float32 detected photons) or adu (the movie's camera: uint16 for TIFF, so Picasso/ThunderSTORM read it as camera data; float32 for Zarr).")] = "photons",
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu or cuda.")] = "auto",
    tile: Annotated[int, typer.Option("--tile", help="Largest spatial tile (px) per network call; tiles overlap by the receptive field, so output does not depend on it.")] = 256,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch (default: torch's choice).")] = None,
    camera_file: o.CameraFile = None,
    offset: o.Offset = None,
    e_per_adu: o.EPerADU = None,
    qe: o.QE = None,
    em_gain: o.EMGain = None,
    read_noise: o.ReadNoise = None,
    pixel_size: o.PixelSize = None,
    units: o.Units = "adu",
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
) -> None:
    """Denoise MOVIE with a trained model: Gamma-Poisson posterior estimates, streamed block by block.

    Reads the movie lazily, runs the network on frame blocks (with the temporal halo of the model's
    context) and spatial tiles, and writes each estimate with its provenance (units, estimate, model
    hash, camera). Memory stays flat in movie length.
    """
    import torch

    from ..denoise import ESTIMATES, denoise_lazy, load_model
    from ..denoise.train import resolve_device

    names = [e.lower() for e in (estimate or ["mean"])]
    bad = [e for e in names if e not in ESTIMATES]
    if bad:
        raise SmlmdnError(f"unknown --estimate {', '.join(bad)}", f"use one or more of {', '.join(ESTIMATES)}")
    names = list(dict.fromkeys(names))
    out_units = out_units.lower()
    if out_units not in ("photons", "adu"):
        raise SmlmdnError(f"unknown --out-units {out_units!r}", "use --out-units photons or --out-units adu")
    if out_units == "adu" and "std" in names:
        raise SmlmdnError("--estimate std is a spread, not an intensity: it cannot be written as ADU", "write std with --out-units photons")
    if threads is not None:
        if threads < 1:
            raise SmlmdnError(f"--threads must be >= 1, got {threads}", "e.g. --threads 2")
        torch.set_num_threads(threads)
    if tile < 8:
        raise SmlmdnError(f"--tile must be >= 8 px, got {tile}", "use e.g. --tile 256")
    outputs = {name: output_for(output, name, len(names) > 1) for name in names}
    for path in outputs.values():
        if not path.name.lower().endswith((".zarr", ".tif", ".tiff")):
            raise SmlmdnError(f"unknown output format for {path}", "end the output name in .zarr, .ome.zarr or .tif")
        check_output(path, overwrite)
    camera = o.camera_from_options(camera_file, offset, e_per_adu, qe, em_gain, read_noise, pixel_size)
    mdl = load_model(model, camera)
    _, message = resolve_device(device)
    if not quiet:
        from ..progress import console

        console().print(message, highlight=False)
    photons = movie_to_photons(open_movie(movie), camera, units=units)
    lazy = denoise_lazy(photons, model, estimates=tuple(names), device=device, tile=tile)
    with _shared_pass(lazy, output, quiet) as lazy:
        _write_all(lazy, outputs, out_units, camera, model, mdl.hash(), movie, overwrite, quiet, photons.shape[0])


@contextmanager
def _shared_pass(lazy: dict[str, da.Array], output: Path, quiet: bool) -> Iterator[dict[str, da.Array]]:
    """With several estimates, run the network once: compute them together, block by block, into a
    temporary Zarr next to the output (removed afterwards) and write each output from it."""
    if len(lazy) == 1:
        yield lazy
        return
    import zarr

    from ..progress import track

    names = list(lazy)
    stacked = da.stack([lazy[n] for n in names])
    tmp = output.with_name(f".{output.name}.estimates.tmp.zarr")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        n, t, y, x = stacked.shape
        block = stacked.chunks[1][0]
        z = zarr.open_array(str(tmp), mode="w", shape=stacked.shape, chunks=(1, block, y, x), dtype=np.float32)
        with track(total=t, description="denoise", enabled=not quiet) as advance:
            edges = np.cumsum((0,) + stacked.chunks[1])
            for b0, b1 in zip(edges[:-1].tolist(), edges[1:].tolist()):  # one network pass per block
                z[:, b0:b1] = np.asarray(stacked[:, b0:b1].compute())
                advance(b1 - b0)
        arr = da.from_zarr(z)
        yield {name: arr[i].rechunk((block, y, x)) for i, name in enumerate(names)}
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _write_all(lazy, outputs, out_units, camera, model, model_hash, movie, overwrite, quiet, n_frames) -> None:  # noqa: ANN001
    for name, path in outputs.items():
        arr = lazy[name]
        if out_units == "adu":
            tiff = not path.name.lower().endswith(".zarr")
            arr = from_photons(arr, camera, np.uint16 if tiff else np.float32)
        attrs = {"units": out_units, "estimate": name, "model": str(model), "model_hash": model_hash,
                 "camera": camera.to_dict(), "source": str(movie)}
        write_movie(arr, path, overwrite=overwrite, attrs=attrs, pixel_size=camera.pixel_size, progress=not quiet,
                    description=f"write ({name})" if len(outputs) > 1 else "denoise")
        typer.echo(f"wrote {path} ({name}, {out_units}, {n_frames} frames)")
