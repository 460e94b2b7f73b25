#!/usr/bin/env bash
# Distributed testing: tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (see dist_run.sh).
set -euo pipefail
exec "$(dirname "$0")/dist_run.sh" test.py "$3" "$1" "$2" "${@:4}"
