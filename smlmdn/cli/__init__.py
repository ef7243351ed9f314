"""Command-line interface: one module per subcommand, all registered on :data:`app`."""

from .app import app, main
from . import info  # noqa: F401  (registers the subcommand)
from . import simulate  # noqa: F401
from . import localize  # noqa: F401
from . import fit  # noqa: F401
from . import denoise  # noqa: F401
from . import compare  # noqa: F401
from . import demo  # noqa: F401
from . import stubs  # noqa: F401

__all__ = ["app", "main"]
