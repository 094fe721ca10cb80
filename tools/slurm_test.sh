#!/usr/bin/env bash
# Evaluate a checkpoint through SLURM (see tools/srun_job.sh for GPUS, GPUS_PER_NODE, ...).
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/srun_job.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
