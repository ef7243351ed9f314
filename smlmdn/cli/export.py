"""`smlmdn export model.pt -o NAME.bioimageio.zip`: the denoiser as a BioImage Model Zoo package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..progress import console
from .app import command


@command("export")
def export(
    model: Annotated[Path, typer.Argument(help="Model file written by `smlmdn fit` (model.pt).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Package to write, NAME.bioimageio.zip.")],
    test_movie: Annotated[
        Path | None,
        typer.Option(
            "--movie",
            help="Raw movie (camera ADU) whose first frames (top-left crop) become the package's test input. Default: a small simulation with the model's camera.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Model name in the package. Default: smlmdn Gamma-Poisson blind-spot denoiser HASH."
        ),
    ] = None,
    author: Annotated[
        list[str] | None, typer.Option("--author", help="Author name (repeat for several). Default: smlmdn.")
    ] = None,
    test_frames: Annotated[int, typer.Option("--test-frames", min=1, help="Frames in the test input.")] = 6,
    test_size: Annotated[int, typer.Option("--test-size", min=8, help="Side (px) of the test input's crop.")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing package.")] = False,
) -> None:
    r"""Write a BioImage Model Zoo package (bioimageio model format 0.5, pytorch_state_dict weights) that computes the posterior mean in detected photons from raw detected photons, the pixel's own count included.

    The package holds the network and the posterior step as one torch module (no smlmdn needed to run it),
    the camera numbers and units, axes (batch, time, y, x; space in nm), a test input and the test output
    computed by `smlmdn denoise --estimate mean`, and citations. Needs the optional extra: pip install "smlmdn\[bioimageio]".
    """
    from ..denoise.export import export_bioimageio

    out = export_bioimageio(
        model,
        output,
        movie=test_movie,
        name=name,
        authors=author,
        frames=test_frames,
        size=test_size,
        overwrite=overwrite,
    )
    console().print(
        f"wrote {out} (BioImage Model Zoo package; test it with: bioimageio test {out})", highlight=False, markup=False
    )
