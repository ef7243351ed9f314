"""`smlmdn compare MOVIE (--model model.pt | --denoised PATH) -o REPORT_DIR [--truth truth.csv] [--clean clean.tif]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..camera import Camera
from ..errors import SmlmdnError
from ..progress import console
from . import options as o
from .app import command
from .localize import (
    DEFAULT_FDR,
    DEFAULT_MAX_DISTANCE_NM,
    DEFAULT_POOL,
    Extend,
    Fdr,
    LinkDistance,
    MultiEmitter,
    Pool,
    Threshold,
)

if TYPE_CHECKING:
    from ..evaluate.compare_report import CompareReport

GT = "Ground truth (simulations)"
LOC = "Localization, the same in every mode (units: px for --box, nm for --psf-sigma)"


def print_summary(report: CompareReport, where: Path) -> None:
    """Print the two summary tables, both answers and where the report and pictures are (stdout)."""
    from rich.console import Console
    from rich.markup import escape

    from ..evaluate.report import rich_tables  # here, not at the top: `smlmdn localize` need not import the evaluators

    out = Console()
    if not out.is_terminal:  # a pipe or a log file: do not squeeze the tables into 80 columns
        out = Console(width=120)
    for table in rich_tables(report):
        out.print(table)
    out.print(f"[bold]1. How well does denoising work?[/bold] {escape(report.answers.denoising)}", highlight=False)
    out.print(
        f"[bold]2. Does denoising before localization help?[/bold] {escape(report.answers.localization)}",
        highlight=False,
    )
    figures = ", ".join(report.figures.values())
    out.print(
        f"report: {where / 'report.md'} and {where / 'report.json'}; pictures in {where}/: {figures}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@command("compare")
def compare(
    movie: Annotated[
        Path,
        typer.Argument(
            help="Raw movie (camera ADU unless --units photons): TIFF/OME-TIFF, folder/glob of TIFFs, Zarr/OME-Zarr, .npy."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Report folder to create (report.json, report.md, PNG figures, localization tables)."
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Denoiser model.pt (from `smlmdn fit`): the estimates are computed here."),
    ] = None,
    denoised: Annotated[
        list[Path] | None,
        typer.Option(
            "--denoised",
            metavar="PATH",
            help="Denoised movie(s) written by `smlmdn denoise` (same shape as MOVIE) instead of --model; repeat for several estimates (named by the file's estimate attribute).",
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="Ground-truth CSV with columns frame (0-based), x_nm, y_nm [, photons], e.g. truth.csv from `smlmdn simulate`.",
            rich_help_panel=GT,
        ),
    ] = None,
    clean: Annotated[
        Path | None,
        typer.Option(
            "--clean",
            help="Noise-free movie, expected values in --clean-units (clean.tif from `smlmdn simulate`: detected photons): enables PSNR and SSIM.",
            rich_help_panel=GT,
        ),
    ] = None,
    clean_units: Annotated[
        str,
        typer.Option(
            "--clean-units",
            help="Units of --clean: detected (photoelectrons, as smlmdn's estimates and `smlmdn simulate`'s clean.tif; default), emitted (photons before QE: multiplied by --qe) or adu (camera units: converted with the camera numbers).",
            rich_help_panel=GT,
        ),
    ] = "detected",
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Matching radius in nm (SMLM challenge: 250).", rich_help_panel=GT)
    ] = 250.0,
    estimate: Annotated[
        list[str] | None,
        typer.Option(
            "--estimate",
            metavar="NAME",
            help="With --model: estimates to score (mean, map, prior); repeat for several. Default: all three.",
        ),
    ] = None,
    localize_estimate: Annotated[
        str,
        typer.Option(
            "--localize-estimate",
            help="Estimate used by the denoised and hybrid localization modes.",
            rich_help_panel=LOC,
        ),
    ] = "mean",
    box: Annotated[int, typer.Option("--box", help="Fit box side in pixels (odd).", rich_help_panel=LOC)] = 7,
    psf_sigma: Annotated[
        float, typer.Option("--psf-sigma", help="PSF Gaussian standard deviation in nm.", rich_help_panel=LOC)
    ] = 130.0,
    fit_sigma: Annotated[
        bool, typer.Option("--fit-sigma", help="Fit the PSF width per spot.", rich_help_panel=LOC)
    ] = False,
    fdr: Fdr = DEFAULT_FDR,
    pool: Pool = DEFAULT_POOL,
    multi_emitter: MultiEmitter = True,
    extend: Extend = True,
    link_distance: LinkDistance = DEFAULT_MAX_DISTANCE_NM,
    threshold: Threshold = None,
    render_pixel: Annotated[
        float, typer.Option("--render-pixel", help="Pixel size of the rendered super-resolution images, nm.")
    ] = 10.0,
    keep_denoised: Annotated[
        bool,
        typer.Option(
            "--keep-denoised", help="With --model: keep the denoised movies as REPORT_DIR/denoised/<estimate>.zarr."
        ),
    ] = False,
    device: Annotated[str, typer.Option("--device", help="With --model: auto, cpu or cuda.")] = "auto",
    camera: Camera = Camera(),  # noqa: B008 - replaced by the camera options (see app.command)
    units: o.Units = "adu",
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
) -> None:
    """Answer both questions for a movie: how well does denoising work, and does it improve localization?

    Scores the raw photons and each denoised estimate (PSNR/SSIM against --clean, background SNR always),
    localizes in raw, denoised and hybrid modes with the same settings (matching against --truth; count,
    CRLB, NeNA and FRC always), and writes report.json, report.md and PNG figures into the report folder.
    """  # noqa: D400 -- `smlmdn compare --help` text: its summary is the question the command answers
    if not denoised:
        denoised = None
    if model is None and denoised is None:
        raise SmlmdnError(
            "compare needs the denoiser's output",
            "pass --model model.pt (from `smlmdn fit`) or --denoised denoised.zarr (from `smlmdn denoise`)",
        )
    if model is not None and denoised is not None:
        raise SmlmdnError("both --model and --denoised were given", "pass only one of them")
    if estimate and denoised is not None:
        raise SmlmdnError(
            "--estimate only applies with --model", "drop --estimate, or pass --model instead of --denoised"
        )
    from ..compare import DEFAULT_ESTIMATES
    from ..compare import compare as run_compare

    err = console()
    log = (lambda msg: None) if quiet else (lambda msg: err.print(msg, highlight=False, markup=False))
    report = run_compare(
        movie,
        camera,
        out_dir=output,
        model=model,
        denoised=denoised,
        truth=truth,
        clean=clean,
        clean_units=clean_units.lower(),
        estimates=tuple(estimate) if estimate else DEFAULT_ESTIMATES,
        localize_estimate=localize_estimate,
        units=units,
        tolerance_nm=tolerance,
        box=box,
        psf_sigma_nm=psf_sigma,
        fit_sigma=fit_sigma,
        threshold=threshold,
        fdr=fdr,
        pool=pool,
        link_distance_nm=link_distance,
        multi_emitter=multi_emitter,
        extend=extend,
        render_pixel_nm=render_pixel,
        device=device,
        keep_denoised=keep_denoised,
        overwrite=overwrite,
        progress=not quiet,
        log=log,
    )
    print_summary(report, output)
