"""Hold one table per frame block of a localization run: in memory up to a budget, then in temporary files.

A movie's candidates wait for the movie-wide false-discovery-rate decision before they can be linked
and written; held in memory they would grow with the movie (10 million candidates on a 50,000-frame
movie). :class:`BlockStore` keeps them in memory while they are small together and moves the rest to
a temporary folder (under ``TMPDIR``), one file per block, removed when the store is closed.
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from types import TracebackType

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
