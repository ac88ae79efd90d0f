#!/usr/bin/env bash
# BD3-LM on OpenWebText at the paper's size, one GPU host (all of its GPUs):
#   launch/owt_bd3lm.sh BLOCK_SIZE WORKDIR --config.data.path=DIR [--config.KEY=VALUE ...]
# BLOCK_SIZE: 4, 8 or 16 (experiments/configs/owt_bd3lm_BLOCK_SIZE.py). Resumes from
# WORKDIR/checkpoints. Several nodes: sbatch launch/slurm.sbatch with the same config.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 BLOCK_SIZE WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
BLOCK=$1; WORKDIR=$2; shift 2
cd "$(dirname "$0")/.."
CONFIG=experiments/configs/owt_bd3lm_${BLOCK}.py
if [[ ! -f $CONFIG ]]; then
  echo "no config $CONFIG (block sizes: 4, 8, 16)" >&2
  exit 2
fi
exec launch/gpu.sh "$CONFIG" "$WORKDIR" "$@"
