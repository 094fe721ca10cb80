#!/usr/bin/env bash
# Train with NUM_PROCS processes per node through torchrun (gloo on CPUs, NCCL on GPUs).
#   tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each node.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCS [train.py options]" >&2
    exit 2
fi
CONFIG=$1
NUM_PROCS=$2
shift 2
DIR=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NUM_PROCS" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
