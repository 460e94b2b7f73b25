#!/usr/bin/env bash
# torchrun one of the tools on NPROC processes: tools/dist_run.sh TOOL.py NPROC [TOOL args]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT on each, as in mmseg.
set -euo pipefail
TOOL=$1
NPROC=$2
HERE=$(dirname "$0")
PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" \
"${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$NPROC" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-${PORT:-29500}}" \
    "$HERE/$TOOL" "${@:3}" --launcher pytorch
