"""``python -m smlmdn ...``: the same as the ``smlmdn`` command."""

from .cli import main

if __name__ == "__main__":
    main()
