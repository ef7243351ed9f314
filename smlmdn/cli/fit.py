"""`smlmdn fit MOVIE -o model.pt`: train the blind-spot Gamma-Poisson denoiser on a movie."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..camera import Camera
from ..progress import console
from . import options as o
from .app import command

TRAIN = "Training"
NET = "Network"


@command("fit")
def fit(
    movie: Annotated[
        Path,
        typer.Argument(
            help="Raw movie (camera ADU unless --units photons): TIFF/OME-TIFF, folder/glob of TIFFs, Zarr/OME-Zarr, .npy."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write (e.g. model.pt).")],
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            help="Training steps (mini-batches). Default: until --time-budget when one is given, else 2000; with both, whichever comes first.",
            rich_help_panel=TRAIN,
        ),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Train for this many seconds (wall clock); the learning-rate schedule follows the fraction of the budget spent.",
            rich_help_panel=TRAIN,
        ),
    ] = None,
    context: Annotated[
        int,
        typer.Option(
            "--context",
            help="Neighbouring frames on each side used as extra input channels (0: single frames; 1 won from ~400 steps on, see benchmarks/RESULTS.md).",
            rich_help_panel=NET,
        ),
    ] = 1,
    context_mode: Annotated[
        str,
        typer.Option(
            "--context-mode",
            help="How the neighbours enter: stem (extra non-blind input channels of the U-Net's first layer) or branch (a separate small CNN joined at the head; the older design).",
            rich_help_panel=NET,
        ),
    ] = "stem",
    width: Annotated[int, typer.Option("--width", help="Channels per U-Net level.", rich_help_panel=NET)] = 16,
    depth: Annotated[
        int,
        typer.Option(
            "--depth", help="Down-samplings in the U-Net (receptive field grows ~2^depth).", rich_help_panel=NET
        ),
    ] = 3,
    head: Annotated[
        str,
        typer.Option(
            "--head",
            help="gamma-poisson (exact NB likelihood, default) or gaussian (Laine's approximation, for comparison).",
            rich_help_panel=NET,
        ),
    ] = "gamma-poisson",
    patch: Annotated[
        int | None,
        typer.Option(
            "--patch",
            help="Training crop side in px, a multiple of 2^depth (default: 64, or less to fit the frame).",
            rich_help_panel=TRAIN,
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Crops per step.", rich_help_panel=TRAIN)] = 4,
    lr: Annotated[
        float,
        typer.Option(
            "--lr",
            help="Peak Adam learning rate (warm-up then cosine decay); 6e-3 beat 1e-3 by 1.3 dB at equal steps.",
            rich_help_panel=TRAIN,
        ),
    ] = 6e-3,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Random seed (same seed + data + threads = same model).", rich_help_panel=TRAIN),
    ] = 0,
    device: Annotated[
        str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu or cuda.", rich_help_panel=TRAIN)
    ] = "auto",
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="CPU threads for torch (default: torch's choice).", rich_help_panel=TRAIN),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted fit from OUTPUT.ckpt.", rich_help_panel=TRAIN)
    ] = False,
    camera: Camera = Camera(),  # noqa: B008 - replaced by the camera options (see app.command)
    units: o.Units = "adu",
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
) -> None:
    """Train a self-supervised blind-spot denoiser (Gamma prior x Poisson noise) on MOVIE and save it.

    Random crops are read lazily from the movie (converted to detected photons with the camera
    numbers); every tenth group of frames is held out for validation. With --time-budget alone it
    trains until the budget is spent (fewer steps on a busy CPU, same schedule); with --steps alone
    it stops there or when the validation loss stops improving; with neither, after 2000 steps. A checkpoint (OUTPUT.ckpt) is saved at each validation;
    after Ctrl-C, rerun with --resume to continue.
    """
    from ..denoise.train import FitConfig, checkpoint_path, fit_file

    config = FitConfig(
        steps=steps,
        time_budget=time_budget,
        context=context,
        context_mode=context_mode.lower(),
        width=width,
        depth=depth,
        head=head.lower(),
        patch=patch,
        batch=batch,
        lr=lr,
        seed=seed,
        device=device,
        threads=threads,
    )
    err = console()
    try:
        model = fit_file(
            movie,
            output,
            camera,
            config,
            units=units,
            resume=resume,
            overwrite=overwrite,
            progress=not quiet,
            log=(lambda msg: None) if quiet else (lambda msg: err.print(msg, highlight=False, markup=False)),
        )
    except KeyboardInterrupt:
        ckpt = checkpoint_path(output)
        if ckpt.exists():
            err.print(
                f"[red]interrupted:[/red] training state kept in {escape(str(ckpt))}; rerun the same command with --resume to continue",
                highlight=False,
                soft_wrap=True,
            )
        else:
            err.print("[red]interrupted[/red] before the first checkpoint; nothing was kept", highlight=False)
        raise typer.Exit(130) from None
    tr = model.training
    typer.echo(
        f"wrote {output}: {tr['steps']} steps in {tr['seconds']:.0f} s ({tr['stopped']}), best validation loss "
        f"{tr['best_val_loss']:.4f} nats/pixel at step {tr['best_step']}; model {model.hash()}"
    )
