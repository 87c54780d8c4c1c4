#!/usr/bin/env bash
# The full-scale runs the book's chapter 5 reports (issue "Full-scale runs on a GPU").
#
# Run on a CUDA machine from the repository root, one phase per call (each fits a 10-minute slot on one H100):
#   bash scripts/gpu_runs.sh bench        # inception_lib vs torchvision throughput (eager/compile, fp32/bf16)
#   bash scripts/gpu_runs.sh fmnist96     # Fashion-MNIST 96x96, variants bn and paper, aux 0.3, seeds 0 1 2
#   bash scripts/gpu_runs.sh ablation     # the same (bn) with aux weight 0, seeds 0 1 2
#   bash scripts/gpu_runs.sh fmnist224    # Fashion-MNIST 224x224 (the paper's resolution), bn and paper, seed 0
# Each run's history.json (config, versions, hardware, seed, per-epoch wall time, test accuracy) is copied to
# book/results/<name>.json; checkpoints stay in runs/ (never in git).
#
# Without internet the Fashion-MNIST files must travel with the tree: copy the four .gz files of Debian's
# dataset-fashion-mnist into .data/fashion-mnist/ (git-ignored); INCEPTION_LIB_DATA points there.
# Smoke test on a CPU (checks the commands, not the numbers): SMOKE=1 bash scripts/gpu_runs.sh fmnist96
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:?usage: gpu_runs.sh bench|fmnist96|ablation|fmnist224}
PY=${PY:-python3}
export INCEPTION_LIB_DATA=${INCEPTION_LIB_DATA:-$PWD/.data} INCEPTION_LIB_PROGRESS=0 PYTHONUNBUFFERED=1
RESULTS=${RESULTS:-book/results}
OUTCOPY=${OUT:-}
mkdir -p "$RESULTS" runs

# One place for the hyperparameters of every full run (the paper gives no batch size, base lr or epochs).
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-0 1 2}
# Base lr per variant: BatchNorm tolerates 0.1 at batch 256; the LRN "paper" net (no BN) gets 0.04, since it is
# known to stall or diverge from scratch at high rates (NVIDIA/DIGITS#82). Untested on a GPU so far.
declare -A LR=([bn]=0.1 [paper]=0.04)
COMMON=(--dataset fashion_mnist --channels 1 --batch-size 256 --nesterov --weight-decay 5e-4
        --schedule cosine --warmup-epochs 1 --augment flip --ema --ema-decay 0.999 --precision auto
        --gpu-data --epochs "$EPOCHS" --test --quiet)
if [ "${SMOKE:-0}" = 1 ]; then
  COMMON+=(--device cpu --subset 512 --eval-subset 256 --max-steps 2 --threads 2 --epochs 1)
  RES96=96; RES224=96
else
  RES96=96; RES224=224
fi

run() {  # name, then extra flags
  local name=$1; shift
  local t0; t0=$(date +%s)
  $PY -m inception_lib train "${COMMON[@]}" --out "runs/$name" --overwrite "$@"
  cp "runs/$name/history.json" "$RESULTS/$name.json"
  [ -n "$OUTCOPY" ] && cp "runs/$name/history.json" "$OUTCOPY/$name.json"
  echo "$name done in $(( $(date +%s) - t0 )) s"
}

case "$phase" in
  bench)
    for extra in "" "--compile" "--dtype bf16" "--dtype bf16 --channels-last" "--dtype bf16 --channels-last --compile"; do
      # shellcheck disable=SC2086
      $PY -m inception_lib bench --device cuda --batch-size 256 --resolution 224 --repeats 5 $extra \
        --json "$RESULTS/bench_$(echo "${extra:-eager_fp32}" | tr -d ' -').json"
    done ;;
  fmnist96)
    for seed in $SEEDS; do
      for variant in bn paper; do run "fmnist96_${variant}_aux03_s${seed}" --variant "$variant" --lr "${LR[$variant]}" --resolution $RES96 --aux-weight 0.3 --seed "$seed"; done
    done ;;
  ablation)
    for seed in $SEEDS; do run "fmnist96_bn_aux0_s${seed}" --variant bn --lr "${LR[bn]}" --resolution $RES96 --aux-weight 0 --seed "$seed"; done ;;
  fmnist224)
    for variant in bn paper; do run "fmnist224_${variant}_aux03_s0" --variant "$variant" --lr "${LR[$variant]}" --resolution $RES224 --aux-weight 0.3 --seed 0; done ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
