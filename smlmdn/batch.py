"""Batches of acquisitions: expand inputs, name outputs after inputs, run each, keep going on failure."""

from __future__ import annotations

import glob as globmod
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import SmlmdnError

MOVIE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".btf", ".zarr", ".npy")


#: Output names that are files (or single-output stores), never a batch's output folder.
OUTPUT_FILE_SUFFIXES = (".csv", ".hdf5", ".h5", ".parquet", ".zarr", ".tif", ".tiff", ".png", ".json", ".yaml", ".pt")


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Paths and glob patterns -> existing movies, in the given order, duplicates removed.

    The rule shared by every command: a glob pattern is a *batch*, one movie per match, in natural
    name order (``frame_2`` before ``frame_10``); the members of a multi-file OME-TIFF (Micro-Manager
    ``*_MMStack_Pos0_1.ome.tif``) are not movies of their own but parts of their first file's movie,
    so they are dropped (see :func:`smlmdn.io.movie_groups`). A folder of TIFFs is one movie.
    """
    from .io import movie_groups

    found: list[Path] = []
    for item in inputs:
        text = str(item)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matches = movie_groups(globmod.glob(text))
            if not matches:
                raise SmlmdnError(
                    f"no files match {text}", "check the pattern (quote it so the shell does not expand it)"
                )
            found.extend(matches)
        else:
            found.append(Path(text))
    unique = list(dict.fromkeys(found))
    # members of a multi-file OME-TIFF named on their own (e.g. an unquoted glob the shell expanded)
    movies = set(movie_groups(unique))
    unique = [f for f in unique if f in movies]
    if not unique:
        raise SmlmdnError("no input movies given", "pass one or more movie paths or globs")
    return unique


def check_batch_folder(output: Path, n_movies: int) -> None:
    """Refuse a file-like ``-o`` (``out.csv``, ``den.zarr``) for a batch.

    A batch writes one output per movie into a folder; raises SmlmdnError naming both ways out.
    """
    if output.name.lower().endswith(OUTPUT_FILE_SUFFIXES):
        raise SmlmdnError(
            f"{n_movies} movies are a batch, written into an output folder, but -o {output} names a file",
            "give a folder (-o OUT_DIR); to read several files as ONE movie, pass their folder instead of a pattern",
        )


def stem(path: Path) -> str:
    """Return a movie's name without its movie suffix: ``cell1.ome.tif`` -> ``cell1``."""
    name = path.name
    for suffix in MOVIE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_for(movie: Path, out_dir: Path, suffix: str) -> Path:
    """Return the output of ``movie`` in ``out_dir``: ``OUT_DIR/<stem><suffix>`` (e.g. suffix ``_denoised.zarr``)."""
    return out_dir / f"{stem(movie)}{suffix}"


def is_batch(movies: Sequence[Path], outputs: Sequence[Path]) -> bool:
    """Tell whether the movies and outputs make a batch, by the rule every command shares.

    A batch is several movies, or one movie written into a folder (a single output that is an
    existing folder or has no suffix). A batch writes one output per movie into that folder
    (:func:`batch_outputs`) and goes on past a failing movie.
    """
    return len(movies) > 1 or (len(outputs) == 1 and (outputs[0].is_dir() or not outputs[0].suffix))


def batch_outputs(movies: Sequence[Path], out_dir: Path, suffixes: Iterable[str]) -> dict[Path, list[Path]]:
    """Return each movie's outputs in a batch.

    ``OUT_DIR/<stem><suffix>`` for each of ``suffixes`` (duplicates dropped). Raises
    :class:`SmlmdnError` for several movies and an ``out_dir`` that names a file.
    """
    if len(movies) > 1:
        check_batch_folder(out_dir, len(movies))
    unique = list(dict.fromkeys(suffixes))
    return {m: [output_for(m, out_dir, s) for s in unique] for m in movies}


#: What a `smlmdn denoise` batch appends to each movie's name (``cell1.tif`` -> ``cell1_denoised.zarr``).
DENOISED_SUFFIX = "_denoised"


def denoised_for(movie: Path, denoised: Path) -> Path:
    """Return the denoised movie of ``movie`` in a folder written by a `smlmdn denoise` batch (``<stem>_denoised.*``).

    Raises :class:`SmlmdnError` when there is none, or several.
    """
    pattern = f"{stem(movie)}{DENOISED_SUFFIX}*"
    found = sorted(p for p in denoised.glob(pattern) if not p.name.endswith(".partial"))
    if len(found) != 1:
        raise SmlmdnError(
            f"{'no' if not found else 'several'} denoised movies named {pattern} in {denoised}",
            "denoise the batch first: smlmdn denoise MOVIES --model model.pt -o " + str(denoised),
        )
    return found[0]


def estimate_output(output: Path, estimate: str, several: bool) -> Path:
    """Return the output path of one denoiser estimate: OUT itself when only one is written, else ``NAME_<estimate>.ext``.

    ``denoised.zarr`` -> ``denoised_mean.zarr``, ``denoised.ome.zarr`` -> ``denoised_std.ome.zarr``,
    ``out.tif`` -> ``out_map.tif``.
    """
    if not several:
        return output
    base = stem(output)
    return output.with_name(f"{base}_{estimate}{output.name[len(base) :]}")


@dataclass
class BatchItem:
    """What happened to one input: ``status`` is ``done``, ``skipped`` (output exists) or ``failed``."""

    input: str
    output: str
    status: str
    message: str = ""
    seconds: float = 0.0


def run_batch(
    movies: list[Path],
    outputs: list[Path],
    work: Callable[[Path, Path], str],
    overwrite: bool = False,
    report: Callable[[BatchItem], None] | None = None,
) -> list[BatchItem]:
    """Run ``work(movie, output) -> message`` for each pair.

    Existing outputs are skipped unless ``overwrite``; an SmlmdnError (or any other error) marks
    that item failed and the batch goes on. KeyboardInterrupt stops the batch. ``report`` is called
    after each item.
    """
    items = []
    for movie, output in zip(movies, outputs, strict=True):
        start = time.perf_counter()
        if output.exists() and not overwrite:
            item = BatchItem(str(movie), str(output), "skipped", "output exists (use --overwrite to redo)")
        else:
            try:
                item = BatchItem(str(movie), str(output), "done", work(movie, output) or "")
            except SmlmdnError as exc:
                item = BatchItem(str(movie), str(output), "failed", exc.one_line())
            except (OSError, ValueError, RuntimeError) as exc:
                item = BatchItem(str(movie), str(output), "failed", f"{type(exc).__name__}: {exc}")
        item.seconds = round(time.perf_counter() - start, 3)
        items.append(item)
        if report is not None:
            report(item)
    return items


def json_line(event: str, **fields: object) -> str:
    """One machine-readable log line for job logs (``--json``)."""
    return json.dumps({"event": event, **fields}, default=str)


def item_json(item: BatchItem) -> str:
    """Return one batch item as a JSON line (event ``item``)."""
    return json_line("item", **asdict(item))
