#!/usr/bin/env bash
# One acquisition per SLURM array task: fit a model on it, denoise it, localize it.
#
#   sbatch --array=0-$(( $(ls /data/run42/*.tif | wc -l) - 1 )) examples/slurm_array.sh /data/run42 /scratch/$USER/run42
#
# Change for your cluster: the #SBATCH lines (partition, account, time, memory, GPU), the module/conda
# activation, and CAMERA. smlmdn streams movies block by block, so memory does not grow with movie
# length: 16 GB is plenty for 256 x 256 movies of any length. Each step skips finished outputs and
# Zarr outputs resume from their completed blocks, so a task that hits its time limit can simply be
# resubmitted with the same array index.
#SBATCH --job-name=smlmdn
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --gres=gpu:1
#SBATCH --output=smlmdn_%A_%a.log
set -euo pipefail

DATA=${1:?usage: sbatch --array=0-N slurm_array.sh DATA_DIR OUT_DIR}
OUT=${2:?usage: sbatch --array=0-N slurm_array.sh DATA_DIR OUT_DIR}
CAMERA=${CAMERA:-$DATA/camera.json}
# source ~/venvs/smlmdn/bin/activate      # <- your environment

mapfile -t MOVIES < <(ls "$DATA"/*.tif)
movie=${MOVIES[$SLURM_ARRAY_TASK_ID]}
name=$(basename "$movie" .tif)
mkdir -p "$OUT/models" "$OUT/denoised" "$OUT/locs"

# --device auto uses the allocated GPU and says so in the log ("running on CPU: ..." if it found none)
[ -e "$OUT/models/$name.pt" ] || smlmdn fit "$movie" --camera "$CAMERA" -o "$OUT/models/$name.pt" \
    --time-budget 1800 --device auto --threads "$SLURM_CPUS_PER_TASK" --resume --quiet
smlmdn denoise "$movie" --camera "$CAMERA" --model "$OUT/models/$name.pt" -o "$OUT/denoised" --device auto --json --quiet
smlmdn localize "$movie" --camera "$CAMERA" --mode hybrid --denoised "$OUT/denoised" -o "$OUT/locs" \
    --format csv --format hdf5 --json --quiet
