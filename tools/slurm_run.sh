#!/usr/bin/env bash
# srun one of the tools on a SLURM partition, as mmseg's slurm scripts do:
#   tools/slurm_run.sh TOOL.py PARTITION JOB_NAME [TOOL args]
# GPUS (default 4), GPUS_PER_NODE (4), CPUS_PER_TASK (5) and SRUN_ARGS as in mmseg. Python:
# $PYTHON, else the project's .venv, else python3. DRY_RUN=1 prints the command.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 TOOL.py PARTITION JOB_NAME [TOOL args]" >&2
    exit 2
fi
TOOL=$1
PARTITION=$2
JOB_NAME=$3
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=tools/launcher.sh
. "$HERE/launcher.sh"
echo "slurm_run.sh: python $PY ($WHY)" >&2
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
# shellcheck disable=SC2206  # SRUN_ARGS holds several arguments, as in mmseg
EXTRA=(${SRUN_ARGS:-})
CMD=(srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE"
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK"
    --kill-on-bad-exit=1 "${EXTRA[@]}" "$PY" -u "$HERE/$TOOL" "${@:4}" --launcher slurm)
launch "${CMD[@]}"
