"""Hold a localization run's per-block tables and per-track arrays in temporary files, not in memory.

A movie's candidates wait for the movie-wide false-discovery-rate decision before they can be linked
and written; held in memory they would grow with the movie (10 million candidates on a 50,000-frame
movie). :class:`BlockStore` keeps them in memory while they are small together and moves the rest to
a temporary folder (under ``TMPDIR``), one file per block, removed when the store is closed.

The linked tracks (millions on a long movie, each looked up by id from any later block) live in
:class:`DiskArrays`: one temporary file per array, mapped into memory only while a block uses it, so
the pages a block touched leave the process when it is done (they stay in the operating system's
page cache, which it can write back and reuse).
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

#: Bytes of block tables held in memory before the store writes further ones to temporary files.
#: Measured (`smlmdn localize`, 6,000 frames of 256 x 256 px, 1.15 million candidates): peak RSS 758 MB
#: with 128 MB, 650 MB with 32 MB, the same time; a 2,000-frame 128 x 128 px movie (13 MB) stays in memory.
MEMORY_BYTES = 32 * 2**20


class BlockStore:
    """A list of tables (one per frame block), each kept in memory or in a temporary file.

    ``memory_bytes`` (default :data:`MEMORY_BYTES`): tables are held in memory while their total stays
    within it; the others are pickled to a temporary folder. Use as a context manager (or call :meth:`close`): the folder is
    removed on exit.
    """

    def __init__(self, memory_bytes: int | None = None) -> None:
        self._memory_bytes = MEMORY_BYTES if memory_bytes is None else int(memory_bytes)
        self._held = 0
        self._items: list[pd.DataFrame | Path | None] = []
        self._rows: list[int] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __len__(self) -> int:
        """Return the number of blocks."""
        return len(self._items)

    @property
    def n_rows(self) -> int:
        """Return the number of rows of all the blocks' tables."""
        return sum(self._rows)

    def append(self, table: pd.DataFrame) -> None:
        """Add ``table`` as the next block."""
        self._items.append(None)
        self._rows.append(0)
        self[len(self._items) - 1] = table

    def __getitem__(self, i: int) -> pd.DataFrame:
        """Return block ``i``'s table (read back from its file if it was moved there)."""
        item = self._items[i]
        if not isinstance(item, Path):
            assert item is not None, "a block is set when it is appended"
            return item
        with open(item, "rb") as f:
            return pickle.load(f)

    def __setitem__(self, i: int, table: pd.DataFrame) -> None:
        """Replace block ``i`` by ``table`` (in memory if it fits the budget, else in a file)."""
        old = self._items[i]
        if isinstance(old, pd.DataFrame):
            self._held -= _nbytes(old)
        elif isinstance(old, Path):
            old.unlink()
        self._rows[i] = len(table)
        size = _nbytes(table)
        if self._held + size <= self._memory_bytes:
            self._items[i] = table
            self._held += size
            return
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="smlmdn-blocks-")
        path = Path(self._dir.name) / f"block{i:08d}.pkl"
        with open(path, "wb") as f:
            pickle.dump(table, f, protocol=pickle.HIGHEST_PROTOCOL)
        self._items[i] = path

    def close(self) -> None:
        """Drop every table and remove the temporary folder."""
        self._items.clear()
        self._held = 0
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> BlockStore:
        """Return the store."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Close the store (:meth:`close`)."""
        self.close()


def _nbytes(table: pd.DataFrame) -> int:
    """Bytes of a table's columns."""
    return int(table.memory_usage(index=False, deep=False).sum())


class DiskArrays:
    """Named arrays of ``length`` rows in temporary files (zeros at first), mapped only inside :meth:`mapped`.

    ``spec``: name -> dtype, or (dtype, trailing shape) (:func:`fields`). The files are made by extending
    them to their size (sparse where the file system allows: a row then uses disk once written);
    :meth:`close` (or leaving a ``with`` block) removes them.
    """

    def __init__(self, length: int, spec: dict[str, Any]) -> None:
        self.length = int(length)
        # a file still mapped (an error's traceback can hold a view) cannot be removed on Windows: not an error then
        self._dir: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
            prefix="smlmdn-arrays-", ignore_cleanup_errors=True
        )
        self._spec = fields(spec)
        for name, (dtype, tail) in self._spec.items():
            with open(self._path(name), "wb") as f:
                f.truncate(max(1, self.length) * int(np.prod(tail, dtype=np.int64)) * dtype.itemsize)

    def _path(self, name: str) -> Path:
        assert self._dir is not None, "the arrays are closed"
        return Path(self._dir.name) / f"{name}.bin"

    @contextmanager
    def mapped(self, *names: str) -> Iterator[dict[str, np.ndarray]]:
        """Map the arrays ``names`` (all without names) for reading and writing; unmapped on leaving.

        Yields name -> array of ``length`` rows (and the field's trailing shape). Keep no view of them past the block (fancy
        indexing copies; slices would hold the mapping and its resident pages).
        """
        arrays = {
            name: np.memmap(self._path(name), dtype=dtype, mode="r+", shape=(max(1, self.length), *tail))[: self.length]
            for name, (dtype, tail) in self._spec.items()
            if not names or name in names
        }
        try:
            yield arrays
        finally:
            arrays.clear()  # the last references: unmapped (dirty pages are written back by the system)

    def nanmedian(self, name: str, chunk: int = 2**20) -> float:
        """Return ``np.nanmedian`` of the 1D float array ``name`` (NaN when every value is NaN), reading it by chunks.

        Exact, infinities included: the value at each middle rank is found by counting passes that narrow
        a range of values holding it (1,024 bins a pass) until the values in the range fit in one chunk,
        which are then selected. Memory: a few chunks.
        """
        n_low = n_finite = n = 0
        lo, hi = np.inf, -np.inf
        for part in self._chunks(name, chunk):
            part = part[~np.isnan(part)]
            finite = part[np.isfinite(part)]
            n, n_finite, n_low = n + len(part), n_finite + len(finite), n_low + int(np.sum(part == -np.inf))
            if len(finite):
                lo, hi = min(lo, finite.min()), max(hi, finite.max())
        if not n:
            return float("nan")

        def at(rank: int) -> float:  # the value of rank ``rank`` among the values that are not NaN
            if rank < n_low:
                return -np.inf
            if rank >= n_low + n_finite:
                return np.inf
            return self._finite_at(name, rank - n_low, lo, hi, chunk)

        middle = ((n - 1) // 2, n // 2)  # one rank for odd n; numpy's median: the mean of the two for even n
        if middle[0] == middle[1]:
            return at(middle[0])
        with np.errstate(invalid="ignore"):  # -inf and inf: NaN, as numpy's
            return float(np.mean([at(middle[0]), at(middle[1])]))

    def _finite_at(self, name: str, rank: int, lo: float, hi: float, chunk: int) -> float:
        """Return the value of ``rank`` among the finite values of ``name``, all within [``lo``, ``hi``]."""
        below = 0  # finite values less than lo
        while True:
            edges = np.linspace(lo, hi, 1025)[1:-1]  # bin b holds edges[b - 1] <= v < edges[b]; the last up to hi
            counts, at_lo = np.zeros(1024, dtype=np.int64), 0
            for part in self._chunks(name, chunk):
                part = part[(part >= lo) & (part <= hi)]
                counts += np.bincount(np.searchsorted(edges, part, side="right"), minlength=1024)
                at_lo += int(np.count_nonzero(part == lo))
            if lo == hi or (rank - below < at_lo):
                return float(lo)
            if counts.sum() <= chunk:
                break
            upto = below + np.cumsum(counts)  # values before the end of each bin
            b = int(np.searchsorted(upto, rank, side="right"))  # the bin holding the rank
            narrowed = (edges[b - 1] if b else lo), (np.nextafter(edges[b], -np.inf) if b < 1023 else hi)
            if narrowed == (lo, hi):  # lo and hi a few floats apart: step past the values equal to lo
                below, narrowed = below + at_lo, (np.nextafter(lo, np.inf), hi)
            else:
                below = int(upto[b - 1]) if b else below
            lo, hi = narrowed
        values = np.concatenate([part[(part >= lo) & (part <= hi)] for part in self._chunks(name, chunk)])
        values.partition(rank - below)
        return float(values[rank - below])

    def _chunks(self, name: str, chunk: int) -> Iterator[np.ndarray]:
        """Yield the 1D array ``name``, ``chunk`` rows at a time (copies)."""
        for c0 in range(0, self.length, chunk):
            with self.mapped(name) as a:
                part = np.array(a[name][c0 : c0 + chunk])
            yield part

    def close(self) -> None:
        """Remove the files."""
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> DiskArrays:
        """Return the arrays."""
        return self

    def __exit__(self, *error: object) -> None:
        """Remove the files (:meth:`close`)."""
        self.close()


def fields(spec: dict[str, Any]) -> dict[str, tuple[np.dtype[Any], tuple[int, ...]]]:
    """Return ``spec`` (name -> dtype, or (dtype, trailing shape)) as name -> (dtype, trailing shape)."""
    return {
        name: (np.dtype(s[0]), tuple(s[1])) if isinstance(s, tuple) else (np.dtype(s), ()) for name, s in spec.items()
    }
