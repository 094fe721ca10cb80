#!/usr/bin/env bash
# Train through SLURM (see tools/srun_job.sh for GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS
# and MMHIRE_DEVICE=cpu for a CPU-only job).
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
exec bash "$(dirname "$0")/srun_job.sh" "$PARTITION" "$JOB_NAME" train.py "$CONFIG" \
    --work-dir="$WORK_DIR" "$@"
