#!/usr/bin/env bash
# Denoise and localize every acquisition in a folder, from a plain shell loop.
#
# Change for your data:
#   DATA      folder holding the raw movies (*.tif; Micro-Manager folders work too: pass the folder)
#   CAMERA    your camera file (keys offset [ADU], e_per_adu, qe, em_gain, read_noise [e-], pixel_size [nm]);
#             `smlmdn info movie.tif` estimates offset and e_per_adu from the data if you are unsure
#   OUT       where results go
# Every step skips outputs that already exist, so rerunning after a crash or a Ctrl-C continues.
# Run with `bash examples/batch_denoise.sh` (with no arguments it first simulates two small movies).
set -euo pipefail

DATA=${1:-}
OUT=${2:-batch_out}
STEPS=${STEPS:-300}          # training steps per model (more is better; ~1-2 min per 300 on 2 CPU cores)
FRAMES=${FRAMES:-300}        # frames per simulated movie when no DATA is given

if [ -z "$DATA" ]; then      # no data given: simulate two small acquisitions to try the loop on
  DATA=$OUT/raw
  for i in 1 2; do
    [ -e "$DATA/cell$i.tif" ] && continue
    smlmdn simulate "$OUT/sim$i" --frames "$FRAMES" --size 48 --seed "$i" -q
    mkdir -p "$DATA" && mv "$OUT/sim$i/movie.tif" "$DATA/cell$i.tif" && cp "$OUT/sim$i/camera.json" "$OUT/camera.json"
  done
  CAMERA=$OUT/camera.json
else
  CAMERA=${CAMERA:?set CAMERA=path/to/camera.json}
fi

mkdir -p "$OUT/models" "$OUT/denoised" "$OUT/locs"
for movie in "$DATA"/*.tif; do
  name=$(basename "$movie" .tif)
  model=$OUT/models/$name.pt
  # 1. one self-supervised model per acquisition (it learns from the movie itself)
  if [ ! -e "$model" ]; then
    smlmdn fit "$movie" --camera "$CAMERA" -o "$model" --steps "$STEPS" -q
  fi
  # 2. posterior mean, written block by block (resumes if interrupted)
  smlmdn denoise "$movie" --camera "$CAMERA" --model "$model" -o "$OUT/denoised" -q || echo "denoise failed: $movie" >&2
done
# 3. localize all movies in one batch: detect on the denoised movie, fit the raw photons
smlmdn localize "$DATA"/*.tif --camera "$CAMERA" --mode hybrid --denoised "$OUT/denoised" -o "$OUT/locs" --format csv --format hdf5
