"""Self-supervised Gamma-Poisson blind-spot denoising (``smlmdn fit`` / ``smlmdn denoise``).

Public API::

    model = fit_model(photons, camera, FitConfig(...), progress=True)   # photons: dask (T, Y, X) float32
    model.save("model.pt")
    model = load_model("model.pt", camera=camera)
    estimates = denoise_lazy(photons, "model.pt", estimates=("mean", "std"))   # {name: lazy (T, Y, X) photons}

Why the defaults (width 16, depth 3, 64-px crops, batch 4, lr 1e-3 with warm-up + cosine decay,
temporal context K=1 through the "stem", 2000 steps unless a time budget is given), measured on
simulated 64 x 64 x 2000 low-SNR movies on this 2-core CPU (benchmarks/RESULTS.md):

* depth 3 (receptive field ~75 px) on 64-px crops beat depth 2 on 32-px crops by ~6 dB at the same
  time budget (40.9 vs 34.4 dB); depth 3 on 32-px crops failed on whole frames (its 4 x 4 bottleneck
  only ever saw crop borders), which is also why validation uses crops larger than training crops;
* width 16 runs ~3x more steps than width 32 in the same time, and won at equal time;
* temporal context: the neighbours as non-blind input channels of the blind U-Net's first layer
  ("stem") beat the older separate CNN joined at the head ("branch") by 5.1 dB at K=1 and 0.3 dB at
  K=2 in 300 s fits (the branch also made 2-3x more ghost signal next to blinks). K=1 stem vs K=0:
  +0.37 dB at 800 equal steps (same wall clock, run side by side), even at ~400 steps, and between
  -0.7 and +0.4 dB in 300 s fits that only reached 200-420 steps on the loaded CPU; K=2 lost at
  this budget (-0.6 to -2.9 dB). So K=1 (the stem costs ~1 % per step), with the caveat that it
  raises the ghost signal next to blinks (see RESULTS.md); ``--context 0`` for single frames;
* ``--time-budget`` alone trains until the budget: the learning-rate schedule follows the elapsed
  fraction of the budget, so a busy CPU gives fewer steps, not a truncated schedule.
"""

from .apply import denoise_lazy, denoise_on_the_fly
from .likelihood import ESTIMATES, HEADS
from .model_file import DenoiseModel, load_model
from .network import BlindSpotNet, NetConfig, receptive_halo
from .train import FitConfig, fit_model, resolve_device

__all__ = [
    "ESTIMATES",
    "HEADS",
    "BlindSpotNet",
    "DenoiseModel",
    "FitConfig",
    "NetConfig",
    "denoise_lazy",
    "denoise_on_the_fly",
    "fit_model",
    "load_model",
    "receptive_halo",
    "resolve_device",
]
