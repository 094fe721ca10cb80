#!/usr/bin/env bash
# Runs tools/<SCRIPT> as a SLURM job step: one task per GPU (or per process on CPU-only nodes),
# with --kill-on-bad-exit so that one crashed task ends the job. Used by slurm_train.sh and
# slurm_test.sh; reads GPUS (total tasks, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SRUN_ARGS and PYTHON.
#   tools/srun_job.sh PARTITION JOB_NAME SCRIPT [script arguments]
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
DIR=$(cd "$(dirname "$0")" && pwd)
GRES=()
if [ "$GPUS_PER_NODE" -gt 0 ] && command -v nvidia-smi >/dev/null 2>&1 \
    && nvidia-smi -L >/dev/null 2>&1; then
    GRES=(--gres="gpu:$GPUS_PER_NODE")
fi
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${GRES[@]}" \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 $SRUN_ARGS \
    "${PYTHON:-python}" -u "$DIR/$SCRIPT" "$@" --launcher=slurm
