#!/usr/bin/env bash
# A Cloud TPU VM pod slice: every worker runs the same command; jax.distributed
# finds the coordinator and the process ids from the TPU metadata by itself.
#
#   gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command \
#     "cd ddjax && launch/tpu_pod.sh experiments/configs/text8_mdlm.py gs://BUCKET/runs/text8_mdlm"
#
# Set up once on all workers: git clone ... ddjax && cd ddjax && pip install -e . "jax[tpu]"
# WORKDIR must be shared storage that every worker can write (a gs:// bucket or NFS):
# Orbax writes one checkpoint from all hosts together. Each worker reads its own slice
# of every batch (data sharded by jax.process_index()).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
CONFIG=$1; WORKDIR=$2; shift 2
cd "$(dirname "$0")/.."
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/ddjax/jax}
exec python -m experiments.main --config="$CONFIG" --workdir="$WORKDIR" --distributed=yes "$@"
