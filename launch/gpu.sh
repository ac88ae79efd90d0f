#!/usr/bin/env bash
# One host, all of its GPUs: a single process drives every local GPU (data parallel
# over the 'data' mesh axis; train.batch_size is the global batch).
#   launch/gpu.sh experiments/configs/text8_mdlm.py runs/text8_mdlm [--config.KEY=VALUE ...]
# Pick GPUs with CUDA_VISIBLE_DEVICES=0,1,... Install: pip install -e . "jax[cuda12]"
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
CONFIG=$1; WORKDIR=$2; shift 2
cd "$(dirname "$0")/.."
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/ddjax/jax}
# Let XLA use most of the GPU memory up front, and overlap collectives with compute.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
python -c "import jax; print('devices:', jax.devices())"
exec python -m experiments.main --config="$CONFIG" --workdir="$WORKDIR" --distributed=no "$@"
