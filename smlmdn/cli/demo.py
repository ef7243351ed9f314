"""`smlmdn demo [OUT_DIR]`: the whole pipeline on built-in simulated data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from ..progress import console
from . import options as o
from .app import command
from .compare import print_summary

SIZE = "Demo size (defaults: 64 x 64 px, 1000 frames, a few minutes on 2 CPU cores)"


@command("demo")
def demo(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to create for the simulated data, the model and the report.")
    ] = Path("smlmdn_demo"),
    tiny: Annotated[
        bool,
        typer.Option(
            "--tiny",
            help="Seconds-long run (32 x 32 px, 60 frames, 4 training steps): checks the installation, numbers meaningless.",
            rich_help_panel=SIZE,
        ),
    ] = False,
    size: Annotated[
        int | None, typer.Option("--size", help="Frame width and height, px.", rich_help_panel=SIZE)
    ] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Number of frames.", rich_help_panel=SIZE)] = None,
    snr: Annotated[
        str | None, typer.Option("--snr", help="Simulation preset: high, medium or low.", rich_help_panel=SIZE)
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Maximum training steps.", rich_help_panel=SIZE)] = None,
    time_budget: Annotated[
        float | None,
        typer.Option("--time-budget", help="Training time limit in seconds (default 60).", rich_help_panel=SIZE),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed of the simulation and the training.", rich_help_panel=SIZE)
    ] = None,
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
) -> None:
    """Simulate a small SMLM movie, train a denoiser on it, denoise, localize (raw / denoised / hybrid) and compare with the ground truth.

    Uses the same code as `smlmdn simulate`, `smlmdn fit` and `smlmdn compare`; ends with the report
    tables and where the pictures are.
    """
    from ..demo import DemoConfig, run_demo  # here, not at the top: it imports torch, which other commands may not need

    overrides: dict[str, Any] = dict(size=size, frames=frames, snr=snr, steps=steps, time_budget=time_budget, seed=seed)
    if tiny:
        config = DemoConfig.tiny(**overrides)
    else:
        config = replace(DemoConfig(), **{k: v for k, v in overrides.items() if v is not None})
    err = console()
    log = (lambda msg: None) if quiet else (lambda msg: err.print(msg, highlight=False, markup=False))
    run = run_demo(out_dir, config, overwrite=overwrite, progress=not quiet, log=log)
    print_summary(run.report, run.report_dir)
    s = run.seconds
    typer.echo(
        f"demo finished in {s['total']:.0f} s (simulate {s['simulate']:.0f} s, fit {s['fit']:.0f} s, "
        f"denoise + localize + compare {s['compare']:.0f} s); data in {run.out_dir}/data, "
        f"model {run.model}; open {run.report_dir}/report.md"
    )
