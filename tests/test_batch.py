"""Batches: inputs from paths and globs, outputs named after inputs, failures reported and skipped past."""

from __future__ import annotations

from pathlib import Path

import pytest

from smlmdn.batch import (
    DENOISED_SUFFIX,
    batch_outputs,
    denoised_for,
    expand_inputs,
    is_batch,
    output_for,
    run_batch,
    stem,
)
from smlmdn.errors import SmlmdnError


def test_expand_inputs_and_names(tmp_path: Path) -> None:
    for name in ("b.tif", "a.tif", "c.ome.tif"):
        (tmp_path / name).write_text("")
    found = expand_inputs([str(tmp_path / "*.tif"), tmp_path / "a.tif"])
    assert [p.name for p in found] == ["a.tif", "b.tif", "c.ome.tif"]
    assert stem(Path("x/cell1.ome.tif")) == "cell1" and stem(Path("m.zarr")) == "m"
    assert output_for(Path("d/cell1.ome.tif"), tmp_path, "_denoised.zarr") == tmp_path / "cell1_denoised.zarr"
    with pytest.raises(SmlmdnError, match="no files match"):
        expand_inputs([str(tmp_path / "*.zarr")])


def test_run_batch_goes_on_after_a_failure_and_skips_done(tmp_path: Path) -> None:
    movies = [tmp_path / f"m{i}.tif" for i in range(3)]
    outputs = [tmp_path / f"o{i}.csv" for i in range(3)]
    outputs[2].write_text("done before")

    def work(movie: Path, output: Path) -> str:
        if movie.name == "m0.tif":
            raise SmlmdnError("cannot read TIFF m0.tif", "check the file")
        output.write_text("ok")
        return "1 loc"

    seen = []
    items = run_batch(movies, outputs, work, report=seen.append)
    assert [i.status for i in items] == ["failed", "done", "skipped"]
    assert "cannot read TIFF" in items[0].message and items[1].message == "1 loc"
    assert seen == items and outputs[2].read_text() == "done before"
    assert [i.status for i in run_batch(movies, outputs, work, overwrite=True)] == ["failed", "done", "done"]


def test_one_batch_rule_for_every_command(tmp_path: Path) -> None:
    movie, other = Path("a.tif"), Path("b.tif")
    assert not is_batch([movie], [Path("locs.csv")]) and not is_batch([movie], [Path("x.csv"), Path("x.hdf5")])
    assert is_batch([movie, other], [tmp_path]) and is_batch([movie], [tmp_path]) and is_batch([movie], [Path("out")])
    assert batch_outputs([movie, other], Path("out"), [".csv", ".hdf5", ".csv"]) == {
        movie: [Path("out/a.csv"), Path("out/a.hdf5")],
        other: [Path("out/b.csv"), Path("out/b.hdf5")],
    }
    with pytest.raises(SmlmdnError, match="names a file"):
        batch_outputs([movie, other], Path("out.csv"), [".csv"])


def test_a_denoise_batch_output_is_found_by_its_movie(tmp_path: Path) -> None:
    (tmp_path / f"cell1{DENOISED_SUFFIX}.zarr").mkdir()
    (tmp_path / f"cell1{DENOISED_SUFFIX}.tif.partial").write_text("")
    assert denoised_for(Path("raw/cell1.ome.tif"), tmp_path) == tmp_path / "cell1_denoised.zarr"
    with pytest.raises(SmlmdnError, match="no denoised movies named cell2_denoised"):
        denoised_for(Path("cell2.tif"), tmp_path)
