#!/usr/bin/env bash
# The GPU check in one call, for a GPU node without network: installs mmhire from a wheelhouse
# into OUT_DIR/site (the node's torch stays as it is), then runs the CUDA tests, the benchmark
# on the GPU, mmcv's ops compiled for the GPU and a short demo training with --amp, within a
# time budget (8 minutes by default), and writes OUT_DIR/report.md and OUT_DIR/report.json.
#
# Usage: bash tools/gpu_check.sh [--dry-run] [--wheelhouse DIR] [--budget SECONDS]
#                                [--mmcv-wheel WHEEL] OUT_DIR
#   --dry-run     every step on the CPU at small sizes (no GPU needed)
#   --wheelhouse  made by `make wheelhouse PYTHON_VERSION=<the node's Python>` (default:
#                 wheelhouse/ in this checkout)
#   PYTHON        the node's Python, the one with torch (default: python3)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
python=$(command -v "$PYTHON") || { echo "gpu_check: no Python '$PYTHON'; set PYTHON to the node's interpreter" >&2; exit 2; }
# the steps run in other folders: a relative path (.venv/bin/python) made absolute, links kept
# (a venv's python is a link that must stay one)
case "$python" in /*) ;; *) python="$PWD/$python" ;; esac
exec "$python" "$ROOT/tools/misc/gpu_check.py" --python "$python" "$@"
