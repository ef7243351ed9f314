"""Localization: detect candidates, fit an integrated Gaussian by Poisson MLE with CRLB, read/write tables.

Public API::

    locs = localize(photons, camera, detect_on=None, fit_on="raw", box=7, psf_sigma_nm=130.0)
    locs = localize_movie(photons, camera, LocalizeSettings(box=7), mode=MODES["hybrid"], detect_on=denoised)
    write_localizations(locs, "locs.csv", camera)      # .csv / .hdf5 (Picasso) / .parquet
    with localize_movie_blocks(photons, camera, LocalizeSettings()) as run:  # a table too long to hold
        write_localization_blocks(run.blocks(), run.attrs, ["locs.hdf5", "locs.csv"], camera)
    locs = read_localizations("locs.hdf5")

Tables have the columns :data:`LOC_COLUMNS` (nm, detected photons, 0-based frames).
"""

from .formats import read_localizations, write_localization_blocks, write_localizations
from .pipeline import LOC_COLUMNS, Localizations, empty_table, localize, localize_movie, localize_movie_blocks
from .settings import MODES, LocalizeMode, LocalizeSettings

__all__ = [
    "LOC_COLUMNS",
    "MODES",
    "Localizations",
    "LocalizeMode",
    "LocalizeSettings",
    "empty_table",
    "localize",
    "localize_movie",
    "localize_movie_blocks",
    "read_localizations",
    "write_localization_blocks",
    "write_localizations",
]
