"""OME-Zarr images through ome-zarr-py (``ome_zarr``), the OME reference implementation.

smlmdn writes its movies block by block into Zarr arrays itself (memory stays flat in movie
length and an interrupted write resumes, see :mod:`smlmdn.io`); this module only decides the
resolution levels, downsamples a block for them, and has ``ome_zarr`` write and read the NGFF
``multiscales`` metadata, so the metadata is the reference implementation's, not hand-written.

Conventions: axes ``t, y, x``; level ``k`` is level 0 binned ``2**k x 2**k`` (mean over whole
bins, a last odd row/column dropped), scale ``pixel_size_nm * 2**k`` and translation
``pixel_size_nm * (2**k - 1) / 2`` so a binned pixel sits at the centre of the pixels it averages
(the same transforms ``ome_zarr.writer.write_image`` writes). ``ome_zarr`` is imported inside the
functions: importing smlmdn does not import it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SmlmdnError

PYRAMID_MIN_PX = 1024  # a frame this large (either side) gets resolution levels, until both sides are below it
NGFF_WRITE_VERSION = "0.5"  # Zarr v3


def pyramid_levels(frame_shape: tuple[int, int], pyramid: bool | None = None) -> int:
    """Return the number of resolution levels (>= 1) for frames of ``frame_shape`` (Y, X) px.

    ``pyramid`` None (auto): level 0 alone below :data:`PYRAMID_MIN_PX`, else halve until both
    sides are below it (2048 px -> 2048, 1024, 512: 3 levels); True: as auto but at least two levels;
    False: one level.
    """
    if pyramid is False:
        return 1
    y, x = (int(n) for n in frame_shape)
    levels = 1
    while max(y, x) >= PYRAMID_MIN_PX and min(y, x) >= 16:
        y, x, levels = y // 2, x // 2, levels + 1
    if pyramid and levels == 1 and min(frame_shape) >= 16:
        levels = 2
    return levels


def level_shape(shape: tuple[int, int, int], level: int) -> tuple[int, int, int]:
    """(T, Y, X) of resolution ``level`` for a level-0 movie of ``shape``."""
    f = 2**level
    return (int(shape[0]), int(shape[1]) // f, int(shape[2]) // f)


def downsample(block: np.ndarray, level: int) -> np.ndarray:
    """Bin a (T, Y, X) block ``2**level`` x ``2**level`` by the mean, in the block's dtype (integers rounded).

    A last row/column that does not fill a bin is dropped (as :func:`level_shape` does).
    """
    if level == 0:
        return block
    f = 2**level
    t, y, x = block.shape
    y2, x2 = y // f, x // f
    binned = block[:, : y2 * f, : x2 * f].reshape(t, y2, f, x2, f).mean(axis=(2, 4), dtype=np.float64)
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        binned = np.clip(np.rint(binned), info.min, info.max)
    return binned.astype(block.dtype)


def datasets(levels: int, pixel_size_nm: float | None) -> list[dict[str, Any]]:
    """Return the NGFF ``datasets`` list (paths ``0``, ``1``, ...; scale and translation per level, t scale 1)."""
    ps = float(pixel_size_nm or 1.0)
    out = []
    for k in range(levels):
        f = 2.0**k
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [1.0, ps * f, ps * f]}]
        if k:
            shift = ps * (f - 1) / 2
            transforms.append({"type": "translation", "translation": [0.0, shift, shift]})
        out.append({"path": str(k), "coordinateTransformations": transforms})
    return out


def write_metadata(group_path: str | Path, levels: int, pixel_size_nm: float | None, name: str) -> None:
    """Have ``ome_zarr`` write NGFF 0.5 ``multiscales`` metadata into the Zarr v3 group at ``group_path``.

    The arrays ``0`` .. ``levels-1`` must exist already (written by :mod:`smlmdn.io`). Spatial axes
    carry ``unit: nanometer`` when ``pixel_size_nm`` is given (else scale 1 and no unit).
    """
    import warnings

    import zarr
    from ome_zarr.format import FormatV05

    with warnings.catch_warnings():  # ome_zarr.writer builds a deprecated Scaler as a default argument on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    unit = {"unit": "nanometer"} if pixel_size_nm else {}
    axes = [
        {"name": "t", "type": "time"},
        {"name": "y", "type": "space", **unit},
        {"name": "x", "type": "space", **unit},
    ]
    group = zarr.open_group(str(group_path), mode="r+")
    write_multiscales_metadata(group, datasets(levels, pixel_size_nm), fmt=FormatV05(), axes=axes, name=name)


@contextmanager
def _quiet() -> Any:
    """Silence ome_zarr's informational logging (e.g. 'version mismatch' on every NGFF 0.4 image)."""
    log = logging.getLogger("ome_zarr")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def is_image(group: Any) -> bool:
    """Return True when the Zarr group carries NGFF ``multiscales`` metadata (0.4 on Zarr v2 or 0.5 on v3)."""
    attrs = dict(group.attrs)
    return bool(attrs.get("ome", attrs).get("multiscales"))


def find_image(node: Any, p: Path) -> tuple[Any, Path]:
    """Return the OME-Zarr image group inside ``node`` (a Zarr group at ``p``) and its path.

    ``node`` itself when it is an image; else its one child image (a container such as
    bioformats2raw's ``0/``, ``1/``, ... with an ``OME/`` metadata group, or any group holding
    images one level down). Raises SmlmdnError when the container holds several images (naming
    them) or returns (node, p) unchanged when it holds none (a plain Zarr group).
    """
    if is_image(node):
        return node, p
    images = [name for name, child in sorted(node.groups(), key=lambda kv: kv[0]) if is_image(child)]
    if len(images) > 1:
        raise SmlmdnError(
            f"Zarr container {p} holds {len(images)} images ({', '.join(images[:5])})",
            f"point to one of them, e.g. {p / images[0]}",
        )
    if images:
        return node[images[0]], p / images[0]
    return node, p


def open_image(p: Path) -> tuple[Any, str, list[str]]:
    """Open the OME-Zarr image at ``p`` with ``ome_zarr``'s reader: (level-0 dask array, axes, notes).

    ``axes`` is one letter per array axis (e.g. ``TCZYX``); ``notes`` say which image and level were
    taken, the NGFF version and Zarr format, and how many levels exist. Raises SmlmdnError when the
    image holds several multiscale images or ``ome_zarr`` cannot parse it.
    """
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    with _quiet():
        try:
            location = parse_url(str(p), mode="r")
            nodes = [n for n in Reader(location)() if n.first(Multiscales) is not None] if location else []
        except Exception as exc:  # ome_zarr raises ValueError/KeyError/... on bad metadata
            raise SmlmdnError(
                f"cannot read OME-Zarr image {p} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                "check its multiscales metadata (e.g. with ome_zarr info)",
            ) from exc
    if not nodes:
        raise SmlmdnError(
            f"ome_zarr finds no multiscale image in {p}", "point to the image group (the one with multiscales metadata)"
        )
    node = nodes[0]
    attrs = dict(node.zarr.root_attrs)
    n_multiscales = len(attrs.get("multiscales") or [])
    if n_multiscales > 1:
        raise SmlmdnError(
            f"OME-Zarr image {p} holds {n_multiscales} multiscale images",
            "export the one you want to its own OME-Zarr image",
        )
    axes = "".join(str(ax["name"] if isinstance(ax, dict) else ax)[0].upper() for ax in node.metadata.get("axes") or [])
    levels = node.data
    path0 = node.first(Multiscales).datasets[0]
    notes = [
        f"OME-Zarr image {p} (NGFF {location.fmt.version}, Zarr v{location.fmt.zarr_format}): resolution level 0 "
        f"(path '{path0}', shape {tuple(levels[0].shape)}) of {len(levels)} level{'s' * (len(levels) != 1)}"
    ]
    return levels[0], axes, notes
