"""Command-line interface: one module per subcommand, all registered on :data:`app`."""

from . import (
    compare,  # noqa: F401
    demo,  # noqa: F401
    denoise,  # noqa: F401
    fit,  # noqa: F401
    info,  # noqa: F401  (registers the subcommand)
    localize,  # noqa: F401
    simulate,  # noqa: F401
    stubs,  # noqa: F401
)
from .app import app, main

__all__ = ["app", "main"]
