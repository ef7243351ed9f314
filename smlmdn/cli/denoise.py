"""`smlmdn denoise MOVIE... --model model.pt -o OUT`: posterior estimates of movies, written block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..batch import expand_inputs
from ..camera import Camera
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
    from ..denoise import load_model
    from ..denoise.movies import DenoiseSettings, denoise_movie, plan_outputs
    from ..denoise.train import resolve_device

    settings = DenoiseSettings(
        estimates=tuple(estimate or ("mean",)),
        out_units=out_units,
        units=units,
        device=device,
        tile=tile,
        block_frames=block_frames,
        threads=threads,
        pyramid=pyramid,
        batch_format=movie_format,
    )
    paths = expand_inputs(movies)
    plan = plan_outputs(paths, output, settings, overwrite)
    mdl = load_model(model, camera)
    _, message = resolve_device(settings.device)
    if not quiet:
        from ..progress import console

        console().print(message, highlight=False, markup=False)

    def work(movie: Path, _marker: Path) -> str:
        done = denoise_movie(
            movie, model, mdl.hash(), camera, plan.outputs[movie], settings, overwrite=overwrite, progress=not quiet
        )
        return (
            f"wrote {', '.join(str(w) for w in done.outputs)} ({', '.join(settings.estimates)}, {settings.out_units}, "
            f"{done.frames} frames)"
        )

    # the last estimate written marks a movie as finished
    b.run_movies(
        paths,
        [plan.finished_marker(p) for p in paths],
        work,
        batch=plan.batch,
        overwrite=overwrite,
        as_json=as_json,
        quiet=quiet,
        dask_spec=dask_spec,
    )
