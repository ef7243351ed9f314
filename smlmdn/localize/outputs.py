"""Where a `smlmdn localize` run writes: the tables of each movie (one movie, or a batch into a folder).

The naming and the checks live here, so the command only parses its options and prints: a batch
(see :func:`smlmdn.batch.is_batch`) writes ``OUT_DIR/<movie>.<format>`` per movie and format; one
movie writes the ``-o`` paths given (and optionally a rendered image).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..batch import batch_outputs, is_batch
from ..camera import Camera
from ..errors import SmlmdnError
from ..io import check_output
from .formats import output_format, side_files, write_localization_blocks
from .pipeline import ColumnStack, Localizations

#: Table formats a batch can write (``--format``), as file suffixes without the dot.
TABLE_FORMATS = ("csv", "hdf5", "parquet")
#: Accepted name endings of the rendered images.
RENDER_SUFFIXES = {"png": (".png",), "tif": (".tif", ".tiff")}


@dataclass(frozen=True)
class LocalizeOutputs:
    """The files of a localize run.

    ``tables``: movie -> its table paths (the last one marks the movie as finished);
    ``render_png`` / ``render_tif``: the rendered image (one movie only) or None.
    """

    batch: bool
    tables: dict[Path, list[Path]]
    render_png: Path | None = None
    render_tif: Path | None = None


def plan_outputs(
    movies: Sequence[Path],
    outputs: Sequence[Path],
    *,
    table_formats: Sequence[str] | None = None,
    render_png: Path | None = None,
    render_tif: Path | None = None,
    denoised: Path | None = None,
    overwrite: bool = False,
) -> LocalizeOutputs:
    """Name and check every output before any work.

    ``outputs``: the ``-o`` paths (one folder for a batch); ``table_formats``: a batch's formats (default
    csv; refused for one movie); ``render_png``/``render_tif``: one movie's rendered image;
    ``denoised``: the denoised input (a batch needs a folder of `smlmdn denoise` outputs). Without
    ``overwrite`` an existing output of one movie is refused (a batch skips finished movies instead).
    Raises :class:`SmlmdnError` naming the first problem.
    """
    batch = is_batch(movies, outputs)
    if batch:
        tables = _batch_tables(movies, outputs, table_formats, render_png, render_tif, denoised)
    else:
        if table_formats:
            raise SmlmdnError("--format is for batches", "name the outputs with -o locs.csv -o locs.hdf5 ...")
        tables = {movies[0]: list(outputs)}
        for path, kind in ((render_png, "png"), (render_tif, "tif")):
            if path is not None:
                if not path.name.lower().endswith(RENDER_SUFFIXES[kind]):
                    raise SmlmdnError(f"unknown render format for {path}", f"end the name in .{kind}")
                check_output(path, overwrite)
    for outs in tables.values():
        for path in outs:
            output_format(path)
            if not batch:
                check_output(path, overwrite)
                for extra in side_files(path):
                    check_output(extra, overwrite)
        if len({p.resolve() for p in outs}) != len(outs):
            raise SmlmdnError("the same output is given twice", "give each -o once")
    return LocalizeOutputs(batch, tables, render_png, render_tif)


def _batch_tables(
    movies: Sequence[Path],
    outputs: Sequence[Path],
    table_formats: Sequence[str] | None,
    render_png: Path | None,
    render_tif: Path | None,
    denoised: Path | None,
) -> dict[Path, list[Path]]:
    """Return a batch's tables: ``OUT_DIR/<movie>.<format>`` for each movie and format."""
    if len(outputs) != 1:
        raise SmlmdnError("a batch writes into one folder", "give a single -o OUT_DIR")
    if render_png is not None or render_tif is not None:
        raise SmlmdnError(
            "--render/--render-tif take one movie",
            "render each movie's table separately, or localize one movie at a time",
        )
    formats = [f.lower().lstrip(".") for f in (table_formats or ["csv"])]
    unknown = [f for f in formats if f not in TABLE_FORMATS]
    if unknown:
        raise SmlmdnError(f"unknown --format {', '.join(unknown)}", "use csv, hdf5 or parquet")
    tables = batch_outputs(movies, outputs[0], [f".{f}" for f in formats])
    if denoised is not None and not denoised.is_dir():
        raise SmlmdnError(
            f"for a batch --denoised must be a folder, got {denoised}",
            "pass the -o folder of `smlmdn denoise MOVIES ...`",
        )
    return tables


def write_tables(
    run: Localizations,
    paths: Sequence[Path],
    camera: Camera,
    *,
    overwrite: bool,
    metadata: dict[str, Any],
    frame_offset: int = 0,
    keep: Sequence[str] = (),
    derive: Mapping[str, Callable[[pd.DataFrame], np.ndarray]] | None = None,
    on_disk: bool = False,
) -> tuple[list[Path], ColumnStack]:
    """Write a run's table to every path, block by block (:func:`~smlmdn.localize.formats.write_localization_blocks`).

    ``frame_offset`` is added to every frame (a movie read from frame ``frame_offset`` on). Returns the
    paths written and a :class:`~smlmdn.localize.pipeline.ColumnStack` of the columns ``keep`` of every
    row and of those ``derive`` computes from each block (name -> function of the block, float64
    (rows,)), e.g. for a summary or a rendered image: memory holds one block and those columns, never
    the whole table (``on_disk``: not those columns either; see :class:`~smlmdn.localize.pipeline.ColumnStack`,
    close it when done).
    """
    kept = ColumnStack(run.n_rows, keep, derive, on_disk=on_disk)

    def blocks() -> Iterator[pd.DataFrame]:
        for block in run.blocks():
            block["frame"] += frame_offset
            kept.add(block)
            yield block

    try:
        written = write_localization_blocks(blocks(), run.attrs, paths, camera, overwrite, metadata)
    except BaseException:
        kept.close()
        raise
    return written, kept
