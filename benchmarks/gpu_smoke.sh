#!/usr/bin/env bash
# GPU smoke test of the flagship recipe, offline, on one GPU:
#   phantom data at 2048 -> HRNet-W48 + OCR trained at 1024 with AMP for ITERS iterations
#   -> tools/test.py --tta on the test split -> Dice against the phantom's test labels.
# Prints train images/s, peak GPU memory (torch's peak allocation from the training log, and
# nvidia-smi's peak use), validation and test Dice, and ends with a one-line summary, also
# written to SUMMARY.
#
#   benchmarks/gpu_smoke.sh
# Settings (environment): PYTHON, CONFIG, SIZE (phantom side), PATIENTS (train patients; the
# test split gets a quarter), ITERS, WORKERS (loader and phantom processes), AMP (1: --amp;
# the model-zoo configs train with AMP anyway, the tiny CPU config needs 0),
# PRETRAINED (None, or a local weights file: the GPU machine has no internet), ROOT_DIR
# (data and work dirs; the work dir is cleared, the data reused), DATA (the phantom folder,
# default ROOT_DIR/data_SIZE: runs of several configs can share one), SUMMARY, EXTRA (more
# --cfg-options). benchmarks/gpu_run.sh runs it on the device tool's GPU machine. A CPU dry
# run of the same steps:
#   SIZE=256 PATIENTS=5 ITERS=2 WORKERS=0 AMP=0 CONFIG=configs/tiny_cpu_handbone.py \
#       benchmarks/gpu_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
CONFIG=${CONFIG:-configs/hrnet_w48_handbone.py}
SIZE=${SIZE:-2048}
PATIENTS=${PATIENTS:-20}
ITERS=${ITERS:-200}
WORKERS=${WORKERS:-8}
AMP=${AMP:-1}
PRETRAINED=${PRETRAINED:-None}
ROOT_DIR=${ROOT_DIR:-work_dirs/gpu_smoke}
SUMMARY=${SUMMARY:-$ROOT_DIR/summary.txt}
DATA=${DATA:-$ROOT_DIR/data_$SIZE}
WORK=$ROOT_DIR/work
# Loader workers live as long as their loader only where there are workers.
PERSISTENT=$([ "$WORKERS" -gt 0 ] && echo True || echo False)
# The pretrained weights (None: random) and loaders; SyncBN needs nothing: a non-distributed
# mmengine runner turns it into BN.
OPTS=(data_root="$DATA" model.pretrained="$PRETRAINED"
      train_dataloader.num_workers="$WORKERS" train_dataloader.persistent_workers="$PERSISTENT"
      val_dataloader.num_workers="$WORKERS" val_dataloader.persistent_workers="$PERSISTENT"
      test_dataloader.num_workers="$WORKERS" test_dataloader.persistent_workers="$PERSISTENT"
      ${EXTRA:-})

LOG_INTERVAL=$(( ITERS < 20 ? 1 : 10 ))  # iterations per logged window of times
AMP_FLAG=()
if [ "$AMP" = 1 ]; then AMP_FLAG=(--amp); fi

step() { echo; echo "=== $*"; }
mkdir -p "$ROOT_DIR"
start=$SECONDS

step "phantom data: $PATIENTS train patients at $SIZE px in $DATA"
if [ -d "$DATA/train" ]; then
    echo "reusing $DATA"
else
    "$PYTHON" tools/make_phantom.py "$DATA" --patients "$PATIENTS" --size "$SIZE" --seed 0 \
        --test-labels --workers "$(( WORKERS > 0 ? WORKERS : 1 ))"
fi
phantom_s=$(( SECONDS - start ))

step "train $CONFIG: $ITERS iterations ${AMP_FLAG[*]}"
rm -rf "$WORK"
mem_log=$ROOT_DIR/nvidia_smi_memory.txt
: > "$mem_log"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$mem_log" &
    smi_pid=$!
    trap 'kill "$smi_pid" 2> /dev/null || true' EXIT
fi
t=$SECONDS
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK" "${AMP_FLAG[@]}" \
    --cfg-options "${OPTS[@]}" train_cfg.max_iters="$ITERS" train_cfg.val_interval="$ITERS" \
    default_hooks.checkpoint.interval="$ITERS" default_hooks.logger.interval="$LOG_INTERVAL"
train_s=$(( SECONDS - t ))
if [ -n "${smi_pid:-}" ]; then kill "$smi_pid" 2> /dev/null || true; fi

step "test split with --tta"
t=$SECONDS
"$PYTHON" tools/test.py "$CONFIG" "$WORK/iter_$ITERS.pth" --tta --out "$ROOT_DIR/test" \
    --work-dir "$WORK" --cfg-options "${OPTS[@]}"
test_s=$(( SECONDS - t ))

step "summary"
"$PYTHON" - "$CONFIG" "$WORK" "$DATA" "$ROOT_DIR/test/submission.csv" "$mem_log" "$SUMMARY" \
    "$ITERS" "$AMP" "$phantom_s" "$train_s" "$test_s" <<'EOF'
"""Throughput and memory from the training log, Dice of the TTA submission."""
import json
import sys
from pathlib import Path

import torch
from mmengine.config import Config

from handbone_mmseg.evaluation import score_submission

config, work, data, submission, mem_log, summary = map(Path, sys.argv[1:7])
iters, amp, phantom_s, train_s, test_s = map(int, sys.argv[7:])
scalars = [json.loads(line) for line in next(work.glob('*/vis_data/scalars.json')).open()]
train = [s for s in scalars if 'loss' in s]
cfg = Config.fromfile(next(work.glob('*/vis_data/config.py')))
batch = cfg.train_dataloader.batch_size
# The first logged window holds the warm-up (cuDNN autotuning, workers starting).
steady = [s['time'] for s in train[1:]] or [s['time'] for s in train]
images_per_s = batch / (sum(steady) / len(steady))
alloc = [s['memory'] for s in train if 'memory' in s]  # torch's peak, CUDA only
peak_alloc = f'{max(alloc)} MB' if alloc else 'n/a'
smi = [int(v) for v in mem_log.read_text().split() if v.isdigit()]
peak_smi = f'{max(smi)} MB' if smi else 'n/a'
val_dice = next((s['mDice'] for s in reversed(scalars) if 'mDice' in s), float('nan'))
_, test_dice, n_test = score_submission(submission, data, 'test/DCM', 'test_labels/outputs_json')
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'
crop = 'x'.join(map(str, cfg.crop_size))
line = (f'gpu_smoke: {device} | {config.stem} {crop} batch {batch}'
        f'{" AMP" if amp else ""}, {iters} it: {images_per_s:.2f} img/s, peak memory '
        f'{peak_alloc} allocated / {peak_smi} nvidia-smi | val mDice '
        f'{val_dice:.4f} | test TTA Dice {test_dice:.4f} ({n_test} images) | time: phantom '
        f'{phantom_s} s, train {train_s} s, test {test_s} s')
print(f'train: {len(train)} logged windows, {images_per_s:.2f} images/s after warm-up')
print(f'peak GPU memory: {peak_alloc} allocated by torch, {peak_smi} used (nvidia-smi)')
print(f'Dice: validation {val_dice:.4f}, test with TTA {test_dice:.4f} over {n_test} images')
print(line)
summary.write_text(line + '\n')
EOF
