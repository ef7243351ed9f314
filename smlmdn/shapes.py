"""One shape rule for movies: every movie inside smlmdn is a (T, Y, X) array (frames, rows, columns).

Readers bring files into this shape (:func:`smlmdn.io.open_movie`); functions that take arrays from a
caller check it here, so the error reads the same wherever a wrong array enters.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import SmlmdnError

SINGLE_CHANNEL_FIX = "give a single-channel time series"
SAME_MOVIE_FIX = "denoise this same movie (same frames and size) or pass the matching --denoised file"


def check_tyx(shape: Sequence[int], what: str = "movie", fix: str = SINGLE_CHANNEL_FIX) -> None:
    """Raise :class:`SmlmdnError` unless ``shape`` (an array's ``.shape``) has three axes (T, Y, X).

    ``what`` names the array in the message ("the {what} must be (T, Y, X), got shape ..."); ``fix``
    is the error's suggested fix.
    """
    if len(shape) != 3:
        raise SmlmdnError(f"the {what} must be (T, Y, X), got shape {tuple(shape)}", fix)


def check_same_shape(
    shape: Sequence[int],
    expected: Sequence[int],
    what: str,
    reference: str = "the movie",
    fix: str = SAME_MOVIE_FIX,
) -> None:
    """Raise :class:`SmlmdnError` unless ``shape`` equals ``expected`` (e.g. a denoised movie and its raw movie).

    The message reads "the {what} has shape ... but {reference} has ...".
    """
    if tuple(shape) != tuple(expected):
        raise SmlmdnError(f"the {what} has shape {tuple(shape)} but {reference} has {tuple(expected)}", fix)
