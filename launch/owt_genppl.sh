#!/usr/bin/env bash
# Generative perplexity / entropy table of a published checkpoint on one GPU host.
#   launch/owt_genppl.sh CHECKPOINT JUDGE [--samplers ancestral,remdm --steps 128,1024 ...]
# CHECKPOINT: a local mdlm-owt / sedd-small / duo folder; JUDGE: a local gpt2-large folder.
# Install: pip install -e ".[eval]" "jax[cuda12]". Writes docs/tables/owt_genppl.{md,csv,json}
# unless --out is given.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CHECKPOINT JUDGE [extra flags of experiments.tables.owt_genppl]" >&2
  exit 2
fi
CHECKPOINT=$1; JUDGE=$2; shift 2
cd "$(dirname "$0")/.."
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/ddjax/jax}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
python -c "import jax; print('devices:', jax.devices())"
exec python -m experiments.tables.owt_genppl --checkpoint="$CHECKPOINT" --judge="$JUDGE" \
  --batch=64 --batches=16 "$@"
