#!/usr/bin/env bash
# Runs tools/<SCRIPT> as a SLURM job step, one task per GPU, with --kill-on-bad-exit so that
# one crashed task ends the job. Used by slurm_train.sh and slurm_test.sh.
#   tools/srun_job.sh PARTITION JOB_NAME SCRIPT [script arguments]
#
# Environment variables:
#   GPUS           total number of tasks (GPUs), a multiple of GPUS_PER_NODE (default 8)
#   GPUS_PER_NODE  tasks (GPUs) per node (default 8); GPUS=16 GPUS_PER_NODE=8 uses two nodes
#   CPUS_PER_TASK  CPUs per task (default 5)
#   SRUN_ARGS      more srun options, e.g. "--quotatype=auto"
#   MMHIRE_DEVICE  cuda (default): request GPUS_PER_NODE GPUs per node (--gres), and the
#                  tasks stop if they find no GPU; cpu: a CPU-only job on purpose, no GPUs
#                  requested, gloo between the tasks
#   PYTHON         the interpreter (default: python)
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
export MMHIRE_DEVICE=${MMHIRE_DEVICE:-cuda}
DIR=$(cd "$(dirname "$0")" && pwd)

fail() { echo "error: $*" >&2; exit 2; }
for name in GPUS GPUS_PER_NODE CPUS_PER_TASK; do
    [[ "${!name}" =~ ^[1-9][0-9]*$ ]] || fail "$name=${!name} must be a positive whole number"
done
if [ "$GPUS_PER_NODE" -gt "$GPUS" ]; then
    fail "GPUS_PER_NODE=$GPUS_PER_NODE is larger than GPUS=$GPUS; for a job on one node set GPUS_PER_NODE=$GPUS"
fi
if [ $((GPUS % GPUS_PER_NODE)) -ne 0 ]; then
    fail "GPUS=$GPUS is not a multiple of GPUS_PER_NODE=$GPUS_PER_NODE; use GPUS=$(( (GPUS / GPUS_PER_NODE + 1) * GPUS_PER_NODE )) or GPUS_PER_NODE that divides $GPUS"
fi
case "$MMHIRE_DEVICE" in
    cuda) GRES=(--gres="gpu:$GPUS_PER_NODE") ;;
    cpu) GRES=() ;;
    *) fail "MMHIRE_DEVICE=$MMHIRE_DEVICE: choose cuda (GPUs, the default) or cpu" ;;
esac
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${GRES[@]}" \
    --nodes=$((GPUS / GPUS_PER_NODE)) --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
    "${PYTHON:-python}" -u "$DIR/$SCRIPT" "$@" --launcher=slurm
