#!/usr/bin/env bash
# One process on this machine (CPU, or every local GPU/TPU chip JAX sees).
#   launch/local.sh experiments/configs/shakespeare_mdlm.py runs/shakespeare_mdlm [--config.KEY=VALUE ...]
# Re-running the same command resumes from WORKDIR/checkpoints.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.KEY=VALUE ...] [--mode=train|eval|sample]" >&2
  exit 2
fi
CONFIG=$1; WORKDIR=$2; shift 2
cd "$(dirname "$0")/.."
# A persistent compilation cache makes restarts start in seconds.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/ddjax/jax}
exec python -m experiments.main --config="$CONFIG" --workdir="$WORKDIR" --distributed=no "$@"
