"""Self-supervised Gamma-Poisson blind-spot denoising (``smlmdn fit`` / ``smlmdn denoise``).

Public API::

    model = fit_model(photons, camera, FitConfig(...), progress=True)   # photons: dask (T, Y, X) float32
    model.save("model.pt")
    model = load_model("model.pt", camera=camera)
    estimates = denoise_lazy(photons, "model.pt", estimates=("mean", "std"))   # {name: lazy (T, Y, X) photons}

Why the defaults (width 16, depth 3, 64-px crops, batch 4, context 0, 2000 steps, lr 1e-3 with
warm-up + cosine decay), measured on simulated 64 x 64 x 2000 low-SNR movies on this 2-core CPU:

* depth 3 (receptive field ~75 px) on 64-px crops beat depth 2 on 32-px crops by ~6 dB at the same
  time budget (40.9 vs 34.4 dB); depth 3 on 32-px crops failed on whole frames (its 4 x 4 bottleneck
  only ever saw crop borders), which is also why validation uses crops larger than training crops;
* width 16 runs ~3x more steps than width 32 in the same time, and won at equal time;
* temporal context K=1 did *not* help at equal steps here (600 steps: 39.6 dB vs 41.2 dB for K=0),
  so the default is K=0; ``--context 1`` stays available (see benchmarks/denoise_quality.py);
* 2000 steps take ~265 s single-threaded (~7.6 steps/s): inside the 5-minute target for
  64 x 64 x 2000 frames on 2 cores.
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
