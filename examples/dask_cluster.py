"""smlmdn's Python API on a Dask cluster, notebook-style (run it as a script or cell by cell).

By default it starts a local 2-process dask.distributed cluster and works on a small simulated movie,
so it runs anywhere: `python examples/dask_cluster.py [OUT_DIR] [TRAINING_STEPS]`. For your cluster, change the
"cluster" cell: `dask_scheduler(cluster="slurm", workers=8, worker_memory="16GB", worker_gpus=1)`
starts 8 SLURM jobs through dask-jobqueue (queue/account/interface come from your
~/.config/dask/jobqueue.yaml), or `dask_scheduler("tcp://host:8786")` joins a running scheduler.
Needs `pip install 'smlmdn[cluster]'`. Every worker loads the model once (by path) and writes its
blocks straight into the shared Zarr store, so OUT_DIR must be on a file system all workers see.
"""

# %% imports (worker processes import this file too: the work runs under the __main__ guard)
import sys
from pathlib import Path

import pandas as pd

from smlmdn.camera import load_camera, movie_to_photons
from smlmdn.cluster import dask_scheduler
from smlmdn.denoise import denoise_lazy, fit_model
from smlmdn.evaluate.match import match_localizations
from smlmdn.io import open_movie, write_movies
from smlmdn.localize import localize, write_localizations
from smlmdn.simulate import SimulationParams, simulate_to_dir


def main(out: Path, steps: int = 100) -> None:

    # %% data: a simulated movie with ground truth (replace with your movie and camera file)
    if not (out / "sim" / "movie.tif").exists():
        simulate_to_dir(SimulationParams.preset("medium", frames=200, size=48, seed=1), out / "sim", progress=False)
    camera = load_camera(out / "sim" / "camera.json")
    photons = movie_to_photons(open_movie(out / "sim" / "movie.tif"), camera)  # lazy (T, Y, X) detected photons

    # %% fit a model on the movie itself (self-supervised; short here, use --time-budget-sized runs for real data)
    model_path = out / "model.pt"
    if not model_path.exists():
        model = fit_model(photons, camera, steps=steps, progress=False)
        model.save(model_path)

    # %% cluster: blocks of the movie run on the workers
    with dask_scheduler("local", workers=2) as client:
        print("dask dashboard:", client.dashboard_link if client else "(local threads)")
        # posterior mean and per-pixel uncertainty in one network pass per block, written to Zarr
        est = denoise_lazy(photons, model_path, estimates=("mean", "std"))
        mean_path, std_path = out / "denoised_mean.zarr", out / "denoised_std.zarr"
        if not mean_path.exists():
            write_movies(
                {mean_path: est["mean"], std_path: est["std"]},
                progress=False,
                attrs={
                    mean_path: {"units": "photons", "estimate": "mean"},
                    std_path: {"units": "photons", "estimate": "std"},
                },
            )
        # hybrid localization: detect on the denoised movie, fit the raw photons
        locs = localize(photons, camera, detect_on=open_movie(mean_path), progress=False)

    # %% results
    write_localizations(locs, out / "locs_hybrid.csv", camera, overwrite=True)
    truth = pd.read_csv(out / "sim" / "truth.csv")
    print(len(locs), "localizations;", match_localizations(locs, truth).to_dict())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "dask_example"), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
