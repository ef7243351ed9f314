"""Streaming movie I/O: every supported input opens lazily as (T, Y, X); writers are atomic and resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from smlmdn.errors import SmlmdnError
from smlmdn.io import (
    DONE_DIR,
    atomic_file,
    atomic_folder,
    open_movie,
    partial_path,
    read_attrs,
    staging_folder,
    write_movie,
    write_movies,
)


def _check(arr: da.Array, expected: np.ndarray) -> None:
    assert isinstance(arr, da.Array)
    assert arr.shape == expected.shape
    assert all(c == arr.shape[1] for c in arr.chunks[1]) and all(c == arr.shape[2] for c in arr.chunks[2])
    np.testing.assert_array_equal(arr.compute(), expected)


@pytest.mark.parametrize("kind", ["plain", "bigtiff", "ome", "imagej"])
def test_open_tiff_variants(tmp_path: Path, small_movie: np.ndarray, kind: str) -> None:
    path = tmp_path / "m.tif"
    kwargs = {"plain": {}, "bigtiff": {"bigtiff": True}, "ome": {"ome": True}, "imagej": {"imagej": True}}[kind]
    tifffile.imwrite(path, small_movie, **kwargs)
    _check(open_movie(path, block_frames=5), small_movie)
    assert open_movie(path, block_frames=5).chunks[0] == (5, 5, 2)


@pytest.mark.parametrize(
    ("dtype", "kwargs", "mapped"),
    [
        ("<u2", {}, True),
        (">u2", {"byteorder": ">"}, True),
        ("<f4", {"imagej": True}, True),
        ("u1", {"ome": True}, True),
        ("<u2", {"contiguous": False}, False),  # one page per frame, each IFD between the frames: read page by page
        ("<u2", {"compression": "zlib"}, False),  # decoded page by page
        ("<u2", {"tile": (16, 16)}, False),  # tiles: decoded
    ],
)
def test_mapped_and_decoded_tiffs_read_the_same_pixels(
    tmp_path: Path, small_movie: np.ndarray, dtype: str, kwargs: dict, mapped: bool
) -> None:
    """Uncompressed contiguous series are memory-mapped; every layout reads what tifffile decodes."""
    from smlmdn.io import _mapped_layout

    path = tmp_path / "m.tif"
    data = (small_movie * 0.5).astype(np.dtype(dtype).newbyteorder("="))
    if kwargs.get("tile"):
        data = np.pad(data, ((0, 0), (0, 32 - data.shape[1]), (0, 32 - data.shape[2])))
    if kwargs.pop("contiguous", True):
        tifffile.imwrite(path, data, **kwargs)
    else:
        with tifffile.TiffWriter(path) as tw:
            for frame in data:
                tw.write(frame, contiguous=False, metadata=None)
    _check(open_movie(path, block_frames=4), tifffile.imread(path))
    with tifffile.TiffFile(path) as tif:
        assert (_mapped_layout(tif, tif.series[0]) is not None) == mapped


def test_imagej_hyperstack_squeezes_singletons(tmp_path: Path, small_movie: np.ndarray) -> None:
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, small_movie[:, None, None], imagej=True, metadata={"axes": "TZCYX"})
    _check(open_movie(path), small_movie)


def test_hyperstack_with_real_extra_axes_is_refused(tmp_path: Path, small_movie: np.ndarray) -> None:
    path = tmp_path / "h.tif"
    data = small_movie[:6].reshape(3, 2, 16, 20)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(SmlmdnError, match=r"extra axes \(T=3, C=2\)"):
        open_movie(path)


def test_tiff_series_folder_and_glob(tmp_path: Path, small_movie: np.ndarray) -> None:
    folder = tmp_path / "mm"
    folder.mkdir()
    for i, part in enumerate(np.array_split(small_movie, 3)):
        tifffile.imwrite(folder / f"img_{i:03d}.ome.tif", part, ome=True)
    _check(open_movie(folder), small_movie)
    # a pattern is a batch of movies (the same rule as denoise/localize): reading one is refused with the fix
    with pytest.raises(SmlmdnError, match=r"matches 3 movies.*pass the folder"):
        open_movie(str(folder / "img_*.tif"))
    _check(open_movie(str(folder / "img_000.*")), small_movie[:4])


def test_zarr_v2_v3_omezarr_npy(tmp_path: Path, small_movie: np.ndarray) -> None:
    for fmt in (2, 3):
        z = zarr.create_array(
            str(tmp_path / f"v{fmt}.zarr"),
            shape=small_movie.shape,
            dtype=small_movie.dtype,
            chunks=(3, 16, 20),
            zarr_format=fmt,
        )
        z[:] = small_movie
        _check(open_movie(tmp_path / f"v{fmt}.zarr"), small_movie)
    out = write_movie(
        da.from_array(small_movie, chunks=(4, 16, 20)), tmp_path / "m.ome.zarr", pixel_size=100.0, progress=False
    )
    _check(open_movie(out), small_movie)
    np.save(tmp_path / "m.npy", small_movie)
    _check(open_movie(tmp_path / "m.npy"), small_movie)


def test_bad_inputs(tmp_path: Path, small_movie: np.ndarray) -> None:
    with pytest.raises(SmlmdnError, match="does not exist"):
        open_movie(tmp_path / "missing.tif")
    corrupt = tmp_path / "corrupt.tif"
    tifffile.imwrite(corrupt, small_movie)
    corrupt.write_bytes(corrupt.read_bytes()[:50])
    with pytest.raises(SmlmdnError, match="cannot read TIFF"):
        open_movie(corrupt)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(SmlmdnError, match="cannot read TIFF"):
        open_movie(tmp_path / "junk.tif")
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.uint16))
    with pytest.raises(SmlmdnError, match="empty"):
        open_movie(tmp_path / "empty.npy")
    np.save(tmp_path / "5d.npy", np.zeros((2, 3, 4, 8, 8), np.uint16))
    with pytest.raises(SmlmdnError, match="5 dimensions"):
        open_movie(tmp_path / "5d.npy")
    np.save(tmp_path / "c.npy", np.zeros((2, 8, 8), np.complex64))
    with pytest.raises(SmlmdnError, match="dtype complex64"):
        open_movie(tmp_path / "c.npy")
    (tmp_path / "m.avi").write_bytes(b"x")
    with pytest.raises(SmlmdnError, match="unknown movie format"):
        open_movie(tmp_path / "m.avi")


@pytest.mark.parametrize("name", ["out.zarr", "out.ome.zarr", "out.tif"])
def test_write_round_trip_with_provenance(tmp_path: Path, small_movie: np.ndarray, name: str) -> None:
    arr = da.from_array(small_movie.astype(np.float32) * 0.5, chunks=(5, 16, 20))
    out = write_movie(arr, tmp_path / name, attrs={"units": "photons"}, pixel_size=100.0, progress=False)
    assert out == tmp_path / name and not partial_path(out).exists()
    np.testing.assert_array_equal(open_movie(out).compute(), small_movie.astype(np.float32) * 0.5)
    attrs = read_attrs(out)
    assert attrs["units"] == "photons" and "smlmdn_version" in attrs and "command" in attrs
    if name.endswith(".ome.zarr"):
        meta = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]
        assert meta["version"] == "0.5"
        assert meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 100.0, 100.0]
    with pytest.raises(SmlmdnError, match="already exists"):
        write_movie(arr, out, progress=False)
    write_movie(arr + 1, out, overwrite=True, progress=False)
    np.testing.assert_array_equal(open_movie(out).compute(), small_movie.astype(np.float32) * 0.5 + 1)


class Boom(RuntimeError):
    pass


def _failing_after(data: np.ndarray, fail_block: int, calls: list[int]) -> da.Array:
    """A dask array of ``data`` (blocks of 4 frames) whose block ``fail_block`` raises; records computed blocks."""

    def make(block: np.ndarray, block_info=None) -> np.ndarray:
        i = block_info[0]["chunk-location"][0]
        calls.append(i)
        if i == fail_block:
            raise Boom("interrupted")
        return block

    return da.from_array(data, chunks=(4, 16, 20)).map_blocks(make, dtype=data.dtype)


@pytest.mark.parametrize("name", ["out.zarr", "out.tif"])
def test_interrupted_write_leaves_no_complete_looking_output(
    tmp_path: Path, small_movie: np.ndarray, name: str
) -> None:
    calls: list[int] = []
    with pytest.raises(Boom):
        write_movie(_failing_after(small_movie, 2, calls), tmp_path / name, progress=False)
    assert not (tmp_path / name).exists()


def test_zarr_write_resumes_from_completed_blocks(tmp_path: Path, small_movie: np.ndarray) -> None:
    calls: list[int] = []
    with pytest.raises(Boom):
        write_movie(_failing_after(small_movie, 2, calls), tmp_path / "out.zarr", progress=False)
    assert sorted((partial_path(tmp_path / "out.zarr") / DONE_DIR).glob("[0-9]*")) != []
    calls.clear()
    write_movie(_failing_after(small_movie, 99, calls), tmp_path / "out.zarr", progress=False)
    assert sorted(set(calls)) == [2]  # blocks 0 and 1 were not recomputed
    np.testing.assert_array_equal(open_movie(tmp_path / "out.zarr").compute(), small_movie)
    assert not (tmp_path / "out.zarr" / DONE_DIR).exists()


def test_atomic_file(tmp_path: Path) -> None:
    target = tmp_path / "a.csv"
    with pytest.raises(Boom), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise Boom()
    assert not target.exists() and not tmp.exists()
    with atomic_file(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    with pytest.raises(SmlmdnError, match="already exists"), atomic_file(target):
        pass
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SmlmdnError, match="cannot create output folder"), atomic_file(blocker / "sub" / "x.csv"):
        pass


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "report"
    with pytest.raises(Boom), atomic_folder(target) as tmp:
        (tmp / "half.json").write_text("{}")
        raise Boom()
    assert not target.exists() and not tmp.exists()
    partial_path(target).mkdir()
    (partial_path(target) / "stale").write_text("left by a killed run")
    with atomic_folder(target) as tmp:
        (tmp / "whole.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["whole.json"] and not tmp.exists()


def test_staging_folder_is_fresh_and_removed(tmp_path: Path) -> None:
    staging = tmp_path / "out" / ".partial"
    staging.mkdir(parents=True)
    (staging / "stale").write_text("")
    with staging_folder(staging) as folder:
        assert folder == staging and not any(folder.iterdir())
        (folder / "kept").write_text("moved out")
        os.replace(folder / "kept", tmp_path / "out" / "kept")
        (folder / "left").write_text("")
    assert not staging.exists() and (tmp_path / "out" / "kept").is_file()


STREAM_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import dask
    from smlmdn.camera import Camera, to_photons
    from smlmdn.io import open_movie, write_movie
    dask.config.set(scheduler="synchronous")
    movie = open_movie(sys.argv[1], block_frames=64)
    write_movie(to_photons(movie, Camera()), sys.argv[2], progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)

MAKE_SCRIPT = textwrap.dedent(
    """
    import sys
    import dask.array as da
    from smlmdn.io import write_movie
    n = int(sys.argv[2])
    movie = da.random.default_rng(0).poisson(120, size=(n, 128, 128), chunks=(64, 128, 128)).astype("uint16")
    write_movie(movie, sys.argv[1], progress=False)
    """
)


@pytest.mark.slow
def test_streaming_memory_is_flat_in_movie_length(tmp_path: Path) -> None:
    """Peak RSS of read -> to_photons -> write must not grow with the movie: a 10x longer movie whose
    float32 output (256 MB) is 10x the allowed growth (25 MB) streams in about the same memory."""
    peaks = {}
    for n in (400, 4000):
        src = tmp_path / f"in{n}.tif"
        subprocess.run([sys.executable, "-c", MAKE_SCRIPT, str(src), str(n)], check=True)
        out = subprocess.run(
            [sys.executable, "-c", STREAM_SCRIPT, str(src), str(tmp_path / f"out{n}.zarr")],
            check=True,
            capture_output=True,
            text=True,
        )
        peaks[n] = int(out.stdout.strip().splitlines()[-1])
    print("peak RSS MB by frames:", peaks)
    assert peaks[4000] - peaks[400] < 25, peaks
    assert (tmp_path / "out4000.zarr").exists()
    assert os.path.getsize(tmp_path / "in4000.tif") > 10 * 2**20 * 10


@pytest.mark.parametrize("names", [("a.zarr", "b.ome.zarr"), ("a.zarr", "b.tif")])
def test_write_movies_computes_shared_work_once(
    tmp_path: Path, small_movie: np.ndarray, names: tuple[str, str]
) -> None:
    calls: list[int] = []
    shared = _failing_after(small_movie, 99, calls).astype(np.float32)  # 3 blocks, each computation recorded
    outs = write_movies(
        {tmp_path / names[0]: shared * 2, tmp_path / names[1]: shared + 1},
        progress=False,
        attrs={tmp_path / names[0]: {"estimate": "a"}, tmp_path / names[1]: {"estimate": "b"}},
    )
    assert sorted(calls) == [0, 1, 2]  # one computation per block feeds both outputs
    np.testing.assert_array_equal(open_movie(outs[0]).compute(), small_movie * 2.0)
    np.testing.assert_array_equal(open_movie(outs[1]).compute(), small_movie + 1.0)
    assert read_attrs(outs[1])["estimate"] == "b"


@pytest.mark.parametrize("name", ["den.tif", "den.ome.tif"])
def test_tiff_carries_the_pixel_size_for_fiji_and_ome(tmp_path: Path, small_movie: np.ndarray, name: str) -> None:
    """ImageJ TIFF: resolution tags in pixels per µm + ``unit=um`` (Fiji's convention); OME-TIFF:
    PhysicalSizeX/Y in nm. Both: one (T, Y, X) series and the provenance read back."""
    arr = da.from_array(small_movie.astype(np.float32), chunks=(4, 16, 20))
    out = write_movie(arr, tmp_path / name, attrs={"units": "photons"}, pixel_size=107.0, progress=False)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == small_movie.shape and tif.series[0].axes == "TYX"
        page = tif.pages[0]
        xres, yres = page.tags["XResolution"].value, page.tags["YResolution"].value
        if name == "den.tif":
            assert (
                tif.is_imagej
                and tif.imagej_metadata["unit"] == "um"
                and tif.imagej_metadata["frames"] == len(small_movie)
            )
            assert page.tags["ResolutionUnit"].value == 1  # NONE: ImageJ reads the unit from its description
            assert xres[1] / xres[0] * 1e3 == pytest.approx(107.0, rel=1e-6)  # µm per pixel -> nm
            assert yres[1] / yres[0] * 1e3 == pytest.approx(107.0, rel=1e-6)
        else:
            assert tif.is_ome
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
            assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeXUnit"]) == (107.0, "nm")
            assert (pixels["PhysicalSizeY"], pixels["PhysicalSizeYUnit"]) == (107.0, "nm")
            assert pixels["SizeT"] == len(small_movie)
            assert page.tags["ResolutionUnit"].value == 3 and xres[1] / xres[0] * 1e7 == pytest.approx(107.0, rel=1e-6)
    assert read_attrs(out)["units"] == "photons"
    np.testing.assert_array_equal(open_movie(out).compute(), small_movie.astype(np.float32))


def test_raw_frames_read_what_numpy_indexes(tmp_path: Path) -> None:
    """Uncompressed movies (.raw, .npy, mapped TIFFs) are read per request, not mapped: every index dask may use."""
    from smlmdn.io import _npy_frames, _RawFrames

    a = np.arange(7 * 5 * 4, dtype=">u2").reshape(7, 5, 4)
    path = tmp_path / "m.bin"
    path.write_bytes(b"HEADER" + a.tobytes())
    frames = _RawFrames(str(path), 6, a.shape, ">u2")
    keys = [0, -1, 3, slice(None), slice(2, 5), slice(None, None, 2), slice(None, None, -1), slice(5, 1, -2),
            (slice(1, 3), slice(0, 2), slice(None)), (2, slice(1, 4), 1), slice(3, 3), (slice(None), 0, 0)]  # fmt: skip
    for key in keys:
        np.testing.assert_array_equal(frames[key], a[key])
    with pytest.raises(IndexError):
        frames[7]
    np.save(tmp_path / "c.npy", a.astype("<f4"))
    np.testing.assert_array_equal(_npy_frames(str(tmp_path / "c.npy"))[1:4], a[1:4])
    np.save(tmp_path / "f.npy", np.asfortranarray(a))  # Fortran order: mapped as before
    np.testing.assert_array_equal(np.asarray(_npy_frames(str(tmp_path / "f.npy"))), a)
