"""The model file: weights + architecture + camera + normalisation + provenance, and its checks.

A model file is a ``torch.save`` of a plain dict (tensors, numbers, strings only; loaded with
``weights_only=True``, so opening one never runs code):

``format`` (:data:`FORMAT`), ``format_version`` (:data:`FORMAT_VERSION`), ``smlmdn_version``,
``net`` (:class:`~smlmdn.denoise.network.NetConfig` as a dict), ``state_dict``, ``camera``
(:meth:`Camera.to_dict`), ``transform`` (``shift``, ``factor`` of
:func:`~smlmdn.denoise.likelihood.count_transform`), ``norm`` (``level``, ``scale`` in model counts)
and ``training`` (steps, losses, data hash, timings, command).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..camera import Camera
from ..errors import SmlmdnError
from ..io import atomic_file
from .network import BlindSpotNet, NetConfig

FORMAT = "smlmdn-denoiser"
FORMAT_VERSION = 1


def _major(version: str) -> str:
    return version.split(".")[0]


@dataclass
class DenoiseModel:
    """A trained blind-spot denoiser (see the module docstring for the fields)."""

    net: NetConfig
    state_dict: dict[str, torch.Tensor]
    camera: Camera
    transform: dict[str, float]
    norm: dict[str, float]
    training: dict[str, Any] = field(default_factory=dict)
    smlmdn_version: str = __version__
    path: Path | None = None  # the file it was loaded from / saved to, if any

    def to_dict(self) -> dict[str, Any]:
        """Return the model as the plain dict saved in a model file (tensors on the CPU)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "smlmdn_version": self.smlmdn_version,
            "net": self.net.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "camera": self.camera.to_dict(),
            "transform": dict(self.transform),
            "norm": dict(self.norm),
            "training": self.training,
        }

    def to_bytes(self) -> bytes:
        """Return the model file's bytes (the :meth:`to_dict` dict saved by ``torch.save``)."""
        buf = io.BytesIO()
        torch.save(self.to_dict(), buf)
        return buf.getvalue()

    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the model atomically (temp file + rename); returns the path."""
        path = Path(path)
        with atomic_file(path, overwrite=overwrite) as tmp:
            torch.save(self.to_dict(), tmp)
        self.path = path
        return path

    def network(self, device: str | torch.device = "cpu") -> BlindSpotNet:
        """Return the network with these weights, in eval mode on ``device``."""
        net = BlindSpotNet(self.net)
        net.load_state_dict(self.state_dict)
        return net.to(device).eval()

    def hash(self) -> str:
        """Short SHA-256 of the weights and settings (for provenance)."""
        h = hashlib.sha256()
        for k in sorted(self.state_dict):
            h.update(k.encode())
            h.update(self.state_dict[k].detach().cpu().numpy().tobytes())
        h.update(repr((self.net.to_dict(), sorted(self.transform.items()), sorted(self.norm.items()))).encode())
        return h.hexdigest()[:16]

    def check_camera(self, camera: Camera) -> None:
        """Refuse a movie camera the model was not trained for (pixel size, EMCCD vs not, read noise)."""
        mine = self.camera
        if abs(camera.pixel_size - mine.pixel_size) > 1e-3 * mine.pixel_size:
            raise SmlmdnError(
                f"the model was trained at pixel size {mine.pixel_size:g} nm but the movie's is {camera.pixel_size:g} nm",
                "train a model on this data with `smlmdn fit`, or pass the right --pixel-size",
            )
        if camera.excess_noise != mine.excess_noise:
            kind = "an EMCCD" if mine.is_emccd else "an sCMOS/CCD"
            raise SmlmdnError(
                f"the model was trained for {kind} camera (em_gain {mine.em_gain:g}) but the movie's em_gain is {camera.em_gain:g}",
                "train a model on this data with `smlmdn fit`, or pass the right --em-gain",
            )
        r0, r1 = mine.read_noise_photons, camera.read_noise_photons
        if abs(r0 - r1) > max(0.5, 0.25 * r0):
            raise SmlmdnError(
                f"the model was trained for read noise {r0:.3g} photons rms but the movie's camera has {r1:.3g}",
                "train a model on this data with `smlmdn fit`, or pass the right --read-noise/--em-gain",
            )


def _from_dict(d: Any, where: str) -> DenoiseModel:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise SmlmdnError(f"{where} is not an smlmdn model file", "give a file written by `smlmdn fit`")
    fv = d.get("format_version")
    if fv != FORMAT_VERSION:
        raise SmlmdnError(
            f"{where} has model format version {fv}; this smlmdn ({__version__}) reads version {FORMAT_VERSION}",
            "retrain with `smlmdn fit`, or use the smlmdn version that wrote it",
        )
    version = str(d.get("smlmdn_version", "?"))
    if _major(version) != _major(__version__):
        raise SmlmdnError(
            f"{where} was written by smlmdn {version}, incompatible with this smlmdn {__version__}",
            "retrain with `smlmdn fit`, or use smlmdn " + _major(version) + ".x",
        )
    try:
        net = dict(d["net"])
        # model files written before context_mode existed used the separate context branch
        net.setdefault("context_mode", "branch")
        model = DenoiseModel(
            net=NetConfig(**net),
            state_dict=d["state_dict"],
            camera=Camera(**d["camera"]),
            transform={k: float(v) for k, v in d["transform"].items()},
            norm={k: float(v) for k, v in d["norm"].items()},
            training=d.get("training", {}),
            smlmdn_version=version,
        )
        BlindSpotNet(model.net).load_state_dict(model.state_dict)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise SmlmdnError(f"{where} is damaged ({type(exc).__name__}: {exc})", "retrain with `smlmdn fit`") from exc
    return model


def load_model(path: str | Path, camera: Camera | None = None) -> DenoiseModel:
    """Read a model file; with ``camera``, refuse a movie camera the model does not fit."""
    path = Path(path)
    if not path.is_file():
        raise SmlmdnError(f"model file {path} does not exist", "train one with `smlmdn fit MOVIE -o model.pt`")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise SmlmdnError(
            f"model file {path} cannot be read ({type(exc).__name__})",
            "give a file written by `smlmdn fit` (retrain if it is damaged)",
        ) from exc
    model = _from_dict(d, f"model file {path}")
    model.path = path
    if camera is not None:
        model.check_camera(camera)
    return model


def model_from_bytes(data: bytes) -> DenoiseModel:
    """Inverse of :meth:`DenoiseModel.to_bytes`."""
    return _from_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), "model bytes")
