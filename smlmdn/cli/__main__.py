"""``python -m smlmdn.cli ...``: the same as the ``smlmdn`` command."""

from . import main

if __name__ == "__main__":
    main()
