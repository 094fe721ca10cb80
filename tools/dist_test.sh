#!/usr/bin/env bash
# Evaluate a checkpoint with NUM_PROCS processes per node through torchrun.
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_PROCS [test.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NUM_PROCS=$3
shift 3
DIR=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NUM_PROCS" \
    "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
