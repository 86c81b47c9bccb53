#!/usr/bin/env bash
# The CUDA path end to end, timed, in at most ~8 minutes on one GPU: the CUDA tests, `s3rec bench
# pretrain --device cuda` (eager, bf16, compile=reduce-overhead), `s3rec bench train --device cuda`,
# and a 3-epoch Beauty pre-training with fine-tuning on the GPU. Prints each figure; with $OUT set,
# writes the logs and JSON there too.
#
#   S3REC_DATA_DIR=/path/to/data bash benchmarks/gpu_check.sh          # from the repository root
#
# Needs a python with torch (CUDA) and tqdm: $PYTHON (default python3); s3rec runs from src/ without
# installing. The data folder must hold Beauty.txt and Beauty_item2attributes.json (on a machine that
# cannot reach the internet, bring them: e.g. an ignored symlink to the data folder, carried by path).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
: "${S3REC_DATA_DIR:?set S3REC_DATA_DIR to a folder holding Beauty.txt and Beauty_item2attributes.json}"
export S3REC_DATA_DIR
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
s3rec() { timeout "${STEP_TIMEOUT:-240}" "$PY" -m s3rec "$@"; }
step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }

step "device"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"

step "CUDA tests"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log" | tail -5

for setting in "" "--set amp=bf16" "--set compile=reduce-overhead"; do
  step "s3rec bench pretrain --dataset Beauty --device cuda $setting"
  s3rec bench pretrain --dataset Beauty --device cuda --batches 500 --warmup 50 $setting --json \
    | tee -a "$OUT/bench_pretrain.jsonl" | "$PY" -c "import json,sys; r=json.load(sys.stdin); print(f\"{r['instances_per_second']:.0f} instances/s, epoch ~{r['estimated_epoch_seconds']:.1f} s\")"
done

step "s3rec bench train --dataset Beauty --device cuda"
s3rec bench train --dataset Beauty --device cuda --json | tee "$OUT/bench_train.json" \
  | "$PY" -c "import json,sys; r=json.load(sys.stdin); print(f\"{r['median_seconds_per_epoch']:.2f} s per fine-tuning epoch (train {r['median_train_seconds']:.2f}, valid {r['median_valid_seconds']:.2f})\")"

step "3-epoch Beauty pre-training + fine-tuning on the GPU"
start=$(date +%s)
STEP_TIMEOUT=300 s3rec run --dataset Beauty --device cuda --pretrain-epochs 3 --set epochs=3 --quiet \
  --out "$OUT/run" 2>&1 | tee "$OUT/run.log" | tail -4
echo "run: $(( $(date +%s) - start )) s wall"
