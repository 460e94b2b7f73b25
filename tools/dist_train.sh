#!/usr/bin/env bash
# Distributed training: tools/dist_train.sh CONFIG GPUS [tools/train.py options]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (see dist_run.sh).
# Without CUDA the same command trains on CPU processes with the gloo backend.
set -euo pipefail
exec "$(dirname "$0")/dist_run.sh" train.py "$2" "$1" "${@:3}"
