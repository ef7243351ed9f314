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
    never do; xarray (with the parts of pandas it loads) is ~0.45 s of a command's start-up. Likewise
    it imports scipy.sparse (0.09 s) only to accept sparse matrices as chunks, which the commands never
    make. So dask is imported with both hidden, and both stay importable for the code that uses them.
    """
    gc.disable()
    try:
        _import_dask_array_lean()
        from .cli import main
    finally:
        gc.freeze()
        gc.enable()
    main()


#: Modules ``dask.array`` imports only if they are installed, and the commands do not need it to (:func:`run`).
_HIDDEN_FROM_DASK = ("xarray", "scipy.sparse")


def _import_dask_array_lean() -> None:
    """Import ``dask.array`` with xarray and scipy.sparse hidden from it (:func:`run`).

    No effect if dask.array is imported already; a module imported already is not hidden.
    """
    if "dask.array" in sys.modules:
        return
    hidden = [name for name in _HIDDEN_FROM_DASK if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # importing it raises ImportError
    try:
        import dask.array  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]


if __name__ == "__main__":
    run()
