"""Which device a command runs on: the one ``--device auto|cpu|cuda`` rule of every command.

:func:`resolve_device` maps the option to ``"cpu"`` or ``"cuda"``; :func:`cuda_available` answers whether
a CUDA device may be present without importing torch when it can be.

Importing torch costs seconds and hundreds of MB of memory, so code paths that only *might* use a GPU
(``--device auto`` in ``smlmdn localize``: numba on the CPU, torch on a GPU) first ask
:func:`cuda_available`, which imports torch only when a GPU driver is installed on this machine.
"""

from __future__ import annotations

import os
import sys

from .errors import SmlmdnError

#: Device nodes / driver files whose absence on Linux means torch cannot see a GPU: the NVIDIA driver
#: (``/dev/nvidiactl``, ``/proc/driver/nvidia``), AMD ROCm (``/dev/kfd``, torch's ``cuda`` API too) and
#: WSL2's GPU paravirtualisation (``/dev/dxg``).
GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def gpu_driver_present() -> bool:
    """Tell whether this machine may have a GPU driver torch could use.

    False when this machine certainly has no GPU driver torch could use (Linux without
    NVIDIA/ROCm/WSL GPU device nodes, or macOS); True when it has one or when that cannot be told
    without torch.
    """
    if sys.platform == "darwin":
        return False  # torch on macOS has no CUDA
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in GPU_DRIVER_PATHS)
    return True


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, without importing torch on a machine with no GPU driver (then False).

    Torch is imported only when it is already imported or a GPU driver is present; a missing torch
    means no CUDA.
    """
    if "torch" not in sys.modules and not gpu_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


#: The names ``--device`` takes (any case).
DEVICE_NAMES = ("auto", "cpu", "cuda")


def check_device_name(device: str | None) -> str:
    """Return ``device`` (None = ``auto``) lower-cased; raises :class:`SmlmdnError` unless it is one of :data:`DEVICE_NAMES`.

    Only the name: whether a CUDA device exists is :func:`resolve_device`'s question.
    """
    name = (device or "auto").lower()
    if name not in DEVICE_NAMES:
        raise SmlmdnError(f"unknown device {device!r}", "use --device auto, cpu or cuda")
    return name


def resolve_device(device: str | None = "auto") -> str:
    """``auto|cpu|cuda`` (any case; None = auto) -> ``"cpu"`` or ``"cuda"``.

    ``auto`` takes CUDA when torch sees a device, else the CPU. Raises :class:`SmlmdnError` for an
    unknown name, or for ``cuda`` when torch sees no CUDA device.
    """
    name = check_device_name(device)
    if name == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if name == "cuda":
        raise SmlmdnError(
            "--device cuda was asked for but torch sees no CUDA device",
            "use --device cpu, or install a CUDA build of torch (check `python -c 'import torch; print(torch.cuda.is_available())'`)",
        )
    return "cpu"
