#!/usr/bin/env bash
# The GPU check: under 8 minutes on one GPU.
#
#   bash benchmarks/device_check.sh            # on the GPU machine, from anywhere
#   DEVICE_CHECK_MODE=cpu bash benchmarks/device_check.sh   # the same steps at toy size
#   DEVICE_CHECK_MODE=dry bash benchmarks/device_check.sh   # print the commands only
#
# 1. installs the gpu extra (skipped when JAX already sees a GPU, or in cpu/dry mode);
# 2. runs the tests that touch devices (placement, sharding, checkpoints, precision);
# 3. trains the text8-size MDLM config (12 x 768, L = 256) in bf16 on synthetic text8
#    tokens for two minutes, printing tokens/s and MFU against the chip's peak;
# 4. prints the sampler overhead ratios at K = 50258;
# 5. prints block diffusion's cost per token against AR with the KV cache at L = 1024
#    (the target: block 16 within 2x AR, compute-bound and missed on the CPU) and
#    smc / svdd against N x ancestral at K = 50258 (the target: 1.2x).
# Results go to $OUT (default runs/device_check): train.json, samplers.md, blocks.md,
# steering.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MODE=${DEVICE_CHECK_MODE:-gpu}
OUT=${OUT:-runs/device_check}
TRAIN_SECONDS=${TRAIN_SECONDS:-120}
case "$MODE" in gpu | cpu | dry) ;; *)
  echo "DEVICE_CHECK_MODE must be gpu, cpu or dry, got '$MODE'" >&2
  exit 2
  ;;
esac
mkdir -p "$OUT"
START=$(date +%s)

run() {
  echo "+ $*"
  if [ "$MODE" != dry ]; then "$@"; fi
}
elapsed() { echo "[device_check] $1 done at $(($(date +%s) - START)) s"; }

echo "[device_check] mode $MODE, python $($PY -c 'import sys; print(sys.version.split()[0])')"

# 1. the gpu extra
if [ "$MODE" = gpu ]; then
  if $PY -c 'import jax, sys; sys.exit(0 if jax.default_backend() == "gpu" else 1)' 2>/dev/null; then
    echo "[device_check] JAX already sees a GPU: not reinstalling"
  else
    run $PY -m pip install -q -e ".[gpu,test]"
  fi
else
  echo "+ $PY -m pip install -q -e \".[gpu,test]\"   (skipped in $MODE mode)"
fi
if [ "$MODE" != dry ]; then
  $PY -c 'import jax; print("[device_check] devices:", jax.devices(), "kind:", jax.devices()[0].device_kind)'
fi
elapsed install

# 2. the tests that touch devices (the default backend: the GPU in gpu mode)
TESTS="tests/test_mixed_precision.py tests/test_training.py tests/test_checkpoint.py"
TESTS="$TESTS tests/test_multidevice.py tests/test_models.py"
if [ "$MODE" = cpu ]; then TESTS="tests/test_mixed_precision.py"; fi
# shellcheck disable=SC2086
run $PY -m pytest -q -p no:cacheprovider -n 0 -x $TESTS
elapsed tests

# 3. text8-size MDLM in bf16, two minutes, tokens/s and MFU
if [ "$MODE" = cpu ]; then
  SIZE=(--config experiments/configs/smoke.py --rounds 1 --steps_per_round 2 --peak_tflops 1)
  TRAIN_SECONDS=${CPU_TRAIN_SECONDS:-3}
else
  SIZE=(--config experiments/configs/text8_mdlm.py --set train.batch_size=64 --rounds 3
    --steps_per_round 5 --peak_tflops auto)
fi
run $PY benchmarks/train.py "${SIZE[@]}" --synthetic --set model.dtype=bfloat16 \
  --seconds "$TRAIN_SECONDS" --json "$OUT/train.json"
elapsed train

# 4. sampler overhead at K = 50258
if [ "$MODE" = cpu ]; then
  SAMPLERS=(--vocab 50258 --steps 2 --samplers ancestral --batch 2 --length 16 --repeats 1)
else
  SAMPLERS=(--vocab 50258 --steps 16 --samplers ancestral,euler,tweedie,theta_trapezoidal)
fi
run $PY benchmarks/samplers.py "${SAMPLERS[@]}" --record "$OUT/samplers.md"
elapsed samplers

# 5. block diffusion vs AR (L = 1024) and steering vs N x ancestral (K = 50258)
if [ "$MODE" = cpu ]; then
  BLOCKS=(--length 32 --layers 1 --width 32 --heads 2 --blocks 4 --full-calls 2 --tokens 8
    --thresholds 0.9 --repeats 1)
  STEERING=(--quick)
else
  BLOCKS=(--length 1024 --blocks 4,16 --repeats 3)
  STEERING=(--vocab 50258 --n 4,8)
fi
run $PY benchmarks/blocks.py "${BLOCKS[@]}" --record "$OUT/blocks.md"
run $PY benchmarks/steering.py "${STEERING[@]}" --record "$OUT/steering.md"
elapsed "blocks and steering"
echo "[device_check] OK in $(($(date +%s) - START)) s; results in $OUT"
