"""`smlmdn localize MOVIE -o locs.csv [--mode raw|denoised|hybrid --denoised D | --model M]`."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from ..batch import denoised_for, expand_inputs
from ..camera import Camera, movie_to_photons, saturation_photons
from ..errors import SmlmdnError
from ..io import frame_offset, open_estimate, open_movie
from ..localize import localize_movie_blocks
from ..localize.link import DEFAULT_MAX_DISTANCE_NM
from ..localize.outputs import plan_outputs, write_tables
from ..localize.pipeline import block_frames
from ..localize.settings import DEFAULT_FDR, DEFAULT_POOL, MODES, LocalizeSettings, choose_mode
from ..parallel import in_frame_blocks
from . import batching as b
from . import options as o
from .app import command

LOC = "Localization (units: px for --box, nm for --psf-sigma)"

# The acceptance and linking options, shared with `smlmdn compare`.
Fdr = Annotated[
    float,
    typer.Option(
        "--fdr",
        help="False-discovery rate of the acceptance test: a candidate is kept when a likelihood-ratio test on its raw photon counts (molecule vs background only) rejects 'background only', with Benjamini-Hochberg control over every pixel of the movie. Same meaning on raw and denoised inputs.",
        rich_help_panel=LOC,
    ),
]
Pool = Annotated[
    int,
    typer.Option(
        "--pool",
        help="Also test the raw photons summed over this many neighbouring frames on each side (a blink's photons pooled); a localization still needs evidence in its own frame. 0 = single frames.",
        rich_help_panel=LOC,
    ),
]
LinkDistance = Annotated[
    float,
    typer.Option(
        "--link-distance",
        help="Largest distance (nm) at which localizations in consecutive frames (1 dark frame allowed) are linked as one blink; each row keeps its own fit and gets the blink's pooled position (x_linked, y_linked, uncertainty_linked columns).",
        rich_help_panel=LOC,
    ),
]
Extend = Annotated[
    bool,
    typer.Option(
        "--extend/--no-extend",
        help="Test the frame before and after each linked blink, and frames inside it without a localization, at the blink's known position (a likelihood-ratio test on the raw photons with the same FDR); accepted frames are added with the blink's pooled position and extended=True (dim first/last frames of a blink). Calibrated test only; measured in benchmarks/RESULTS.md.",
        rich_help_panel=LOC,
    ),
]
MultiEmitter = Annotated[
    bool,
    typer.Option(
        "--multi-emitter/--single-emitter",
        help="After the first fits, subtract them, look for molecules hidden next to brighter ones in the residual, and refit crowded localizations with their neighbours held fixed (DAOSTORM-style multi-emitter fitting). --single-emitter is faster and finds fewer molecules wherever they crowd (filaments, dense labelling); measured in benchmarks/RESULTS.md.",
        rich_help_panel=LOC,
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Expert override: keep every candidate above this band-pass significance (noise standard deviations; 4.2 was the old default) instead of the FDR-controlled test.",
        rich_help_panel=LOC,
    ),
]


@command("localize")
def localize(
    movies: Annotated[
        list[str],
        typer.Argument(
            help="Raw movie(s) (camera ADU unless --units photons): TIFF/OME-TIFF, folder of TIFFs, Zarr/OME-Zarr, .npy; several paths or quoted globs run as a batch.",
            show_default=False,
        ),
    ],
    output: Annotated[
        list[Path],
        typer.Option(
            "--output",
            "-o",
            help="Localization table(s): .csv (ThunderSTORM columns, nm, 1-based frames), .hdf5 (Picasso, + .yaml) or .parquet; repeat for several. For a batch: one folder, tables named <movie>.<format>.",
        ),
    ],
    table_format: Annotated[
        list[str] | None,
        typer.Option("--format", help="Batch table format(s): csv, hdf5, parquet (repeatable; default csv)."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="; ".join(f"{m.name}: {m.summary}" for m in MODES.values())
            + ". Default: hybrid when --denoised/--model is given, else raw.",
            rich_help_panel=LOC,
        ),
    ] = None,
    denoised: Annotated[
        Path | None,
        typer.Option(
            "--denoised",
            help="Denoised movie written by `smlmdn denoise` (photons; same shape as MOVIE); for a batch, the folder of <movie>_denoised.* outputs.",
            rich_help_panel=LOC,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="Denoiser model.pt: denoise on the fly instead of --denoised.", rich_help_panel=LOC
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="auto (CUDA when torch sees a GPU, else CPU), cpu or cuda: where spots are fitted (numba on the CPU, torch on the GPU) and, with --model, denoised.",
            rich_help_panel=LOC,
        ),
    ] = "auto",
    box: Annotated[int, typer.Option("--box", help="Fit box side in pixels (odd).", rich_help_panel=LOC)] = 7,
    psf_sigma: Annotated[
        float,
        typer.Option(
            "--psf-sigma",
            help="PSF Gaussian standard deviation in nm (fixed, or the start value with --fit-sigma).",
            rich_help_panel=LOC,
        ),
    ] = 130.0,
    fit_sigma: Annotated[
        bool, typer.Option("--fit-sigma", help="Fit the PSF width per spot instead of fixing it.", rich_help_panel=LOC)
    ] = False,
    fdr: Fdr = DEFAULT_FDR,
    pool: Pool = DEFAULT_POOL,
    link_distance: LinkDistance = DEFAULT_MAX_DISTANCE_NM,
    threshold: Threshold = None,
    multi_emitter: MultiEmitter = True,
    extend: Extend = True,
    keep_saturated: Annotated[
        bool,
        typer.Option(
            "--keep-saturated",
            help="Keep localizations whose fit box holds a pixel clipped at the camera's maximum (flagged in the 'saturated' column); by default they are dropped and counted.",
            rich_help_panel=LOC,
        ),
    ] = False,
    render: Annotated[
        Path | None,
        typer.Option(
            "--render", help="Also write a super-resolution PNG (Gaussian-blurred histogram); single movie only."
        ),
    ] = None,
    render_tif: Annotated[
        Path | None,
        typer.Option(
            "--render-tif",
            help="Also write the super-resolution image as a float32 TIFF (nm calibration); single movie only.",
        ),
    ] = None,
    render_pixel: Annotated[float, typer.Option("--render-pixel", help="Pixel size of the rendered image, nm.")] = 10.0,
    camera: Camera = Camera(),  # noqa: B008 - replaced by the camera options (see app.command)
    units: o.Units = "adu",
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
    dask_spec: b.DaskSpec = b.DaskSpec(),  # noqa: B008 - replaced by the dask options (see app.command)
    as_json: b.JsonLines = False,
) -> None:
    """Detect molecules and fit them by Poisson maximum likelihood (integrated Gaussian PSF) with a CRLB per localization.

    Coordinates are nm with pixel (0,0) covering 0-1 px (0-pixel-size nm); photons are detected photons
    (photoelectrons). Streams the movie frame block by frame block. Several movies (or globs) run as a
    batch into the folder given by -o: finished tables are skipped, a failing movie is reported and the
    rest go on.
    """
    if denoised is not None and model is not None:
        raise SmlmdnError("both --denoised and --model were given", "pass only one of them")
    chosen = choose_mode(mode, denoised is not None or model is not None)
    settings = LocalizeSettings(
        box=box,
        psf_sigma_nm=psf_sigma,
        fit_sigma=fit_sigma,
        threshold=threshold,
        fdr=fdr,
        pool=pool,
        link_distance_nm=link_distance,
        multi_emitter=multi_emitter,
        extend=extend,
        keep_saturated=keep_saturated,
    )
    if render_pixel <= 0:
        raise SmlmdnError(f"--render-pixel must be > 0 nm, got {render_pixel}", "use e.g. --render-pixel 10")
    paths = expand_inputs(movies)
    plan = plan_outputs(
        paths,
        output,
        table_formats=table_format,
        render_png=render,
        render_tif=render_tif,
        denoised=denoised,
        overwrite=overwrite,
    )
    batch, tables = plan.batch, plan.tables

    def work(movie: Path, _marker: Path) -> str:
        raw = open_movie(movie)
        raw = in_frame_blocks(raw, block_frames(raw.shape[1:]))  # small blocks, read directly: flat, small memory
        photons = movie_to_photons(raw, camera, units=units)
        detect_on = None
        source: dict[str, Any] = {"movie": str(movie), "mode": chosen.name}
        if denoised is not None:
            den = denoised_for(movie, denoised) if batch else denoised
            _, detect_on = open_estimate(den, camera, photons.shape, photons.chunks[0][0])
            source["denoised"] = str(den)
        elif model is not None:
            from ..denoise import denoise_on_the_fly  # torch only when denoising

            detect_on = denoise_on_the_fly(photons, model, camera, device)
            source["model"] = str(model)
        with localize_movie_blocks(
            photons,
            camera,
            settings,
            mode=chosen,
            detect_on=detect_on,
            saturation_photons=saturation_photons(raw.dtype, camera, units),
            progress=not quiet,
            device=device,
        ) as run:
            rendering = render is not None or render_tif is not None
            written, kept = write_tables(  # block by block; kept: the columns the summary and render need
                run,
                tables[movie],
                camera,
                overwrite=overwrite or batch,
                metadata=source,
                frame_offset=frame_offset(),  # --frames START:STOP: frames still count from the movie's start
                keep=["x_nm", "y_nm", "crlb_x_nm", "crlb_y_nm"] if rendering else [],
                derive={"precision_nm": _mean_precision},
                on_disk=not rendering,  # the summary's median only: memory flat in the number of localizations
            )
        if rendering:
            from ..evaluate.render import write_render  # matplotlib only when rendering

            written += write_render(
                kept.table(),
                tuple(photons.shape[1:]),
                camera.pixel_size,
                render_pixel,
                render,
                render_tif,
                overwrite=overwrite,
            )
        a = run.attrs
        with closing(kept):
            precision = f"median precision (CRLB) {kept.nanmedian('precision_nm'):.1f} nm; " if kept.n_rows else ""
        return (
            f"{kept.n_rows} localizations in {photons.shape[0]} frames ({chosen.name} mode; {a['n_candidates']} candidates, "
            f"{a['n_rejected']} rejected by the acceptance test ({a['acceptance']}), {a['n_dropped_nonconverged']} not converged, "
            f"{a['n_dropped_outside']} outside their box, {a['n_saturated']} with saturated pixels {'kept' if a['saturated_kept'] else 'dropped'}; "
            f"{a['n_tracks']} blinks linked, {a['n_extended']} frames added next to blinks); "
            f"{precision}wrote {', '.join(str(p) for p in written)}"
        )

    # the last table written marks a movie as finished
    b.run_movies(
        paths,
        [tables[p][-1] for p in paths],
        work,
        batch=batch,
        overwrite=overwrite,
        as_json=as_json,
        quiet=quiet,
        dask_spec=dask_spec,
    )


def _mean_precision(locs: pd.DataFrame) -> np.ndarray:
    """Per localization, the mean of ``crlb_x_nm`` and ``crlb_y_nm`` (the other where one is NaN), nm (n,)."""
    x, y = locs["crlb_x_nm"].to_numpy(), locs["crlb_y_nm"].to_numpy()
    mean = x + y
    mean /= 2.0
    one = np.isnan(mean)  # a NaN in x or y: the mean of the other alone (NaN when both are)
    mean[one] = np.where(np.isnan(x[one]), y[one], x[one])
    return mean
