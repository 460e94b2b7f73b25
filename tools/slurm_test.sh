#!/usr/bin/env bash
# Testing on SLURM, mmseg's command line:
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options]
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: see slurm_run.sh.
set -euo pipefail
exec "$(dirname "$0")/slurm_run.sh" test.py "$1" "$2" "${@:3}"
