#!/usr/bin/env bash
# torchrun one of the tools on NPROC processes: tools/dist_run.sh TOOL.py NPROC [TOOL args]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT on each, as in mmseg.
# Python: $PYTHON if set, else the project's .venv (made by `make setup`), else python3;
# the choice is printed. DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 TOOL.py NPROC [TOOL args]" >&2
    exit 2
fi
TOOL=$1
NPROC=$2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=tools/launcher.sh
. "$HERE/launcher.sh"
echo "dist_run.sh: python $PY ($WHY)" >&2
CMD=("$PY" -m torch.distributed.run
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$NPROC"
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-${PORT:-29500}}"
    "$HERE/$TOOL" "${@:3}" --launcher pytorch)
launch "${CMD[@]}"
