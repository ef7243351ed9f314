"""Streaming movie I/O: open any supported movie lazily as (T, Y, X), write atomically block by block.

Readers never load pixel data: TIFFs go through tifffile's Zarr store interface, Zarr and OME-Zarr
are opened in place, ``.npy`` is read block by block. Writers compute a dask array one frame block at a
time into a temporary sibling (``NAME.partial``) and rename it when complete, so an output that
exists under its final name is always whole. Zarr outputs record finished blocks and resume.
"""

from __future__ import annotations

import functools
import glob as globmod
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import dask
import dask.array as da
import numpy as np

from . import __version__
from .errors import SmlmdnError
from .parallel import compute_blocks, frame_blocks, in_frame_blocks
from .progress import track
from .shapes import check_same_shape, check_tyx

#: Target size of one frame block in bytes (dask chunk and Zarr chunk along T).
BLOCK_BYTES = 32 * 2**20
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
PARTIAL_SUFFIX = ".partial"
DONE_DIR = ".smlmdn_done"


def frames_per_block(frame_shape: tuple[int, ...], itemsize: int, block_bytes: int = BLOCK_BYTES) -> int:
    """How many whole frames fit in ``block_bytes``."""
    return max(1, int(block_bytes // max(1, int(np.prod(frame_shape)) * itemsize)))


# --------------------------------------------------------------------------------------------- read

#: Smallest frame side smlmdn works with (px): a fit box is 7 px and detection needs a margin.
MIN_FRAME_PX = 8
GLOB_CHARS = "*?["

_FRAMES: ContextVar[tuple[slice, frozenset[str]] | None] = ContextVar("smlmdn_frames", default=None)


def parse_frames(text: str) -> slice:
    """``"START:STOP"`` (0-based, STOP exclusive, either may be omitted) -> ``slice(START, STOP)``.

    Raises SmlmdnError for anything else (negative numbers, a step, START >= STOP).
    """
    parts = text.strip().split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise SmlmdnError(
            f"--frames {text!r} is not a range START:STOP", "give e.g. --frames 0:60 (frames 0 to 59)"
        ) from None
    if start < 0 or (stop is not None and stop <= start):
        raise SmlmdnError(f"--frames {text!r} is empty or negative", "give 0 <= START < STOP, e.g. --frames 0:60")
    return slice(start, stop)


def _input_key(path: str | Path) -> str:
    return os.path.realpath(os.fspath(path))


@contextmanager
def frame_range(frames: slice | None, inputs: Iterable[str | Path]) -> Iterator[None]:
    """While active, :func:`open_movie` reads only ``frames`` of the movies named in ``inputs``.

    ``inputs`` are paths or glob patterns as given on the command line (the command's MOVIE
    arguments); other files a command opens (denoised movies, intermediate stores) are not cut.
    This is how ``--frames START:STOP`` reaches every command that reads a movie.
    """
    if frames is None:
        yield
        return
    keys: set[str] = set()
    for item in inputs:
        text = os.fspath(item)
        matches = globmod.glob(text) if any(ch in text for ch in GLOB_CHARS) and not Path(text).exists() else [text]
        keys.update(_input_key(m) for m in matches)
    token = _FRAMES.set((frames, frozenset(keys)))
    try:
        yield
    finally:
        _FRAMES.reset(token)


def frame_offset() -> int:
    """Return the first frame of the active ``--frames`` range (0 when none).

    Add it to frame numbers in outputs so that they count frames of the whole movie.
    """
    active = _FRAMES.get()
    return int(active[0].start or 0) if active else 0


def natural_key(path: str | Path) -> tuple:
    """Sort key that orders ``frame_2.tif`` before ``frame_10.tif`` (digit runs compare as numbers)."""
    name = os.fspath(path)
    return tuple(
        (0, int(part), part) if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name) if part
    )


def natural_sorted(paths: Iterable[str | Path]) -> list[Path]:
    """``paths`` as Paths in natural order (see :func:`natural_key`)."""
    return sorted((Path(p) for p in paths), key=natural_key)


@dataclass
class MovieSource:
    """What :func:`open_movie` found: the frames, where they come from and what the metadata promise.

    ``array`` is (T, Y, X) with the *complete* frames only; ``frames_promised`` is what the
    metadata or the file size promise (None if nothing does); ``files`` lists the files read, in
    order; ``notes`` are facts worth telling the user (files skipped, series ignored);
    ``camera`` holds camera numbers found in the movie's metadata (Picasso YAML).
    """

    array: da.Array
    path: str
    layout: str
    files: list[str] = field(default_factory=list)
    frames_promised: int | None = None
    notes: list[str] = field(default_factory=list)
    camera: dict[str, float] = field(default_factory=dict)
    cut: bool = False

    @property
    def frames_complete(self) -> int:
        """Frames whose pixel data are wholly in the file(s)."""
        return int(self.array.shape[0])

    @property
    def truncated(self) -> bool:
        """True when the file was cut short or holds fewer complete frames than promised."""
        return self.cut or (self.frames_promised is not None and self.frames_promised > self.frames_complete)

    def truncation_message(self) -> str:
        """``movie X is truncated: frames 0-59 of 100 are complete`` (or what is known of it)."""
        c = self.frames_complete
        if self.frames_promised is not None and self.frames_promised > c:
            have = (
                f"frames 0-{c - 1} of {self.frames_promised} are complete"
                if c
                else f"none of its {self.frames_promised} frames is complete"
            )
        else:
            have = (
                f"the file is cut short; only frames 0-{c - 1} are complete"
                if c
                else "the file is cut short; no frame is complete"
            )
        return f"movie {self.path} is truncated: {have}"


def open_movie(path: str | Path, block_frames: int | None = None, frames: slice | None = None) -> da.Array:
    """Open a movie lazily as a dask array (T, Y, X) chunked by whole-frame blocks.

    Layouts: TIFF/BigTIFF/OME-TIFF/ImageJ hyperstacks (singleton axes squeezed), multi-file
    OME-TIFF (Micro-Manager ``*_MMStack_Pos0.ome.tif``, ``*_Pos0_1.ome.tif``: read once, in
    acquisition order, from any member or their folder), a folder of TIFF files concatenated along T
    in natural name order (``frame_2`` before ``frame_10``), Zarr v2/v3 arrays, OME-Zarr (level 0),
    ``.npy`` and Picasso ``.raw`` + ``.yaml`` (read block by block). A glob pattern must
    match exactly one movie (several are a batch: see :func:`smlmdn.batch.expand_inputs`).

    ``frames`` (a slice of frame numbers, default: the active ``--frames`` range for command-line
    inputs, else all) selects frames. ``block_frames`` sets frames per chunk (default: about 32 MB).
    A movie with fewer complete frames than its metadata or file size promise (a truncated file) is
    refused unless ``frames`` lies within the complete part. Raises SmlmdnError naming the problem.
    """
    return inspect_movie(path, block_frames=block_frames, frames=frames).array


def inspect_movie(path: str | Path, block_frames: int | None = None, frames: slice | None = None) -> MovieSource:
    """Like :func:`open_movie`, but returns the :class:`MovieSource` (layout, files, notes, camera)."""
    text = os.fspath(path)
    p = Path(text)
    if any(ch in text for ch in GLOB_CHARS) and not p.exists():
        matches = movie_groups(globmod.glob(text))
        if not matches:
            raise SmlmdnError(f"no files match {text}", "check the pattern (quote it so the shell does not expand it)")
        if len(matches) > 1:
            raise SmlmdnError(
                f"the pattern {text} matches {len(matches)} movies; a pattern is a batch of movies, and this reads one",
                "pass the folder to read its TIFF files as one movie in name order, or run the batch commands "
                "(denoise, localize) on the pattern",
            )
        p = matches[0]
    if not p.exists():
        raise SmlmdnError(f"movie {p} does not exist", "check the path")
    if frames is None:
        active = _FRAMES.get()
        if active and (_input_key(text) in active[1] or _input_key(p) in active[1]):
            frames = active[0]
    if p.is_dir() and not _is_zarr(p):
        files = [f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(TIFF_SUFFIXES)]
        if not files:
            raise SmlmdnError(f"folder {p} holds no TIFF files and is not a Zarr store", "point to a movie file")
        src = _open_tiff_folder(p, files, block_frames)
    elif _is_zarr(p):
        arr, notes = _open_zarr(p)
        src = MovieSource(
            arr, text, "OME-Zarr" if notes and notes[0].startswith("OME") else "zarr", [text], notes=notes
        )
    elif p.suffix.lower() == ".npy":
        try:
            arr = da.from_array(FileArray("npy", str(p.resolve())), chunks=-1, asarray=False)
        except Exception as exc:
            raise SmlmdnError(f"{p} is not a readable .npy file ({exc})", "re-save it with numpy.save") from exc
        src = MovieSource(arr, text, "npy", [text])
    elif p.suffix.lower() == ".raw":
        src = _open_picasso_raw(p, block_frames)
    elif p.name.lower().endswith(TIFF_SUFFIXES):
        src = _open_tiff(p, block_frames)
    else:
        raise SmlmdnError(
            f"unknown movie format {p.suffix or '(no suffix)'} for {p}",
            "use a TIFF, Zarr/OME-Zarr, .npy or Picasso .raw (+ .yaml) movie",
        )
    src.path = text
    arr = src.array = _as_tyx(src.array, p)
    if arr.size == 0 or arr.shape[0] == 0:
        if src.truncated:
            raise SmlmdnError(
                src.truncation_message(), "recover the file (re-export or copy it again); nothing in it can be read"
            )
        raise SmlmdnError(f"movie {p} is empty (shape {arr.shape})", "check that the acquisition saved any frames")
    if min(arr.shape[1:]) < MIN_FRAME_PX:
        raise SmlmdnError(
            f"the frames of {p} are too small ({arr.shape[1]} x {arr.shape[2]} px)",
            f"smlmdn needs frames of at least {MIN_FRAME_PX} x {MIN_FRAME_PX} px; check the file holds a movie",
        )
    start, stop = (0, None) if frames is None else (int(frames.start or 0), frames.stop)
    complete = int(arr.shape[0])
    if src.truncated and (stop is None or stop > complete):
        raise SmlmdnError(
            src.truncation_message(), f"pass --frames 0:{complete} to use the complete part, or recover the whole file"
        )
    if stop is not None and stop > complete:
        raise SmlmdnError(
            f"--frames {start}:{stop} asks for frames beyond the end of {p} ({complete} frames)",
            f"give a range within 0:{complete}",
        )
    if start >= complete:
        raise SmlmdnError(
            f"--frames {start}:{stop if stop is not None else ''} starts after the end of {p} ({complete} frames)",
            f"give a range within 0:{complete}",
        )
    arr = arr[start:stop]
    if block_frames is None:
        block_frames = frames_per_block(arr.shape[1:], arr.dtype.itemsize)
    src.array = in_frame_blocks(arr, min(block_frames, arr.shape[0]))
    return src


def _is_zarr(p: Path) -> bool:
    return p.is_dir() and any((p / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


class FileArray:
    """A picklable stand-in for an array in a file.

    It carries only the path, and each process opens the file itself on first access (cached), so
    dask graphs can be shipped to dask.distributed workers without open file handles or
    memory-mapped data inside them.

    ``kind`` is ``npy``, ``tiff`` (``series`` of a TIFF via tifffile's Zarr store), ``pages``
    (the first ``layout[0]`` pages of a TIFF) or ``raw`` (headerless pixels: ``layout`` =
    (byte offset, shape, dtype string), read per request).
    """

    def __init__(self, kind: str, path: str, series: int = 0, layout: tuple | None = None) -> None:
        self.kind, self.path, self.series, self.layout = kind, path, series, layout
        st = os.stat(path)
        self.stamp = (st.st_mtime_ns, st.st_size)  # a rewritten file is opened afresh, not from the cache
        source = _open_source(kind, path, series, self.stamp, layout)
        self.shape, self.dtype, self.ndim = tuple(source.shape), np.dtype(source.dtype), len(source.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        """Read the pixels at ``key``; raise :class:`SmlmdnError` when the file cannot be read."""
        try:
            return np.asarray(_open_source(self.kind, self.path, self.series, self.stamp, self.layout)[key])
        except SmlmdnError:
            raise
        except Exception as exc:  # a missing codec, or a file changed or broken after it was opened
            if "imagecodecs" in str(exc):
                raise _tiff_error(Path(self.path), exc) from None
            raise SmlmdnError(
                f"cannot read pixels of {self.path} ({type(exc).__name__}: {exc})",
                "check the file is complete and was not changed while reading",
            ) from None

    def __reduce__(self) -> tuple:
        """Pickle as the path and layout only (the file is reopened where it is unpickled)."""
        return FileArray, (self.kind, self.path, self.series, self.layout)


@functools.lru_cache(maxsize=64)
def _open_source(
    kind: str, path: str, series: int, stamp: tuple[int, int], layout: tuple | None = None
) -> Any:  # stamp keys the cache
    """Return the array behind a :class:`FileArray`, opened once per process (and per file version)."""
    if kind == "npy":
        return _npy_frames(path)
    if kind == "raw":
        assert layout is not None  # a FileArray gives raw and pages sources their layout
        offset, shape, dtype = layout
        return _RawFrames(path, offset, shape, dtype)
    import tifffile
    import zarr

    if kind == "pages":  # the first n pages of a TIFF whose series tifffile could not build
        assert layout is not None
        return _TiffPages(path, layout[0])

    return zarr.open(tifffile.imread(path, aszarr=True, series=series, level=0), mode="r")


class _RawFrames:
    """Pixels stored uncompressed in C order from a byte offset of a file: (T, ...) read with one read per request.

    Read rather than memory-mapped: every mapped page a process touches counts in its resident memory
    until the mapping closes, so a mapped movie's RSS grows with the frames read (the whole movie by the
    end), which HPC schedulers count against a job's memory. A read block is an ordinary array, freed
    after use; the kernel's page cache stays outside the process.
    """

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: str | np.dtype) -> None:
        self.path, self.offset = path, int(offset)
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        lead, rest = (key[0] if key else slice(None)), key[1:]
        frames = range(self.shape[0])[lead]  # an int for an integer index (IndexError when out of range)
        wanted = [frames] if isinstance(frames, int) else list(frames)
        lo, hi = (min(wanted), max(wanted) + 1) if wanted else (0, 0)
        per_frame = math.prod(self.shape[1:])
        with open(self.path, "rb") as f:
            data = np.fromfile(
                f, self.dtype, count=(hi - lo) * per_frame, offset=self.offset + lo * per_frame * self.dtype.itemsize
            )
        if data.size != (hi - lo) * per_frame:
            raise OSError(f"{self.path} ends before frame {hi - 1}")
        data = data.reshape((hi - lo, *self.shape[1:]))
        pick: Any = 0 if isinstance(frames, int) else slice(None)
        if not isinstance(frames, int) and frames.step != 1 and len(wanted) > 1:
            pick = np.asarray(wanted) - lo
        index = (pick, *rest)
        return data[index]


def _npy_frames(path: str) -> Any:
    """Return an ``.npy`` file's array: :class:`_RawFrames` for C order, a read-only memory map otherwise.

    numpy reads the header (any format version): its memory map gives the data's offset, shape and
    dtype, and is dropped unread for a C-order array.
    """
    mapped = np.load(path, mmap_mode="r")
    if not mapped.shape or not mapped.flags.c_contiguous:
        return mapped
    return _RawFrames(path, mapped.offset, mapped.shape, mapped.dtype)


class _TiffPages:
    """The first ``n`` pages of a TIFF as an array (n, Y, X), read page by page with tifffile."""

    def __init__(self, path: str, n: int) -> None:
        import tifffile

        self.tif = tifffile.TiffFile(path)
        page = self.tif.pages.first
        self.shape, self.dtype = (n, *page.shape[-2:]), page.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        frames = range(self.shape[0])[key[0]]
        if isinstance(frames, int):
            return self.tif.pages[frames].asarray()[key[1:]]
        data = (
            np.stack([self.tif.pages[i].asarray() for i in frames])
            if len(frames)
            else np.zeros((0, *self.shape[1:]), self.dtype)
        )
        rest: tuple[Any, ...] = (slice(None), *key[1:])
        return data[rest]


class _TiffLog(logging.Handler):
    """Keeps tifffile's log messages (about broken files) for our error messages.

    Without it they would leak onto stderr.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        del self.messages[:-100]


_TIFF_LOG = _TiffLog()
_tifffile_logger = logging.getLogger("tifffile")
_tifffile_logger.addHandler(_TIFF_LOG)
_tifffile_logger.propagate = False


def _tiff_error(p: Path, exc: BaseException) -> SmlmdnError:
    text = f"{type(exc).__name__}: {exc}"
    if "imagecodecs" in str(exc):
        return SmlmdnError(
            f"cannot decode TIFF {p} ({exc})",
            "install imagecodecs (pip install imagecodecs), or re-save the movie uncompressed",
        )
    return SmlmdnError(f"cannot read TIFF {p} ({text})", "check the file is a complete, uncorrupted TIFF")


def _ome_binary_only(tif: Any, p: Path) -> Path | None:
    """Return the metadata file named by a Micro-Manager/OME ``BinaryOnly`` member, if it exists beside ``p``."""
    desc = tif.pages.first.description if len(tif.pages) else ""
    match = re.search(r"<BinaryOnly[^>]*MetadataFile=\"([^\"]+)\"", desc or "")
    if not match:
        return None
    target = p.parent / match.group(1)
    return target if target.is_file() and target.resolve() != p.resolve() else None


def tiff_members(path: str | Path) -> set[str]:
    """Return the real paths of the files the movie in the TIFF ``path`` reads.

    That is itself, plus the other members of a multi-file OME-TIFF series; an unreadable file gives
    just itself.
    """
    import tifffile

    p = Path(path)
    members = {_input_key(p)}
    if ".ome." not in p.name.lower():  # only OME-XML makes a series span files
        return members
    try:
        with tifffile.TiffFile(p) as tif:
            master = _ome_binary_only(tif, p)
            if master is not None:
                return members | tiff_members(master)
            if tif.is_ome and tif.series:
                series = tif.series[_movie_series(tif, p)[0]]
                for page in series.pages:
                    if page is not None:
                        members.add(_input_key(page.parent.filehandle.path))
    except Exception:  # reported when the file itself is opened
        pass
    return members


def movie_groups(paths: Iterable[str | Path]) -> list[Path]:
    """Return the movies among ``paths`` (natural order).

    A file that belongs to another listed file's multi-file OME-TIFF series is dropped, since
    opening that file reads it already.
    """
    files = natural_sorted(dict.fromkeys(os.fspath(p) for p in paths))
    tiffs = [f for f in files if f.is_file() and f.name.lower().endswith(TIFF_SUFFIXES)]
    members = {f: tiff_members(f) for f in tiffs}
    keep: list[Path] = []
    covered: set[str] = set()
    # Masters first (files whose series spans most files), then the rest in natural order.
    for f in sorted(files, key=lambda f: (-len(members.get(f, ())), natural_key(f))):
        if _input_key(f) in covered:
            continue
        keep.append(f)
        covered |= members.get(f, {_input_key(f)})
    return natural_sorted(keep)


def _movie_series(tif: Any, p: Path) -> tuple[int, list[str]]:
    """Choose which series of a TIFF is the movie, by rule: the largest series.

    The others must be small side images (thumbnails, previews: another frame size and at most 1
    frame), else refuse.
    """
    series = list(tif.series)
    sizes = [s.size for s in series]
    index = int(np.argmax(sizes))
    main = series[index]
    notes = []
    for i, s in enumerate(series):
        if i == index:
            continue
        frames = int(np.prod(s.shape[:-2])) if len(s.shape) > 2 else 1
        if frames > 1 or tuple(s.shape[-2:]) == tuple(main.shape[-2:]):
            raise SmlmdnError(
                f"{p} holds {len(series)} image series (e.g. positions) of shapes {[tuple(x.shape) for x in series]}",
                "export each position/series to its own file (e.g. Fiji: Bio-Formats import, one series at a time)",
            )
        notes.append(f"ignored series {i} of {p.name} (shape {tuple(s.shape)}: a thumbnail or preview)")
    return index, notes


def _frames_promised(tif: Any, series: Any) -> int:
    """Frames the TIFF's metadata promise: tifffile's series shape, ImageJ ``images``, shaped metadata."""
    counts = [int(np.prod([n for ax, n in zip(series.axes, series.shape, strict=False) if ax not in "YXS"]))]
    if tif.is_imagej and tif.imagej_metadata:
        counts.append(int(tif.imagej_metadata.get("images", 0) or 0))
    if tif.is_shaped and tif.shaped_metadata:
        shape = tif.shaped_metadata[0].get("shape", [])
        if len(shape) > 2:
            counts.append(int(np.prod(shape[:-2])))
    return max(counts)


def _tiff_complete(tif: Any, series: Any, promised: int, log: list[str]) -> tuple[int, int, bool, tuple | None]:
    """(complete frames, promised frames, cut short, raw layout or None) of a TIFF series.

    A frame is complete when its pixel data lie wholly inside its file. Uncompressed data stored as
    one contiguous block (ImageJ stacks, tifffile's own files) are measured against the file size;
    when such a file is cut, its frame index (IFDs, written after the data) may be lost with it: the
    first missing IFD offset then tells how many frames were written, and the complete frames are
    read as raw bytes (``layout`` = (offset, shape, dtype)). Other series are checked page by page.
    """
    page0 = tif.pages.first
    size = tif.filehandle.size
    # the evidence of a cut file: an IFD or tag value that lies beyond the end of the file
    bad_offsets = [int(m) for text in log for m in re.findall(r"invalid page offset (\d+)", text)]
    cut = any(o >= size for o in bad_offsets) or any("invalid value offset" in text for text in log)
    offset = series.dataoffset
    if offset is None and tif.is_imagej and page0.is_contiguous:
        offset = page0.is_contiguous[0]  # ImageJ always writes its stacks contiguously
    if offset is not None and page0.compression == 1 and page0.dtype is not None:
        frame_bytes = int(np.prod(page0.shaped)) * page0.dtype.itemsize
        for bad in bad_offsets:  # tifffile's layout: frames, then their IFDs
            if bad > offset and (bad - offset) % frame_bytes == 0:
                promised = max(promised, (bad - offset) // frame_bytes)
        complete = int(min(promised, (size - offset) // frame_bytes))
        layout = None
        if (complete < promised or cut) and page0.samplesperpixel == 1:
            layout = (
                "raw",
                int(offset),
                (complete, int(page0.imagelength), int(page0.imagewidth)),
                page0.dtype.newbyteorder(tif.byteorder).str,
            )
        return complete, promised, cut, layout
    pages = list(series.pages)
    by_page = False
    if cut and len(tif.pages) > len(pages):
        # tifffile gave up on the series of a cut file: the pages that are left are the frames
        shape = tuple(page0.shape)
        pages = []
        for page in tif.pages:
            if page is None or tuple(page.shape) != shape:
                break
            pages.append(page)
        by_page = True
    complete = 0
    for page in pages:
        if page is None:
            break
        try:
            end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False)), default=0)
            limit = page.parent.filehandle.size
        except Exception:  # a page tifffile could not parse
            break
        if end > limit:
            break
        complete += 1
    return complete, promised, cut, ("pages", complete) if by_page else None


def _mapped_layout(tif: Any, series: Any) -> tuple | None:
    """``(byte offset, shape, dtype string)`` to memory-map a TIFF series, or None where its pixels need decoding.

    A series can be mapped when tifffile finds its pixels stored uncompressed, in final form and
    contiguously in one file (``series.dataoffset``; ImageJ stacks, tifffile's own files, many
    microscope files), one sample per pixel of a whole byte width, and wholly inside the file.
    """
    page0 = tif.pages.first
    offset = series.dataoffset
    if (
        offset is None
        or page0.compression != 1
        or page0.samplesperpixel != 1
        or page0.bitspersample not in (8, 16, 32, 64)
    ):
        return None
    shape = tuple(int(n) for n in series.shape)
    if offset + int(np.prod(shape)) * series.dtype.itemsize > tif.filehandle.size:
        return None
    return int(offset), shape, series.dtype.newbyteorder(tif.byteorder).str


def _open_tiff(p: Path, block_frames: int | None = None) -> MovieSource:
    import tifffile

    start = len(_TIFF_LOG.messages)
    try:
        with tifffile.TiffFile(p) as tif:
            master = _ome_binary_only(tif, p)
            if master is not None:
                src = _open_tiff(master, block_frames)
                src.notes.insert(
                    0, f"{p.name} holds only pixels of the multi-file OME-TIFF {master.name}: read from {master.name}"
                )
                return src
            if not tif.series:
                raise SmlmdnError(
                    f"cannot read TIFF {p}: it holds no image series", "check the file is a complete, uncorrupted TIFF"
                )
            index, notes = _movie_series(tif, p)
            series = tif.series[index]
            axes = series.axes
            # only OME (incl. Micro-Manager) series span files; listing them reads every page header
            spans_files = tif.is_ome or getattr(tif, "is_mmstack", False)
            files = (
                list(dict.fromkeys(page.parent.filehandle.path for page in series.pages if page is not None))
                if spans_files
                else []
            )
            complete, promised, cut, raw_layout = _tiff_complete(
                tif, series, _frames_promised(tif, series), _TIFF_LOG.messages[start:]
            )
            kind = "ImageJ TIFF" if tif.is_imagej else "OME-TIFF" if tif.is_ome else "TIFF"
            mapped = _mapped_layout(tif, series) if raw_layout is None and len(files) <= 1 else None
            tif_shape = tif.pages.first.shape
        if raw_layout is not None:
            if complete == 0:
                yx = tuple(tif_shape[-2:])
                return MovieSource(da.zeros((0, *yx), np.uint16), str(p), kind, [str(p)], promised, notes, cut=True)
            source = FileArray(raw_layout[0], str(p.resolve()), layout=raw_layout[1:])
            axes = "TYX"
        elif mapped is not None:  # read as the bytes they are: ~60x faster than decoding page by page
            source = FileArray("raw", str(p.resolve()), layout=mapped)
        else:
            source = FileArray("tiff", str(p.resolve()), index)
        if complete > 0:
            source[(0,) * (source.ndim - 2)]  # decode one frame now: a missing codec fails here, not in a worker
    except SmlmdnError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise _tiff_error(p, exc) from exc
    # A time series is read a whole block per task (not a page per task: thousands of tiny tasks
    # cost more than the reading on a distributed scheduler); other stacks page by page.
    if source.ndim == 3:
        lead: tuple[int, ...] = (block_frames or frames_per_block(source.shape[1:], source.dtype.itemsize),)
    else:
        lead = (1,) * (source.ndim - 2)
    arr = da.from_array(source, chunks=lead + source.shape[-2:], asarray=False)
    arr = _squeeze_axes(arr, axes, p)
    if arr.ndim == 3 and complete < arr.shape[0]:
        arr = arr[:complete]
    layout = "multi-file OME-TIFF" if len(files) > 1 else kind
    return MovieSource(arr, str(p), layout, files or [str(p)], promised, notes, cut=cut)


def _open_tiff_folder(folder: Path, files: list[Path], block_frames: int | None) -> MovieSource:
    """Open a folder of TIFFs as one movie.

    The members of a multi-file OME-TIFF are read once through their master file; otherwise the
    files are concatenated along T in natural name order.
    """
    movies = movie_groups(files)
    sources = [_open_tiff(f, block_frames) for f in movies]
    multi = [s for s in sources if s.layout == "multi-file OME-TIFF"]
    if multi and len(sources) > 1:
        raise SmlmdnError(
            f"folder {folder} holds {len(sources)} acquisitions ({', '.join(f.name for f in movies[:4])}); "
            "at least one of them is a multi-file OME-TIFF, so they are not parts of one movie",
            "pass one file (its other files are found from it), or the files as a batch (a quoted glob)",
        )
    if len(sources) == 1:
        src = sources[0]
        src.notes += (
            [f"{folder.name}: {len(files) - 1} more file(s) are parts of {movies[0].name}"] if len(files) > 1 else []
        )
        return src
    for s, f in zip(sources, movies, strict=True):
        if s.truncated:
            raise SmlmdnError(
                f"movie file {f} is truncated: frames 0-{s.frames_complete - 1} of {s.frames_promised} are complete",
                "recover the file, or move it out of the folder",
            )
    parts = [_as_tyx(s.array, f) for s, f in zip(sources, movies, strict=True)]
    shapes = {a.shape[1:] for a in parts}
    if len(shapes) > 1:
        raise SmlmdnError(
            f"TIFF files have different frame sizes {sorted(shapes)}", "put only one acquisition in the folder"
        )
    dtypes = {a.dtype for a in parts}
    if len(dtypes) > 1:
        raise SmlmdnError(
            f"TIFF files have different dtypes {sorted(map(str, dtypes))}", "put only one acquisition in the folder"
        )
    notes = [n for s in sources for n in s.notes]
    return MovieSource(
        da.concatenate(parts, axis=0),
        str(folder),
        f"folder of {len(parts)} TIFF files (natural name order)",
        [str(f) for f in movies],
        None,
        notes,
    )


#: Picasso movie YAML keys -> smlmdn camera keys (values taken when present and numeric).
PICASSO_CAMERA_KEYS = {
    "Baseline": "offset",
    "Sensitivity": "e_per_adu",
    "Gain": "em_gain",
    "EM Real Gain": "em_gain",
    "Qe": "qe",
    "Quantum Efficiency": "qe",
    "Pixelsize": "pixel_size",
    "Pixel Size": "pixel_size",
}


def _open_picasso_raw(p: Path, block_frames: int | None) -> MovieSource:
    """Picasso's ``.raw`` movie: headerless frames described by ``NAME.yaml`` beside it."""
    import yaml

    info_path = p.with_suffix(".yaml")
    if not info_path.is_file():
        raise SmlmdnError(
            f"Picasso movie {p} has no {info_path.name} beside it", "put the .yaml Picasso wrote next to the .raw file"
        )
    try:
        docs = [d for d in yaml.safe_load_all(info_path.read_text()) if isinstance(d, dict)]
        info = {k: v for d in docs for k, v in d.items()}
        frames, height, width = (int(info[k]) for k in ("Frames", "Height", "Width"))
        dtype = np.dtype(str(info.get("Data Type", "uint16")))
        order = str(info.get("Byte Order", "<"))
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise SmlmdnError(
            f"cannot read Picasso movie info {info_path} ({type(exc).__name__}: {exc})",
            "it needs Frames, Height, Width (and Data Type, Byte Order) as Picasso writes them",
        ) from exc
    if order not in ("<", ">", "="):
        raise SmlmdnError(f"{info_path} has Byte Order {order!r}", "use '<' (little-endian) or '>'")
    dtype = dtype.newbyteorder(cast(Literal["<", ">", "="], order))  # checked just above
    frame_bytes = height * width * dtype.itemsize
    complete = min(frames, p.stat().st_size // frame_bytes) if frame_bytes else 0
    camera = {}
    for key, name in PICASSO_CAMERA_KEYS.items():
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            camera[name] = float(value)
    if camera.get("em_gain", 1.0) < 1:
        camera.pop("em_gain")
    if complete == 0:
        return MovieSource(da.zeros((0, height, width), dtype), str(p), "Picasso raw", [str(p)], frames, [], camera)
    source = FileArray("raw", str(p.resolve()), layout=(0, (complete, height, width), dtype.str))
    lead = block_frames or frames_per_block((height, width), dtype.itemsize)
    arr = da.from_array(source, chunks=(lead, height, width), asarray=False)
    return MovieSource(arr, str(p), "Picasso raw", [str(p), str(info_path)], frames, [], camera)


def movie_camera(path: str | Path) -> dict[str, float]:
    """Return the camera numbers recorded with a movie, as smlmdn camera keys.

    Picasso ``.yaml``: Baseline, Sensitivity, Gain, Qe, Pixelsize; {} when the movie records none or
    cannot be read.
    """
    p = Path(path)
    if p.suffix.lower() != ".raw" or not p.with_suffix(".yaml").is_file():
        return {}
    try:
        return _open_picasso_raw(p, None).camera
    except SmlmdnError:
        return {}


def _open_zarr(p: Path) -> tuple[da.Array, list[str]]:
    """Open a Zarr array, or an OME-Zarr image (read by ome-zarr-py, level 0), lazily; plus notes on what was taken."""
    import zarr

    from . import omezarr

    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:
        raise SmlmdnError(f"cannot open Zarr store {p} ({exc})", "check the store is complete") from exc
    if isinstance(node, zarr.Group):
        node, image_path = omezarr.find_image(node, p)
        if omezarr.is_image(node):
            arr, axes, notes = omezarr.open_image(image_path)
            return (_squeeze_axes(arr, axes, p) if len(axes) == arr.ndim else arr), notes
        arrays = list(node.array_keys())
        if len(arrays) != 1:
            raise SmlmdnError(
                f"Zarr group {p} holds {len(arrays)} arrays {arrays[:5]} and no OME-Zarr metadata",
                "point to one array inside it, e.g. PATH/NAME",
            )
        return da.from_zarr(node[arrays[0]]), [f"Zarr group {p}: its one array '{arrays[0]}'"]
    return da.from_zarr(node), []


def _squeeze_axes(arr: da.Array, axes: str | None, p: Path) -> da.Array:
    """Drop singleton axes; the one remaining non-YX axis (T, Z, C, I, Q...) is taken as time."""
    if axes is None or len(axes) != arr.ndim:
        return arr
    spatial = [n for ax, n in zip(axes, arr.shape, strict=True) if ax in "YX"]
    if "S" in axes and min(spatial, default=0) < MIN_FRAME_PX:
        # tifffile takes a last axis of 3 or 4 for colour samples: tiny frames, whichever way they are read
        raise SmlmdnError(
            f"the frames of {p} are too small (shape {tuple(arr.shape)}, axes {axes}: frames of at most "
            f"{max(spatial)} x {min(spatial)} px)",
            f"smlmdn needs frames of at least {MIN_FRAME_PX} x {MIN_FRAME_PX} px; check the file holds a movie",
        )
    keep = [i for i, (ax, n) in enumerate(zip(axes, arr.shape, strict=True)) if n > 1 or ax in "YX"]
    extra = [axes[i] for i in keep if axes[i] not in "YX"]
    if len(extra) > 1 or any(ax in "S" for ax in extra):
        named = ", ".join(f"{axes[i]}={arr.shape[i]}" for i in keep if axes[i] not in "YX")
        raise SmlmdnError(
            f"{p} has extra axes ({named}); smlmdn needs one time axis (T, Y, X)",
            "split channels/z-planes/positions into separate files (e.g. in Fiji: Image > Stacks > Tools)",
        )
    index = tuple(slice(None) if i in keep else 0 for i in range(arr.ndim))
    return arr[index]


def _as_tyx(arr: da.Array, p: Path) -> da.Array:
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        shape = tuple(arr.shape)
        squeezed = tuple(n for n in shape if n > 1)
        if arr.ndim > 3 and len(squeezed) <= 3:
            arr = arr.reshape((-1, *shape[-2:]))
        else:
            raise SmlmdnError(
                f"{p} has {arr.ndim} dimensions {shape}; smlmdn needs (T, Y, X)",
                "save the movie as a single-channel time series",
            )
    if arr.dtype.kind not in "uif" or arr.dtype.itemsize > 8:
        raise SmlmdnError(
            f"{p} has dtype {arr.dtype}; smlmdn needs integer or float pixels", "save the movie as uint16 (camera ADU)"
        )
    return arr


# -------------------------------------------------------------------------------------------- write


def provenance(**extra: Any) -> dict[str, Any]:
    """Attributes every output carries: smlmdn version and the command line, plus ``extra``."""
    return {"smlmdn_version": __version__, "command": " ".join(sys.argv), **extra}


def partial_path(path: str | Path) -> Path:
    """Return the temporary sibling an output is written to before it is renamed into place."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse an existing output unless ``overwrite``; check its folder exists and is writable."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SmlmdnError(f"output {path} already exists", "pass --overwrite to replace it, or choose another name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True)
        except OSError as exc:
            raise SmlmdnError(
                f"cannot create output folder {parent} ({exc.strerror})", "choose a writable location"
            ) from exc
    if not os.access(parent, os.W_OK):
        raise SmlmdnError(f"output folder {parent} is not writable", "choose a folder you can write to")
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def commit_output(tmp: Path, final: Path) -> None:
    """Move a finished temporary output into place (replacing ``final`` if it exists)."""
    if final.exists():
        _remove(final)
    os.replace(tmp, final)


LOCK_SUFFIX = ".lock"


@contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on writing output ``path`` (a ``NAME.partial.lock`` file beside it).

    A second process that writes the same output (a re-submitted array job) gets an SmlmdnError
    naming the process that holds the lock, instead of racing it over the partial output. The lock
    is an OS file lock (``fcntl.flock``), so it goes away with a killed process; the lock file holds
    the holder's pid, host and start time for that message. Without ``fcntl`` (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = Path(path).with_name(Path(path).name + PARTIAL_SUFFIX + LOCK_SUFFIX)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with suppress(OSError):
                holder = os.read(fd, 200).decode(errors="replace").strip()
            os.close(fd)
            raise SmlmdnError(
                f"output {path} is being written by another process ({holder or 'unknown holder'})",
                "wait until it finishes (then this output exists and is skipped), or stop that process and rerun",
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino  # not a lock file its last holder just removed
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(
            fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode()
        )
        yield
    finally:
        with suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)  # closing releases the lock


@contextmanager
def atomic_file(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write a single-file output to; rename it into place on success.

    On any error (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    final = check_output(path, overwrite)
    tmp = partial_path(final)
    with output_lock(final):
        check_output(final, overwrite)  # another process may have finished it meanwhile
        if tmp.exists():
            _remove(tmp)
        try:
            yield tmp
        except BaseException:
            if tmp.exists():
                _remove(tmp)
            raise
        commit_output(tmp, final)


@contextmanager
def staging_folder(path: str | Path) -> Iterator[Path]:
    """Yield ``path`` as a fresh, empty folder that is removed when the ``with`` block ends.

    A leftover from an interrupted run (folder or file) is removed first; the parents are created.
    Move what the folder holds into place (:func:`commit_output`) before the block ends: whatever is
    still in it then, after success or any error (including KeyboardInterrupt), is deleted.
    """
    folder = Path(path)
    if folder.exists() or folder.is_symlink():
        _remove(folder)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder (``NAME.partial``) to write a folder output to; rename it to ``path`` on success.

    On success an existing ``path`` is replaced (the caller decides beforehand whether it may be);
    on any error the temporary folder is removed and ``path`` is untouched.
    """
    final = Path(path)
    with staging_folder(partial_path(final)) as tmp:
        yield tmp
        commit_output(tmp, final)


def write_movie(
    array: da.Array,
    path: str | Path,
    *,
    overwrite: bool = False,
    attrs: dict[str, Any] | None = None,
    pixel_size: float | None = None,
    progress: bool = True,
    description: str = "writing",
    resume: bool = True,
    pyramid: bool | None = None,
) -> Path:
    """Compute ``array`` (T, Y, X) block by block into a Zarr v3 store or a (Big)TIFF, atomically.

    The format follows the suffix: ``.zarr`` (Zarr v3), ``.ome.zarr`` (Zarr v3 with OME-Zarr 0.5
    metadata written by ome-zarr-py, ``pixel_size`` nm as the spatial scale; ``pyramid`` None adds
    2x-binned resolution levels for frames of >= 1024 px, True always, False never: see
    :mod:`smlmdn.omezarr`), ``.ome.tif`` (OME-TIFF, PhysicalSizeX/Y in nm) or ``.tif/.tiff`` (an ImageJ
    hyperstack with the pixel size in Fiji's convention; see :func:`tiff_options`).
    ``attrs`` (e.g. units, camera) are stored with the provenance. Zarr outputs record each finished
    block, so an interrupted write resumes where it stopped when called again with ``resume``.
    Memory use is a few blocks at a time. Returns the final path.
    """
    return write_movies(
        {path: array},
        overwrite=overwrite,
        attrs={path: attrs or {}},
        pixel_size=pixel_size,
        progress=progress,
        description=description,
        resume=resume,
        pyramid=pyramid,
    )[0]


def write_movies(
    arrays: dict[str | Path, da.Array],
    *,
    overwrite: bool = False,
    attrs: dict[str | Path, dict[str, Any]] | None = None,
    pixel_size: float | None = None,
    progress: bool = True,
    description: str = "writing",
    resume: bool = True,
    pyramid: bool | None = None,
) -> list[Path]:
    """Write several lazy (T, Y, X) movies of the same length together, one frame block at a time.

    Like :func:`write_movie` for each ``path: array`` (``attrs[path]`` per output), but the blocks of
    all arrays are computed in one dask call, so work they share (e.g. one network pass for several
    posterior estimates) runs once. With only Zarr outputs, blocks run in parallel on the active dask
    scheduler and an interrupted write resumes; with a TIFF among them, blocks run in order.
    """
    finals = [check_output(p, overwrite) for p in arrays]
    if len(set(finals)) != len(finals):
        raise SmlmdnError("the same output is given twice", "give each output once")
    with ExitStack() as locks:
        for final in finals:
            locks.enter_context(output_lock(final))
        for final in finals:  # another process may have finished it while we waited for the lock
            check_output(final, overwrite)
        return _write_movies_locked(arrays, finals, attrs, pixel_size, progress, description, resume, pyramid)


def _write_movies_locked(arrays, finals, attrs, pixel_size, progress, description, resume, pyramid=None) -> list[Path]:
    """Run the body of :func:`write_movies`, while holding the outputs' locks."""
    arrs = list(arrays.values())
    for final, arr in zip(finals, arrs, strict=True):
        check_tyx(arr.shape, f"array written to {final.name}", "report this as a bug")
        if not final.name.lower().endswith((".zarr", *TIFF_SUFFIXES)):
            raise SmlmdnError(f"unknown output format for {final}", "end the output name in .zarr, .ome.zarr or .tif")
    if len({a.shape[0] for a in arrs}) > 1:
        raise SmlmdnError("movies written together must have the same number of frames", "write them separately")
    chunks_t = arrs[0].chunks[0]
    arrs = [a if a.dtype != np.float64 else a.astype(np.float32) for a in arrs]
    arrs = [in_frame_blocks(a, chunks_t) for a in arrs]
    metas = [provenance(**((attrs or {}).get(p) or {})) for p in arrays]
    t = arrs[0].shape[0]
    bounds = frame_blocks(chunks_t)
    zarrs = [k for k, f in enumerate(finals) if f.name.lower().endswith(".zarr")]
    tiffs = [k for k, f in enumerate(finals) if k not in zarrs]
    tmps = [partial_path(f) for f in finals]
    for k in tiffs:
        if tmps[k].exists():
            _remove(tmps[k])
    from .omezarr import pyramid_levels

    # resolution levels per Zarr output: OME-Zarr may get a pyramid, plain Zarr holds level 0 only
    levels = {
        k: pyramid_levels(arrs[k].shape[1:], pyramid) if finals[k].name.lower().endswith(".ome.zarr") else 1
        for k in zarrs
    }
    done = {}
    for k in zarrs:
        done[k] = _open_partial_zarr(tmps[k], arrs[k], metas[k], resume and not tiffs, levels[k])
    todo = [b for b in bounds if any(not (done[k] / str(b[0])).exists() for k in zarrs)] if not tiffs else bounds
    try:
        with track(
            total=t, description=description, enabled=progress, completed=t - sum(b1 - b0 for _, b0, b1 in todo)
        ) as advance:
            if not tiffs:
                # Blocks are computed by the active dask scheduler (threads, processes or a
                # dask.distributed cluster, see smlmdn.cluster); each task stores its blocks itself.
                def task(i: int, b0: int, b1: int) -> Any:
                    return dask.delayed(_store_blocks)(
                        [arrs[k][b0:b1] for k in zarrs],
                        [str(tmps[k]) for k in zarrs],
                        b0,
                        [str(done[k] / str(i)) for k in zarrs],
                        [levels[k] for k in zarrs],
                    )

                for (_, b0, b1), _ in compute_blocks(task, todo):
                    advance(b1 - b0)
            else:
                _write_in_order(arrs, finals, tmps, zarrs, tiffs, done, metas, pixel_size, todo, advance, levels)
    except BaseException:
        for k in tiffs:
            if tmps[k].exists():
                _remove(tmps[k])
        raise
    for k in zarrs:
        _finish_zarr(tmps[k], finals[k], metas[k], pixel_size, levels[k])
    for k, (tmp, final) in enumerate(zip(tmps, finals, strict=True)):
        if k in zarrs:
            shutil.rmtree(done[k])
        commit_output(tmp, final)
    return finals


def _open_partial_zarr(tmp: Path, array: da.Array, meta: dict[str, Any], resume: bool, levels: int = 1) -> Path:
    """Create or reopen the temporary store of one Zarr output; return its folder of done-block markers.

    It is reopened when ``resume`` and it was started for the same array and attributes, else
    created, with arrays ``0`` .. ``levels-1`` (resolution levels, see :mod:`smlmdn.omezarr`).
    """
    import zarr

    from .omezarr import level_shape

    t, y, x = array.shape
    chunk_t = array.chunks[0][0]
    # The command line may differ on a rerun (e.g. --overwrite added); everything else must match.
    same = {k: v for k, v in meta.items() if k != "command"}
    signature = json.loads(
        json.dumps(
            {"shape": [t, y, x], "dtype": str(array.dtype), "chunk_t": chunk_t, "attrs": same, "levels": levels},
            default=str,
        )
    )
    done_dir = tmp / DONE_DIR
    if tmp.exists() and resume and _partial_matches(tmp, signature):
        return done_dir
    if tmp.exists():
        _remove(tmp)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    for level in range(levels):
        shape = level_shape((t, y, x), level)
        root.create_array(
            str(level),
            shape=shape,
            chunks=(chunk_t, *shape[1:]),
            dtype=array.dtype,
            fill_value=0,
            dimension_names=("t", "y", "x"),
        )
    done_dir.mkdir()
    (done_dir / "signature.json").write_text(json.dumps(signature))
    return done_dir


def _finish_zarr(tmp: Path, final: Path, meta: dict[str, Any], pixel_size: float | None, levels: int = 1) -> None:
    """Write the group attributes: provenance, and for ``.ome.zarr`` the OME-Zarr 0.5 multiscales metadata.

    The metadata is written by ome-zarr-py, see :func:`smlmdn.omezarr.write_metadata`.
    """
    import zarr

    root = zarr.open_group(str(tmp), mode="r+")
    root.attrs.update({"smlmdn": meta})
    if final.name.lower().endswith(".ome.zarr"):
        from .omezarr import write_metadata

        write_metadata(tmp, levels, pixel_size, final.name)
    for level in range(levels):
        root[str(level)].attrs.update({"smlmdn": meta})


def _store_blocks(
    blocks: list[np.ndarray], group_paths: list[str], t0: int, done_markers: list[str], levels: list[int] | None = None
) -> int:
    """Write computed frame blocks into the Zarr groups at ``group_paths`` and mark them done.

    The groups hold array ``0`` and, for a pyramid, the binned levels ``1``, ``2``, ...; runs on
    workers.
    """
    import zarr

    from .omezarr import downsample

    for n, (block, path, marker) in enumerate(zip(blocks, group_paths, done_markers, strict=True)):
        block = np.asarray(block)
        for level in range((levels or [1] * len(blocks))[n]):
            zarr.open_array(f"{path}/{level}", mode="r+")[t0 : t0 + block.shape[0]] = downsample(block, level)
        Path(marker).touch()
    return t0


def _partial_matches(tmp: Path, signature: dict) -> bool:
    sig_file = tmp / DONE_DIR / "signature.json"
    try:
        return json.loads(sig_file.read_text()) == signature
    except (OSError, ValueError):
        return False


IMAGEJ_MAX_BYTES = 2**32 - 2**25  # a classic (non-Big) TIFF must stay below 4 GiB, IFDs included


def tiff_options(
    path: Path, shape: tuple[int, int, int], dtype: np.dtype, meta: dict[str, Any], pixel_size: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TiffWriter options, write options) for a (T, Y, X) movie at ``path``, with the pixel size where readers look.

    ``.ome.tif``: OME-TIFF (BigTIFF) with ``PhysicalSizeX/Y`` in nm and the provenance JSON as the image
    ``Description``; TIFF resolution tags in pixels per cm. Other ``.tif``: an ImageJ hyperstack (axes
    TYX, ``frames`` = T) in Fiji's convention: resolution tags in pixels per µm, unit ``NONE``, and
    ``unit=um`` in the ImageJ description; provenance JSON as ImageJ ``Info``. ImageJ hyperstacks
    are classic TIFF, so a movie of >= 4 GiB (or a dtype ImageJ lacks: not uint8/uint16/float32) is
    written as BigTIFF with the same ImageJ metadata (Fiji opens it through Bio-Formats).
    """
    provenance_json = json.dumps(meta, default=str)
    write: dict[str, Any] = {"shape": shape, "dtype": dtype, "photometric": "minisblack"}
    if path.name.lower().endswith((".ome.tif", ".ome.tiff")):
        md: dict[str, Any] = {"axes": "TYX", "Description": provenance_json}
        if pixel_size:
            md.update(
                PhysicalSizeX=float(pixel_size),
                PhysicalSizeXUnit="nm",
                PhysicalSizeY=float(pixel_size),
                PhysicalSizeYUnit="nm",
            )
            write.update(resolution=(1e7 / pixel_size, 1e7 / pixel_size), resolutionunit="CENTIMETER")
        return {"bigtiff": True, "ome": True}, {**write, "metadata": md}
    md = {"axes": "TYX", "Info": provenance_json}
    if pixel_size:
        md["unit"] = "um"
        write.update(resolution=(1e3 / pixel_size, 1e3 / pixel_size), resolutionunit="NONE")
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    classic = nbytes < IMAGEJ_MAX_BYTES and np.dtype(dtype) in (np.uint8, np.uint16, np.float32)
    return {"bigtiff": not classic, "imagej": True}, {**write, "metadata": md}


def _write_in_order(arrs, finals, tmps, zarrs, tiffs, done, metas, pixel_size, todo, advance, levels) -> None:
    """Blocks in order: needed for TIFF, whose pages are written in order as one series per file.

    Each TIFF is written by one ``tifffile`` call in its own thread, fed frame blocks through a
    queue of one block, so its metadata describes the whole series while memory stays a few blocks.
    """
    import queue
    import threading
    import warnings

    import tifffile

    feeds: dict[int, queue.Queue[Any]] = {k: queue.Queue(maxsize=1) for k in tiffs}
    errors: dict[int, BaseException] = {}
    stop = object()
    stopped: set[int] = set()

    def frames(k: int) -> Iterator[np.ndarray]:
        while (block := feeds[k].get()) is not stop:
            yield from block
        stopped.add(k)

    def writer(k: int) -> None:
        try:
            file_opts, write_opts = tiff_options(finals[k], arrs[k].shape, arrs[k].dtype, metas[k], pixel_size)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
                with tifffile.TiffWriter(tmps[k], **file_opts) as tif:
                    tif.write(frames(k), **write_opts)
        except BaseException as exc:  # handed to the main thread
            errors[k] = exc
            while (
                k not in stopped and feeds[k].get() is not stop
            ):  # drain so the producer never blocks on a dead writer
                pass

    def put(k: int, item: Any) -> None:
        while True:
            if k in errors:
                raise errors[k]
            try:
                feeds[k].put(item, timeout=0.5)
                return
            except queue.Full:
                if not threads[k].is_alive():
                    raise errors.get(k) or RuntimeError(f"the TIFF writer for {finals[k]} stopped") from None

    threads = {k: threading.Thread(target=writer, args=(k,), daemon=True) for k in tiffs}
    for th in threads.values():
        th.start()
    try:
        for i, b0, b1 in todo:
            blocks = dask.compute(*(a[b0:b1] for a in arrs))
            _store_blocks(
                [blocks[k] for k in zarrs],
                [str(tmps[k]) for k in zarrs],
                b0,
                [str(done[k] / str(i)) for k in zarrs],
                [levels[k] for k in zarrs],
            )
            for k in tiffs:
                put(k, np.asarray(blocks[k]))
            advance(b1 - b0)
    finally:
        for k in tiffs:  # a writer still waiting for frames gets the end (after an error: too few, it fails)
            while threads[k].is_alive():
                try:
                    feeds[k].put(stop, timeout=0.5)
                    break
                except queue.Full:
                    pass
        for th in threads.values():
            th.join()
    for k in tiffs:
        if k in errors:
            raise errors[k]


def open_estimate(
    path: str | Path, camera: Any, shape: tuple[int, ...] | None = None, block_frames: int | None = None
) -> tuple[str, da.Array]:
    """(estimate name, lazy photons (T, Y, X) float32) of a denoised movie written by ``smlmdn denoise``.

    The name is the file's ``estimate`` attribute (``mean`` if absent); a file whose ``units``
    attribute is ``adu`` is converted to photons with ``camera`` (a :class:`smlmdn.camera.Camera`).
    With ``shape``, a movie of another shape is refused (it belongs to another raw movie).
    """
    from .camera import to_photons

    movie = open_movie(path, block_frames=block_frames)
    if shape is not None:
        check_same_shape(movie.shape, shape, f"denoised movie {path}", "the raw movie")
    attrs = read_attrs(path)
    name = str(attrs.get("estimate", "mean"))
    if str(attrs.get("units", "photons")).lower() == "adu":
        return name, to_photons(movie, camera)
    return name, movie.astype(np.float32)


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Return the smlmdn provenance attributes of an output written by :func:`write_movie` ({} if none).

    Zarr/OME-Zarr: the group's ``smlmdn`` attribute; ImageJ TIFF: the ImageJ ``Info`` JSON; OME-TIFF:
    the image ``Description`` JSON; older smlmdn TIFFs: ``smlmdn`` in tifffile's shaped description.
    """
    p = Path(path)
    if _is_zarr(p):
        import zarr

        node = zarr.open(str(p), mode="r")
        meta = node.attrs.get("smlmdn", {})
        return dict(meta) if isinstance(meta, Mapping) else {}
    if p.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(p) as tif:
            texts: list[Any] = [(tif.imagej_metadata or {}).get("Info")]  # str, bytes or None: json.loads judges
            if tif.is_ome:
                image = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image", {})
                texts.append((image[0] if isinstance(image, list) else image).get("Description"))
            with suppress(ValueError, TypeError, AttributeError):
                texts.append(json.loads(tif.pages[0].description).get("smlmdn"))
        for text in texts:
            try:
                attrs = json.loads(text)
            except (ValueError, TypeError):
                continue
            if isinstance(attrs, dict):
                return attrs
        return {}
    return {}
