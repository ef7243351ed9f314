"""Movie inputs that real acquisitions produce (issue 12): every reader returns exactly the frames the
acquisition holds, in acquisition order, or refuses with one line naming the problem and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile

from smlmdn.batch import check_batch_folder, expand_inputs
from smlmdn.camera import Camera, CameraEstimate, check_camera, movie_to_photons, saturated_boxes
from smlmdn.errors import SmlmdnError
from smlmdn.info import movie_info
from smlmdn.io import inspect_movie, natural_sorted, open_movie, output_lock, parse_frames, write_movie

FRAMES = 40


@pytest.fixture
def movie() -> np.ndarray:
    """(40, 16, 16) uint16: every frame distinct (frame number in pixel (0, 0)), so order and duplicates show."""
    rng = np.random.default_rng(7)
    m = (100 + rng.poisson(20, size=(FRAMES, 16, 16))).astype(np.uint16)
    m[:, 0, 0] = np.arange(FRAMES)
    return m


def _ome_xml(own: str, files: list[tuple[str, str]], per_file: int, total: int) -> str:
    planes = []
    for t in range(total):
        name, file_uuid = files[t // per_file]
        planes.append(
            f'<TiffData FirstT="{t}" FirstZ="0" FirstC="0" IFD="{t % per_file}" PlaneCount="1">'
            f'<UUID FileName="{name}">{file_uuid}</UUID></TiffData>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
        f'UUID="{own}"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="16" '
        f'SizeY="16" SizeC="1" SizeZ="1" SizeT="{total}">' + "".join(planes) + "</Pixels></Image></OME>"
    )


def write_mmstack(folder: Path, movie: np.ndarray, variant: str, position: int = 0) -> list[Path]:
    """A Micro-Manager acquisition split in two OME-TIFFs: ``full`` (OME-XML for all frames in each
    file) or ``binaryonly`` (the XML in the first file, the second pointing to it)."""
    folder.mkdir(exist_ok=True)
    names = [f"run_MMStack_Pos{position}.ome.tif", f"run_MMStack_Pos{position}_1.ome.tif"]
    uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in names]
    half = len(movie) // 2
    for k, (name, own) in enumerate(zip(names, uuids, strict=True)):
        if k == 1 and variant == "binaryonly":
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
                f'UUID="{own}"><BinaryOnly MetadataFile="{names[0]}" UUID="{uuids[0]}"/></OME>'
            )
        else:
            xml = _ome_xml(own, list(zip(names, uuids, strict=True)), half, len(movie))
        with tifffile.TiffWriter(folder / name) as tif:
            for i, frame in enumerate(movie[k * half : (k + 1) * half]):
                tif.write(frame, contiguous=False, description=xml if i == 0 else None, metadata=None)
    return [folder / n for n in names]


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# ------------------------------------------------------------------ 1. multi-file Micro-Manager OME-TIFF


@pytest.mark.parametrize("variant", ["full", "binaryonly"])
def test_multifile_ome_tiff_is_read_once_in_order(tmp_path: Path, movie: np.ndarray, variant: str) -> None:
    files = write_mmstack(tmp_path / "run", movie, variant)
    for target in (tmp_path / "run", files[0], files[1], str(tmp_path / "run" / "*.ome.tif")):
        src = inspect_movie(target)
        assert src.layout == "multi-file OME-TIFF"
        np.testing.assert_array_equal(src.array.compute(), movie)
    # a batch (a pattern, or the shell's expansion of it) holds this acquisition once
    assert expand_inputs([str(tmp_path / "run" / "*.tif")]) == [files[0]]
    assert expand_inputs([str(f) for f in files]) == [files[0]]


def test_multifile_ome_tiff_with_a_missing_member_is_truncated(tmp_path: Path, movie: np.ndarray) -> None:
    files = write_mmstack(tmp_path / "run", movie, "full")
    files[1].unlink()
    with pytest.raises(SmlmdnError, match=r"truncated: frames 0-19 of 40 are complete.*--frames 0:20"):
        open_movie(tmp_path / "run")
    np.testing.assert_array_equal(open_movie(files[0], frames=slice(0, 20)).compute(), movie[:20])


def test_folder_of_two_multifile_acquisitions_is_refused(tmp_path: Path, movie: np.ndarray) -> None:
    pos0 = write_mmstack(tmp_path / "run", movie, "full", position=0)
    pos1 = write_mmstack(tmp_path / "run", movie[::-1].copy(), "binaryonly", position=1)
    with pytest.raises(SmlmdnError, match="holds 2 acquisitions"):
        open_movie(tmp_path / "run")  # two positions are never concatenated in time
    assert expand_inputs([str(tmp_path / "run" / "*.tif")]) == [pos0[0], pos1[0]]
    np.testing.assert_array_equal(open_movie(pos1[1]).compute(), movie[::-1])


def test_omezarr_container_opens_its_one_image_and_refuses_several(tmp_path: Path, movie: np.ndarray) -> None:
    import dask.array as da
    import zarr

    box = tmp_path / "box.zarr"  # a container like bioformats2raw's: images in groups 0, 1, ...
    zarr.open_group(str(box), mode="w", zarr_format=3)
    write_movie(da.from_array(movie), tmp_path / "a.ome.zarr", progress=False, pixel_size=100.0).rename(box / "0")
    np.testing.assert_array_equal(open_movie(box).compute(), movie)
    write_movie(da.from_array(movie[:5]), tmp_path / "b.ome.zarr", progress=False, pixel_size=100.0).rename(box / "1")
    with pytest.raises(SmlmdnError, match="holds 2 images"):
        open_movie(box)
    np.testing.assert_array_equal(open_movie(box / "1").compute(), movie[:5])


# ------------------------------------------------------------------ 2. natural order and the glob rule


def test_unpadded_names_are_read_in_natural_order(tmp_path: Path, movie: np.ndarray) -> None:
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(1, 13):
        tifffile.imwrite(seq / f"frame_{i}.tif", movie[i - 1])
    np.testing.assert_array_equal(open_movie(seq).compute(), movie[:12])
    assert [p.name for p in expand_inputs([str(seq / "*.tif")])][:3] == ["frame_1.tif", "frame_2.tif", "frame_3.tif"]
    assert [p.name for p in natural_sorted(["a10", "a9", "a1"])] == ["a1", "a9", "a10"]


def test_a_batch_refuses_a_file_like_output(tmp_path: Path) -> None:
    with pytest.raises(SmlmdnError, match=r"12 movies are a batch.*names a file.*pass their folder"):
        check_batch_folder(tmp_path / "out.csv", 12)
    check_batch_folder(tmp_path / "locs", 12)  # a folder is fine


# ------------------------------------------------------------------ 3. truncated stacks and --frames


def _truncated(tmp_path: Path, kind: str) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:16, :16]
    spot = 400 * np.exp(-((yy - 8.3) ** 2 + (xx - 7.6) ** 2) / (2 * 1.3**2))  # a molecule to localize
    m = (100 + rng.poisson(20 + spot, size=(100, 16, 16))).astype(np.uint16)
    m[:, 0, 0] = np.arange(100)
    path = tmp_path / f"{kind}.tif"
    if kind == "imagej":
        tifffile.imwrite(path, m[:, None, None], imagej=True, metadata={"axes": "TZCYX"})
    elif kind == "ome":
        tifffile.imwrite(path, m, ome=True)
    elif kind == "plain":
        tifffile.imwrite(path, m, contiguous=False)
    else:
        tifffile.imwrite(path, m, compression="lzw")
    return cut(path, {"imagej": 0.6, "ome": 0.6, "plain": 1 / 3, "lzw": 0.5}[kind]), m


@pytest.mark.parametrize("kind", ["imagej", "ome", "plain", "lzw"])
def test_truncated_stack_is_refused_and_its_complete_part_readable(tmp_path: Path, kind: str) -> None:
    path, m = _truncated(tmp_path, kind)
    with pytest.raises(SmlmdnError, match=r"is truncated: frames 0-(\d+) of 100 are complete") as info:
        open_movie(path)
    complete = int(info.value.problem.split("frames 0-")[1].split(" ")[0]) + 1
    assert f"--frames 0:{complete}" in info.value.fix
    if kind != "lzw":  # uncompressed: every frame said to be complete fits in what is left of the file
        assert complete * 16 * 16 * 2 <= path.stat().st_size < 100 * 16 * 16 * 2
    assert complete >= 10
    np.testing.assert_array_equal(open_movie(path, frames=slice(0, complete)).compute(), m[:complete])
    np.testing.assert_array_equal(open_movie(path, frames=slice(5, complete)).compute(), m[5:complete])


def test_frames_option_parsing_and_range_checks(tmp_path: Path, movie: np.ndarray) -> None:
    assert (
        parse_frames("0:60") == slice(0, 60)
        and parse_frames("10:") == slice(10, None)
        and parse_frames(":5") == slice(0, 5)
    )
    for bad in ("5", "a:b", "5:5", "-1:3", "1:2:3"):
        with pytest.raises(SmlmdnError, match="--frames"):
            parse_frames(bad)
    np.save(tmp_path / "m.npy", movie)
    with pytest.raises(SmlmdnError, match="beyond the end"):
        open_movie(tmp_path / "m.npy", frames=slice(0, 41))


# ------------------------------------------------------------------ 4. compressed TIFFs


def test_lzw_tiff_reads_and_a_missing_codec_fails_at_open(
    tmp_path: Path, movie: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, movie, compression="lzw")
    np.testing.assert_array_equal(open_movie(path).compute(), movie)
    codecs = type(tifffile.TIFF.DECOMPRESSORS)

    def no_codec(self, key):  # what tifffile does without imagecodecs
        if key == 1:
            return lambda data, *a, **k: data
        raise KeyError(f"<COMPRESSION.LZW: {key}> requires the 'imagecodecs' package")

    monkeypatch.setattr(codecs, "__getitem__", no_codec)
    other = tmp_path / "lzw2.tif"  # a new file: not from the open-file cache
    other.write_bytes(path.read_bytes())
    with pytest.raises(SmlmdnError, match="install imagecodecs"):
        open_movie(other)


# ------------------------------------------------------------------ 5. Picasso .raw + .yaml


def test_picasso_raw_movie_with_camera_numbers(tmp_path: Path, movie: np.ndarray) -> None:
    raw = tmp_path / "picasso.raw"
    movie.astype("<u2").tofile(raw)
    (tmp_path / "picasso.yaml").write_text(
        "Byte Order: <\nData Type: uint16\nFrames: 40\nHeight: 16\nWidth: 16\n"
        "Camera: Andor Zyla\nBaseline: 100\nSensitivity: 0.46\nQe: 0.82\nGain: 1\n"
    )
    src = inspect_movie(raw)
    np.testing.assert_array_equal(src.array.compute(), movie)
    assert src.camera == {"offset": 100.0, "e_per_adu": 0.46, "qe": 0.82, "em_gain": 1.0}
    cut(raw, 0.5)
    with pytest.raises(SmlmdnError, match="truncated: frames 0-19 of 40"):
        open_movie(raw)
    (tmp_path / "picasso.yaml").unlink()
    with pytest.raises(SmlmdnError, match=r"no picasso\.yaml beside it"):
        open_movie(raw)


# ------------------------------------------------------------------ 6. saturation


def test_saturation_is_counted_warned_and_flagged(tmp_path: Path, movie: np.ndarray) -> None:
    bright = movie.copy()
    bright[:, 6:9, 6:10] = 65535  # a clipped bead: 12 px in every frame
    info = movie_info(open_movie_from(tmp_path, bright), "m.npy")
    assert info["saturated_pixels"] == 12 * FRAMES and info["saturated_frames"] == FRAMES
    assert any("saturated" in w for w in info["warnings"])
    with pytest.warns(UserWarning, match=r"pixels at the camera's saturation level \(65535 ADU\)"):
        movie_to_photons(open_movie_from(tmp_path, bright), Camera())
    sat = bright >= 65535
    flags = saturated_boxes(sat, np.array([0, 0, 3, 3]), np.array([7, 2, 11, 12]), np.array([7, 2, 12, 12]), 7)
    assert flags.tolist() == [True, False, True, False]  # box rows 8-14 reach the bead's last row (8); rows 9-15 do not


def open_movie_from(tmp_path: Path, data: np.ndarray):
    path = tmp_path / f"m{uuid.uuid4().hex[:6]}.npy"
    np.save(path, data)
    return open_movie(path)


# ------------------------------------------------------------------ 7. diagnoses that say what is wrong


def test_tiny_frames_are_called_too_small(tmp_path: Path) -> None:
    path = tmp_path / "tiny.tif"
    tifffile.imwrite(path, np.zeros((20, 4, 4), np.uint16))
    with pytest.raises(SmlmdnError, match="too small"):
        open_movie(path)


def test_nan_in_an_unsampled_frame_is_found(tmp_path: Path, movie: np.ndarray) -> None:
    data = movie.astype(np.float32)
    data[1, 3, 3] = np.nan  # frame 1 is not among info's 10 sampled frames
    info = movie_info(open_movie_from(tmp_path, data), "m.npy")
    assert info["finite"] is False and info["nonfinite_pixels"] == 1 and info["nonfinite_first_frames"] == [1]
    assert info["camera_estimate"] is None


def test_camera_check_judges_only_given_numbers() -> None:
    estimate = CameraEstimate(offset=100.0, e_per_adu=2.0, slope=0.5, intercept=-40.0, n_bins=10)
    camera = Camera(e_per_adu=0.5, offset=300.0)
    with pytest.warns(UserWarning):
        assert (
            len(check_camera(camera, estimate, keys={"e_per_adu", "offset"})) == 1
        )  # no offset warning on a wrong gain
    with pytest.warns(UserWarning):
        (message,) = check_camera(camera, estimate, keys={"qe"})  # defaults are still checked, and called defaults
    assert message.startswith("the default e_per_adu 0.5 disagrees")
    with pytest.warns(UserWarning):
        (message,) = check_camera(Camera(em_gain=2.0), estimate, keys={"em_gain"})
    assert "given e_per_adu" not in message and "default e_per_adu (with the given em_gain 2)" in message
    with pytest.warns(UserWarning, match="the given offset 300"):
        check_camera(Camera(e_per_adu=2.0, offset=300.0), estimate, keys={"offset"})
    assert check_camera(Camera(e_per_adu=2.0, offset=105.0), estimate, keys=set()) == []


# ------------------------------------------------------------------ 9. two writers, one output


def test_second_writer_is_told_who_holds_the_output(tmp_path: Path, movie: np.ndarray) -> None:
    import dask.array as da

    out = tmp_path / "out.zarr"
    with output_lock(out), pytest.raises(SmlmdnError, match=r"being written by another process \(pid \d+"):
        write_movie(da.from_array(movie), out, progress=False)
    write_movie(da.from_array(movie), out, progress=False)
    assert out.exists() and not list(tmp_path.glob("*.lock"))


# ------------------------------------------------------------------ every command, every bad input: one line


@pytest.mark.slow
def test_commands_on_bad_inputs_print_one_line_and_no_noise(tmp_path: Path, movie: np.ndarray) -> None:
    ij, _ = _truncated(tmp_path, "imagej")
    plain, _ = _truncated(tmp_path, "plain")
    write_mmstack(tmp_path / "run", movie, "binaryonly")
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(1, 13):
        tifffile.imwrite(seq / f"frame_{i}.tif", movie[i - 1])
    tiny = tmp_path / "tiny.tif"
    tifffile.imwrite(tiny, np.zeros((20, 4, 4), np.uint16))
    raw = tmp_path / "picasso.raw"
    movie.astype("<u2").tofile(raw)
    (tmp_path / "picasso.yaml").write_text(
        "Byte Order: <\nData Type: uint16\nFrames: 40\nHeight: 16\nWidth: 16\nSensitivity: 0.46\n"
    )
    runs = [
        (["info", str(ij)], 1, "truncated: frames 0-"),
        (["info", str(plain)], 1, "truncated: frames 0-"),
        (["localize", str(plain), "-o", str(tmp_path / "p.csv")], 1, "--frames 0:"),
        (["fit", str(ij), "-o", str(tmp_path / "m.pt")], 1, "truncated"),
        (["info", str(tiny)], 1, "too small"),
        (["localize", str(seq / "*.tif"), "-o", str(tmp_path / "out.csv")], 1, "names a file"),
        (["info", str(seq / "*.tif")], 1, "matches 12 movies"),
        (["info", "--json", str(tmp_path / "run")], 0, '"multi-file OME-TIFF"'),
        (["localize", str(ij), "--frames", "40:60", "-o", str(tmp_path / "ij.csv"), "-q"], 0, "in 20 frames"),
        (
            [
                "compare",
                str(ij),
                "--frames",
                "0:10",
                "--truth",
                str(tmp_path / "t.csv"),
                "--denoised",
                str(ij),
                "-o",
                str(tmp_path / "r"),
            ],
            1,
            "--frames cannot be combined with --truth",
        ),
        (["info", "--json", str(raw)], 0, '"e_per_adu": 0.46'),
    ]
    script = textwrap.dedent(f"""
        import json
        from typer.testing import CliRunner
        from smlmdn.cli import app
        out = []
        for args, _, _ in {[(a, c, t) for a, c, t in runs]!r}:
            r = CliRunner().invoke(app, args)
            out.append([r.exit_code, r.output])
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (args, code, text), (exit_code, output) in zip(runs, results, strict=True):
        assert exit_code == code, (args, output)
        assert text in output, (args, output)
        assert "Traceback" not in output and "unexpected" not in output, (args, output)
        if code:
            assert output.count("error:") == 1, (args, output)
    for noise in ("Traceback", "Task was destroyed", "tifffile", "invalid page offset"):
        assert noise not in proc.stderr, proc.stderr
    assert not (tmp_path / "out.csv").exists()
    frames = np.loadtxt(tmp_path / "ij.csv", delimiter=",", skiprows=1, usecols=1, ndmin=1)
    assert frames.size >= 10 and frames.min() >= 41 and frames.max() <= 60  # 1-based, numbered over the whole movie
