"""Self-supervised Gamma-Poisson blind-spot denoising (``smlmdn fit`` / ``smlmdn denoise``).

Public API::

    model = fit_model(photons, camera, FitConfig(...), progress=True)   # photons: dask (T, Y, X) float32
    model.save("model.pt")
    model = load_model("model.pt", camera=camera)
    estimates = denoise_lazy(photons, "model.pt", estimates=("mean", "std"))   # {name: lazy (T, Y, X) photons}
"""

from .apply import denoise_lazy
from .likelihood import ESTIMATES, HEADS
from .model_file import DenoiseModel, load_model
from .network import BlindSpotNet, NetConfig, receptive_halo
from .train import FitConfig, fit_model, resolve_device

__all__ = [
    "BlindSpotNet", "DenoiseModel", "ESTIMATES", "FitConfig", "HEADS", "NetConfig",
    "denoise_lazy", "fit_model", "load_model", "receptive_halo", "resolve_device",
]
