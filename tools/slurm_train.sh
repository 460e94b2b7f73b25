#!/usr/bin/env bash
# Training on SLURM, mmseg's command line: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [tools/train.py options]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: see slurm_run.sh.
set -euo pipefail
exec "$(dirname "$0")/slurm_run.sh" train.py "$1" "$2" "${@:3}"
