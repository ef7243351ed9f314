"""Streaming movie I/O: open any supported movie lazily as (T, Y, X), write atomically block by block.

Readers never load pixel data: TIFFs go through tifffile's Zarr store interface, Zarr and OME-Zarr
are opened in place, ``.npy`` is memory-mapped. Writers compute a dask array one frame block at a
time into a temporary sibling (``NAME.partial``) and rename it when complete, so an output that
exists under its final name is always whole. Zarr outputs record finished blocks and resume.
"""

from __future__ import annotations

import functools
import glob as globmod
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from . import __version__
from .errors import SmlmdnError
from .parallel import compute_blocks, frame_blocks
from .progress import track

#: Target size of one frame block in bytes (dask chunk and Zarr chunk along T).
BLOCK_BYTES = 32 * 2**20
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
PARTIAL_SUFFIX = ".partial"
DONE_DIR = ".smlmdn_done"


def frames_per_block(frame_shape: tuple[int, ...], itemsize: int, block_bytes: int = BLOCK_BYTES) -> int:
    """How many whole frames fit in ``block_bytes``."""
    return max(1, int(block_bytes // max(1, int(np.prod(frame_shape)) * itemsize)))


# --------------------------------------------------------------------------------------------- read


def open_movie(path: str | Path, block_frames: int | None = None) -> da.Array:
    """Open a movie lazily as a dask array (T, Y, X) chunked by whole-frame blocks.

    Supports TIFF/BigTIFF/OME-TIFF/ImageJ hyperstacks (singleton axes squeezed), a folder or glob
    of TIFF files concatenated along T (sorted by name, as Micro-Manager writes them), Zarr v2/v3
    arrays, OME-Zarr groups (resolution level 0) and ``.npy`` files (memory-mapped).
    ``block_frames`` sets frames per chunk (default: about 32 MB per chunk).
    """
    text = str(path)
    p = Path(text)
    if any(ch in text for ch in "*?[") and not p.exists():
        files = sorted(globmod.glob(text))
        if not files:
            raise SmlmdnError(f"no files match {text}", "check the pattern (quote it so the shell does not expand it)")
        arr = _open_tiff_sequence([Path(f) for f in files], block_frames)
    elif not p.exists():
        raise SmlmdnError(f"movie {p} does not exist", "check the path")
    elif p.is_dir() and not _is_zarr(p):
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in TIFF_SUFFIXES)
        if not files:
            raise SmlmdnError(f"folder {p} holds no TIFF files and is not a Zarr store", "point to a movie file")
        arr = _open_tiff_sequence(files, block_frames)
    elif _is_zarr(p):
        arr = _open_zarr(p)
    elif p.suffix.lower() == ".npy":
        try:
            arr = da.from_array(FileArray("npy", str(p.resolve())), chunks=-1, asarray=False)
        except Exception as exc:  # noqa: BLE001
            raise SmlmdnError(f"{p} is not a readable .npy file ({exc})", "re-save it with numpy.save") from exc
    elif p.suffix.lower() in TIFF_SUFFIXES:
        arr = _open_tiff(p, block_frames)
    else:
        raise SmlmdnError(
            f"unknown movie format {p.suffix or '(no suffix)'} for {p}",
            "use a TIFF, Zarr/OME-Zarr or .npy movie",
        )
    arr = _as_tyx(arr, p)
    if arr.size == 0 or arr.shape[0] == 0:
        raise SmlmdnError(f"movie {p} is empty (shape {arr.shape})", "check that the acquisition saved any frames")
    if block_frames is None:
        block_frames = frames_per_block(arr.shape[1:], arr.dtype.itemsize)
    return arr.rechunk((min(block_frames, arr.shape[0]), arr.shape[1], arr.shape[2]))


def _is_zarr(p: Path) -> bool:
    return p.is_dir() and any((p / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


class FileArray:
    """A picklable stand-in for an array in a file: it carries only the path, and each process opens
    the file itself on first access (cached), so dask graphs can be shipped to dask.distributed
    workers without open file handles or memory-mapped data inside them."""

    def __init__(self, kind: str, path: str, series: int = 0) -> None:
        self.kind, self.path, self.series = kind, path, series
        st = os.stat(path)
        self.stamp = (st.st_mtime_ns, st.st_size)  # a rewritten file is opened afresh, not from the cache
        source = _open_source(kind, path, series, self.stamp)
        self.shape, self.dtype, self.ndim = tuple(source.shape), np.dtype(source.dtype), len(source.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(_open_source(self.kind, self.path, self.series, self.stamp)[key])

    def __reduce__(self) -> tuple:
        return FileArray, (self.kind, self.path, self.series)


@functools.lru_cache(maxsize=64)
def _open_source(kind: str, path: str, series: int, stamp: tuple[int, int]) -> Any:  # noqa: ARG001 - stamp keys the cache
    """The array behind a :class:`FileArray`, opened once per process (and per file version)."""
    if kind == "npy":
        return np.load(path, mmap_mode="r")
    import tifffile
    import zarr

    return zarr.open(tifffile.imread(path, aszarr=True, series=series, level=0), mode="r")


def _open_tiff(p: Path, block_frames: int | None = None) -> da.Array:
    try:
        import tifffile

        with tifffile.TiffFile(p) as tif:
            sizes = [s.size for s in tif.series]
            index = int(np.argmax(sizes))  # the movie, not a thumbnail or label image
            axes = tif.series[index].axes
        source = FileArray("tiff", str(p.resolve()), index)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for broken files
        raise SmlmdnError(
            f"cannot read TIFF {p} ({type(exc).__name__}: {exc})", "check the file is a complete, uncorrupted TIFF"
        ) from exc
    # A time series is read a whole block per task (not a page per task: thousands of tiny tasks
    # cost more than the reading on a distributed scheduler); other stacks page by page.
    if source.ndim == 3:
        lead = (block_frames or frames_per_block(source.shape[1:], source.dtype.itemsize),)
    else:
        lead = (1,) * (source.ndim - 2)
    arr = da.from_array(source, chunks=lead + source.shape[-2:], asarray=False)
    return _squeeze_axes(arr, axes, p)


def _open_tiff_sequence(files: list[Path], block_frames: int | None = None) -> da.Array:
    parts = [_as_tyx(_open_tiff(f, block_frames), f) for f in files]
    shapes = {a.shape[1:] for a in parts}
    if len(shapes) > 1:
        raise SmlmdnError(f"TIFF files have different frame sizes {sorted(shapes)}", "put only one acquisition in the folder")
    dtypes = {a.dtype for a in parts}
    if len(dtypes) > 1:
        raise SmlmdnError(f"TIFF files have different dtypes {sorted(map(str, dtypes))}", "put only one acquisition in the folder")
    return da.concatenate(parts, axis=0)


def _open_zarr(p: Path) -> da.Array:
    import zarr

    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001
        raise SmlmdnError(f"cannot open Zarr store {p} ({exc})", "check the store is complete") from exc
    axes = None
    if isinstance(node, zarr.Group):
        attrs = dict(node.attrs)
        ome = attrs.get("ome", attrs)
        multiscales = ome.get("multiscales")
        if multiscales:
            ms = multiscales[0]
            axes = "".join(ax["name"][0].upper() if isinstance(ax, dict) else str(ax)[0].upper() for ax in ms.get("axes", []))
            node = node[ms["datasets"][0]["path"]]
        else:
            arrays = list(node.array_keys())
            if len(arrays) != 1:
                raise SmlmdnError(
                    f"Zarr group {p} holds {len(arrays)} arrays {arrays[:5]} and no OME-Zarr metadata",
                    "point to one array inside it, e.g. PATH/NAME",
                )
            node = node[arrays[0]]
    arr = da.from_zarr(node)
    return _squeeze_axes(arr, axes, p) if axes and len(axes) == arr.ndim else arr


def _squeeze_axes(arr: da.Array, axes: str | None, p: Path) -> da.Array:
    """Drop singleton axes; the one remaining non-YX axis (T, Z, C, I, Q...) is taken as time."""
    if axes is None or len(axes) != arr.ndim:
        return arr
    keep = [i for i, (ax, n) in enumerate(zip(axes, arr.shape)) if n > 1 or ax in "YX"]
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
            arr = arr.reshape((-1,) + shape[-2:])
        else:
            raise SmlmdnError(f"{p} has {arr.ndim} dimensions {shape}; smlmdn needs (T, Y, X)", "save the movie as a single-channel time series")
    if arr.dtype.kind not in "uif" or arr.dtype.itemsize > 8:
        raise SmlmdnError(f"{p} has dtype {arr.dtype}; smlmdn needs integer or float pixels", "save the movie as uint16 (camera ADU)")
    return arr


# -------------------------------------------------------------------------------------------- write


def provenance(**extra: Any) -> dict[str, Any]:
    """Attributes every output carries: smlmdn version and the command line, plus ``extra``."""
    return {"smlmdn_version": __version__, "command": " ".join(sys.argv), **extra}


def partial_path(path: str | Path) -> Path:
    """The temporary sibling an output is written to before it is renamed into place."""
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
            raise SmlmdnError(f"cannot create output folder {parent} ({exc.strerror})", "choose a writable location") from exc
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


@contextmanager
def atomic_file(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write a single-file output to; rename it into place on success.

    On any error (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    final = check_output(path, overwrite)
    tmp = partial_path(final)
    if tmp.exists():
        _remove(tmp)
    try:
        yield tmp
    except BaseException:
        if tmp.exists():
            _remove(tmp)
        raise
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
) -> Path:
    """Compute ``array`` (T, Y, X) block by block into a Zarr v3 store or a (Big)TIFF, atomically.

    The format follows the suffix: ``.zarr`` (Zarr v3), ``.ome.zarr`` (Zarr v3 with OME-Zarr 0.5
    metadata, ``pixel_size`` nm as the spatial scale) or ``.tif/.tiff`` (BigTIFF, ImageJ-readable).
    ``attrs`` (e.g. units, camera) are stored with the provenance. Zarr outputs record each finished
    block, so an interrupted write resumes where it stopped when called again with ``resume``.
    Memory use is a few blocks at a time. Returns the final path.
    """
    return write_movies({path: array}, overwrite=overwrite, attrs={path: attrs or {}}, pixel_size=pixel_size,
                        progress=progress, description=description, resume=resume)[0]


def write_movies(
    arrays: dict[str | Path, da.Array],
    *,
    overwrite: bool = False,
    attrs: dict[str | Path, dict[str, Any]] | None = None,
    pixel_size: float | None = None,
    progress: bool = True,
    description: str = "writing",
    resume: bool = True,
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
    arrs = list(arrays.values())
    for final, arr in zip(finals, arrs):
        if arr.ndim != 3:
            raise SmlmdnError(f"write_movie needs a (T, Y, X) array, got shape {arr.shape}", "report this as a bug")
        if not final.name.lower().endswith((".zarr",) + TIFF_SUFFIXES):
            raise SmlmdnError(f"unknown output format for {final}", "end the output name in .zarr, .ome.zarr or .tif")
    if len({a.shape[0] for a in arrs}) > 1:
        raise SmlmdnError("movies written together must have the same number of frames", "write them separately")
    chunks_t = arrs[0].chunks[0]
    arrs = [a if a.dtype != np.float64 else a.astype(np.float32) for a in arrs]
    arrs = [a.rechunk((chunks_t, a.shape[1], a.shape[2])) for a in arrs]
    metas = [provenance(**((attrs or {}).get(p) or {})) for p in arrays]
    t = arrs[0].shape[0]
    bounds = frame_blocks(chunks_t)
    zarrs = [k for k, f in enumerate(finals) if f.name.lower().endswith(".zarr")]
    tiffs = [k for k, f in enumerate(finals) if k not in zarrs]
    tmps = [partial_path(f) for f in finals]
    for k in tiffs:
        if tmps[k].exists():
            _remove(tmps[k])
    done = {}
    for k in zarrs:
        done[k] = _open_partial_zarr(tmps[k], arrs[k], metas[k], resume and not tiffs)
    todo = [b for b in bounds if any(not (done[k] / str(b[0])).exists() for k in zarrs)] if not tiffs else bounds
    try:
        with track(total=t, description=description, enabled=progress, completed=t - sum(b1 - b0 for _, b0, b1 in todo)) as advance:
            if not tiffs:
                # Blocks are computed by the active dask scheduler (threads, processes or a
                # dask.distributed cluster, see smlmdn.cluster); each task stores its blocks itself.
                def task(i: int, b0: int, b1: int) -> Any:
                    return dask.delayed(_store_blocks)([a[b0:b1] for a in arrs], [str(tmps[k] / "0") for k in zarrs],
                                                       b0, [str(done[k] / str(i)) for k in zarrs])

                for (_, b0, b1), _ in compute_blocks(task, todo):
                    advance(b1 - b0)
            else:
                _write_in_order(arrs, finals, tmps, zarrs, tiffs, done, metas, pixel_size, todo, advance)
    except BaseException:
        for k in tiffs:
            if tmps[k].exists():
                _remove(tmps[k])
        raise
    for k in zarrs:
        _finish_zarr(tmps[k], finals[k], metas[k], pixel_size)
    for k, (tmp, final) in enumerate(zip(tmps, finals)):
        if k in zarrs:
            shutil.rmtree(done[k])
        commit_output(tmp, final)
    return finals


def _open_partial_zarr(tmp: Path, array: da.Array, meta: dict[str, Any], resume: bool) -> Path:
    """Create (or, when ``resume`` and it was started for the same array and attributes, reopen) the
    temporary store of one Zarr output; returns its folder of done-block markers."""
    import zarr

    t, y, x = array.shape
    chunk_t = array.chunks[0][0]
    # The command line may differ on a rerun (e.g. --overwrite added); everything else must match.
    same = {k: v for k, v in meta.items() if k != "command"}
    signature = json.loads(json.dumps({"shape": [t, y, x], "dtype": str(array.dtype), "chunk_t": chunk_t, "attrs": same}, default=str))
    done_dir = tmp / DONE_DIR
    if tmp.exists() and resume and _partial_matches(tmp, signature):
        return done_dir
    if tmp.exists():
        _remove(tmp)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    root.create_array("0", shape=(t, y, x), chunks=(chunk_t, y, x), dtype=array.dtype, fill_value=0)
    done_dir.mkdir()
    (done_dir / "signature.json").write_text(json.dumps(signature))
    return done_dir


def _finish_zarr(tmp: Path, final: Path, meta: dict[str, Any], pixel_size: float | None) -> None:
    """Write the group attributes (provenance; OME-Zarr 0.5 multiscales for ``.ome.zarr``)."""
    import zarr

    root = zarr.open_group(str(tmp), mode="r+")
    group_attrs: dict[str, Any] = {"smlmdn": meta}
    if final.name.lower().endswith(".ome.zarr"):
        scale = [1.0, float(pixel_size or 1.0), float(pixel_size or 1.0)]
        unit = {"unit": "nanometer"} if pixel_size else {}
        group_attrs["ome"] = {
            "version": "0.5",
            "multiscales": [
                {
                    "axes": [{"name": "t", "type": "time"}, *({"name": n, "type": "space", **unit} for n in ("y", "x"))],
                    "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
                    "name": final.name,
                }
            ],
        }
    root.attrs.update(group_attrs)
    root["0"].attrs.update({"smlmdn": meta, "_ARRAY_DIMENSIONS": ["t", "y", "x"]})


def _store_blocks(blocks: list[np.ndarray], array_paths: list[str], t0: int, done_markers: list[str]) -> int:
    """Write computed frame blocks into the Zarr arrays at ``array_paths`` and mark them done (runs on workers)."""
    import zarr

    for block, path, marker in zip(blocks, array_paths, done_markers):
        zarr.open_array(path, mode="r+")[t0 : t0 + block.shape[0]] = block
        Path(marker).touch()
    return t0


def _partial_matches(tmp: Path, signature: dict) -> bool:
    sig_file = tmp / DONE_DIR / "signature.json"
    try:
        return json.loads(sig_file.read_text()) == signature
    except (OSError, ValueError):
        return False


def _write_in_order(arrs, finals, tmps, zarrs, tiffs, done, metas, pixel_size, todo, advance) -> None:
    """Blocks in order: needed for TIFF, whose frames are appended to one series per file."""
    import tifffile
    import zarr

    resolution = (1e3 / pixel_size, 1e3 / pixel_size) if pixel_size else None  # pixels per micron
    with ExitStack() as stack:
        writers = {k: stack.enter_context(tifffile.TiffWriter(tmps[k], bigtiff=True)) for k in tiffs}
        for i, b0, b1 in todo:
            blocks = dask.compute(*(a[b0:b1] for a in arrs))
            for k in zarrs:
                zarr.open_array(str(tmps[k] / "0"), mode="r+")[b0:b1] = blocks[k]
                (done[k] / str(i)).touch()
            for k in tiffs:
                for j, frame in enumerate(np.asarray(blocks[k])):
                    first = b0 == 0 and j == 0
                    writers[k].write(
                        frame, contiguous=True, photometric="minisblack",
                        metadata={"axes": "TYX", "smlmdn": json.dumps(metas[k])} if first else None,
                        resolution=resolution if first else None,
                        resolutionunit=("MICROMETER" if pixel_size else None) if first else None,
                    )
            advance(b1 - b0)


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
    if shape is not None and tuple(movie.shape) != tuple(shape):
        raise SmlmdnError(
            f"the denoised movie {path} has shape {tuple(movie.shape)} but the raw movie has {tuple(shape)}",
            "denoise this same movie (same frames and size) or pass the matching --denoised file",
        )
    attrs = read_attrs(path)
    name = str(attrs.get("estimate", "mean"))
    if str(attrs.get("units", "photons")).lower() == "adu":
        return name, to_photons(movie, camera)
    return name, movie.astype(np.float32)


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The smlmdn provenance attributes of an output written by :func:`write_movie` ({} if none)."""
    p = Path(path)
    if _is_zarr(p):
        import zarr

        node = zarr.open(str(p), mode="r")
        return dict(node.attrs.get("smlmdn", {}))
    if p.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(p) as tif:
            desc = tif.pages[0].description
        try:
            return json.loads(json.loads(desc).get("smlmdn", "{}"))
        except (ValueError, TypeError, AttributeError):
            return {}
    return {}


