"""smlmdn: self-supervised Gamma-Poisson denoising and localization for SMLM movies.

Conventions used everywhere: arrays are (T, Y, X), frames 0-based; pixel (0, 0) covers
[0, 1) x [0, 1) in pixel units, so its centre is at 0.5; coordinates in nm are pixel
coordinates times the pixel size. "photons" means detected photons (photoelectrons), the
Poisson-distributed quantity, as in Picasso; QE is used only to report emitted photons.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("smlmdn")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
