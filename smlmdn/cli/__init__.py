"""Command-line interface: one module per subcommand, all registered on :data:`app`."""

# importing a subcommand's module registers it on the app
from . import (  # noqa: F401
    compare,
    demo,
    denoise,
    export,
    fit,
    info,
    localize,
    simulate,
)
from .app import app, main

__all__ = ["app", "main"]
