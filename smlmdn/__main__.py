"""``python -m smlmdn ...`` and the ``smlmdn`` command (:func:`run`)."""

import gc
import sys


def run() -> None:
    """Run the command line: import the CLI with the garbage collector paused, then hand over to it.

    Importing the CLI's libraries (dask, pandas, scipy, numba) creates about a million objects, and
    collecting them while they are imported costs ~0.4 s of every command's start-up (measured:
    ``import smlmdn.cli`` 3.6 s -> 3.2 s on a 2-core VM). The imported objects are then frozen out of
    later collections (:func:`gc.freeze`).

    ``dask.array`` imports xarray whenever it is installed (it comes with the ``bioimageio`` extra),
    only to read the chunks of an ``xarray.DataArray`` given to ``da.from_array``, which the commands
    never do; xarray (with the parts of pandas it loads) is ~0.45 s of a command's start-up. So dask
    is imported with xarray hidden, and xarray stays importable for the commands that use it.
    """
    gc.disable()
    try:
        _import_dask_array_without_xarray()
        from .cli import main
    finally:
        gc.freeze()
        gc.enable()
    main()


def _import_dask_array_without_xarray() -> None:
    """Import ``dask.array`` with ``xarray`` hidden from it (:func:`run`); no effect if either is imported already."""
    if "xarray" in sys.modules or "dask.array" in sys.modules:
        return
    sys.modules["xarray"] = None  # type: ignore[assignment]  # import_module("xarray") raises ImportError
    try:
        import dask.array  # noqa: F401
    finally:
        del sys.modules["xarray"]


if __name__ == "__main__":
    run()
