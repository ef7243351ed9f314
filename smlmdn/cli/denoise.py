"""`smlmdn denoise MOVIE... --model model.pt -o OUT`: posterior estimates of movies, written block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ..batch import DENOISED_SUFFIX, batch_outputs, estimate_output, expand_inputs, is_batch
from ..camera import Camera, from_photons, movie_to_photons
from ..errors import SmlmdnError
from ..io import check_output, open_movie, write_movies
from . import batching as b
from . import options as o
from .app import command

ESTIMATE_HELP = (
    "mean (posterior mean, default), map (posterior mode), std (posterior standard deviation: per-pixel uncertainty) "
    "or prior (the blind-spot prediction alone, like Noise2Void). Repeat for several; each gets its own output."
)


@command("denoise")
def denoise(
    movies: Annotated[
        list[str],
        typer.Argument(
            help="Raw movie(s) (camera ADU unless --units photons): TIFF/OME-TIFF, folder of TIFFs, Zarr/OME-Zarr, .npy; several paths or quoted globs run as a batch.",
            show_default=False,
        ),
    ],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file from `smlmdn fit`.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Output movie: .zarr, .ome.zarr or .tif (with several --estimate: NAME_<estimate>.ext each). For a batch: a folder, outputs named <movie>_denoised.<format>.",
        ),
    ],
    movie_format: Annotated[str, typer.Option("--format", help="Batch output format: zarr, ome.zarr or tif.")] = "zarr",
    estimate: Annotated[list[str] | None, typer.Option("--estimate", "-e", help=ESTIMATE_HELP)] = None,
    out_units: Annotated[
        str,
        typer.Option(
            "--out-units",
            help="photons (float32 detected photons) or adu (the movie's camera: uint16 for TIFF, so Picasso/ThunderSTORM read it as camera data; float32 for Zarr).",
        ),
    ] = "photons",
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu or cuda.")] = "auto",
    tile: Annotated[
        int,
        typer.Option(
            "--tile",
            help="Largest spatial tile (px) per network call; tiles overlap by the receptive field, so output does not depend on it.",
        ),
    ] = 256,
    block_frames: Annotated[
        int | None,
        typer.Option(
            "--block-frames",
            help="Frames per block (default: 256, or fewer to stay near 32 MB of input); each block is one unit of work, of resumption and of memory.",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for torch (default: torch's choice).")
    ] = None,
    pyramid: Annotated[
        bool | None,
        typer.Option(
            "--pyramid/--no-pyramid",
            help="OME-Zarr output: add 2x-binned resolution levels (for napari). Default: only for frames of 1024 px or more.",
        ),
    ] = None,
    camera: Camera = Camera(),  # noqa: B008 - replaced by the camera options (see app.command)
    units: o.Units = "adu",
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
    dask_spec: b.DaskSpec = b.DaskSpec(),  # noqa: B008 - replaced by the dask options (see app.command)
    as_json: b.JsonLines = False,
) -> None:
    """Denoise MOVIE with a trained model: Gamma-Poisson posterior estimates, streamed block by block.

    Reads the movie lazily, runs the network on frame blocks (with the temporal halo of the model's
    context) and spatial tiles, and writes each estimate with its provenance (units, estimate, model
    hash, camera). Memory stays flat in movie length. All estimates share one network pass. Zarr
    outputs resume from their finished blocks when a run is interrupted and restarted. Several movies
    (or globs) run as a batch into the folder given by -o: finished outputs are skipped, a failing
    movie is reported and the rest go on; --scheduler/--cluster spread the blocks over dask workers.
    """
    import torch

    from ..denoise import ESTIMATES, denoise_lazy, load_model
    from ..denoise.apply import DEFAULT_BLOCK_FRAMES
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
        raise SmlmdnError(
            "--estimate std is a spread, not an intensity: it cannot be written as ADU",
            "write std with --out-units photons",
        )
    if threads is not None:
        if threads < 1:
            raise SmlmdnError(f"--threads must be >= 1, got {threads}", "e.g. --threads 2")
        torch.set_num_threads(threads)
    if block_frames is not None and block_frames < 1:
        raise SmlmdnError(f"--block-frames must be >= 1, got {block_frames}", "e.g. --block-frames 64")
    if tile < 8:
        raise SmlmdnError(f"--tile must be >= 8 px, got {tile}", "use e.g. --tile 256")
    paths = expand_inputs(movies)
    batch = is_batch(paths, [output])
    if batch:
        fmt = movie_format.lower().lstrip(".")
        if fmt not in ("zarr", "ome.zarr", "tif"):
            raise SmlmdnError(f"unknown --format {movie_format!r}", "use zarr, ome.zarr or tif")
        targets = {p: outs[0] for p, outs in batch_outputs(paths, output, [f"{DENOISED_SUFFIX}.{fmt}"]).items()}
    else:
        targets = {paths[0]: output}
    outputs = {p: {name: estimate_output(t, name, len(names) > 1) for name in names} for p, t in targets.items()}
    for outs in outputs.values():
        for path in outs.values():
            if not path.name.lower().endswith((".zarr", ".tif", ".tiff")):
                raise SmlmdnError(
                    f"unknown output format for {path}", "end the output name in .zarr, .ome.zarr or .tif"
                )
            if not batch:
                check_output(path, overwrite)
    mdl = load_model(model, camera)
    _, message = resolve_device(device)
    if not quiet:
        from ..progress import console

        console().print(message, highlight=False)

    def work(movie: Path, _marker: Path) -> str:
        frames = block_frames or min(open_movie(movie).chunks[0][0], DEFAULT_BLOCK_FRAMES)  # small blocks: flat memory
        photons = movie_to_photons(open_movie(movie, block_frames=frames), camera, units=units)
        lazy = denoise_lazy(photons, model, estimates=tuple(names), device=device, tile=tile)
        arrays: dict[str | Path, Any] = {}  # dask arrays
        attrs: dict[str | Path, dict[str, Any]] = {}
        for name, path in outputs[movie].items():
            arr = lazy[name]
            if out_units == "adu":
                tiff = not path.name.lower().endswith(".zarr")
                arr = from_photons(arr, camera, np.uint16 if tiff else np.float32)
            arrays[path] = arr
            attrs[path] = {
                "units": out_units,
                "estimate": name,
                "model": str(model),
                "model_hash": mdl.hash(),
                "camera": camera.to_dict(),
                "source": str(movie),
            }
        # one network pass per block feeds every estimate's output
        written = write_movies(
            arrays,
            overwrite=overwrite,
            attrs=attrs,
            pixel_size=camera.pixel_size,
            progress=not quiet,
            description="denoise",
            pyramid=pyramid,
        )
        return (
            f"wrote {', '.join(str(w) for w in written)} ({', '.join(names)}, {out_units}, {photons.shape[0]} frames)"
        )

    # the last estimate written marks a movie as finished
    b.run_movies(
        paths,
        [list(outputs[p].values())[-1] for p in paths],
        work,
        batch=batch,
        overwrite=overwrite,
        as_json=as_json,
        quiet=quiet,
        dask_spec=dask_spec,
    )
