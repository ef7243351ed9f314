"""``python -m smlmdn ...`` and the ``smlmdn`` command (:func:`run`)."""

import gc


def run() -> None:
    """Run the command line: import the CLI with the garbage collector paused, then hand over to it.

    Importing the CLI's libraries (dask, pandas, scipy, numba) creates about a million objects, and
    collecting them while they are imported costs ~0.4 s of every command's start-up (measured:
    ``import smlmdn.cli`` 3.6 s -> 3.2 s on a 2-core VM). The imported objects are then frozen out of
    later collections (:func:`gc.freeze`).
    """
    gc.disable()
    try:
        from .cli import main
    finally:
        gc.freeze()
        gc.enable()
    main()


if __name__ == "__main__":
    run()
