"""Whether a CUDA device may be present, answered without importing torch when it can be.

Importing torch costs seconds and hundreds of MB of memory, so code paths that only *might* use a GPU
(``--device auto`` in ``smlmdn localize``: numba on the CPU, torch on a GPU) first ask
:func:`cuda_available`, which imports torch only when a GPU driver is installed on this machine.
"""

from __future__ import annotations

import os
import sys

#: Device nodes / driver files whose absence on Linux means torch cannot see a GPU: the NVIDIA driver
#: (``/dev/nvidiactl``, ``/proc/driver/nvidia``), AMD ROCm (``/dev/kfd``, torch's ``cuda`` API too) and
#: WSL2's GPU paravirtualisation (``/dev/dxg``).
GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def gpu_driver_present() -> bool:
    """False when this machine certainly has no GPU driver torch could use (Linux without NVIDIA/ROCm/WSL
    GPU device nodes, or macOS); True when it has one or when that cannot be told without torch."""
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
