#!/usr/bin/env bash
# Creates or refreshes one of mmhire's virtual environments with the whole OpenMMLab stack:
# torch + torchvision, mmengine, mmcv 2.1.0 compiled with its ops, mmdet, mmsegmentation,
# mmpretrain, the test tools and mmhire itself (editable).
#
# Usage: tools/setup_env.sh [default|floor|deploy]
#   default  the newest tested stack, requirements/stack.txt, in <repo>/.venv
#   floor    the oldest supported stack (torch 2.1, numpy 1.26), requirements/stack-floor.txt,
#            in <repo>/.venv-floor
#   deploy   the floor stack plus mmdeploy, its ONNX Runtime, OpenVINO 2023.3 with the Model
#            Optimizer and mmdeploy's SDK (requirements/deploy.txt), in <repo>/.venv-deploy;
#            it reuses the floor stack's compiled mmcv
#
# Environment variables:
#   MMHIRE_VENV   where the environment lives (default: as above)
#   MMHIRE_CACHE  where compiled mmcv wheels are kept (default: ~/.cache/mmhire)
#   MMHIRE_INSTALLER  uv (default: installed into the environment first, pip's package
#                 sources handed to it) or pip
#   PYTHON        the interpreter that creates the environment (default: python3)
#   FORCE_CUDA=1  compile mmcv's CUDA ops even when no GPU is visible
#
# A run that finds the environment complete and its inputs unchanged does nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${1:-default}
case "$STACK" in
    default) stack_file="$ROOT/requirements/stack.txt"; default_venv="$ROOT/.venv" ;;
    floor) stack_file="$ROOT/requirements/stack-floor.txt"; default_venv="$ROOT/.venv-floor" ;;
    deploy) stack_file="$ROOT/requirements/stack-floor.txt"; default_venv="$ROOT/.venv-deploy" ;;
    *) echo "[setup_env] error: unknown stack '$STACK'; choose 'default', 'floor' or 'deploy'" >&2
       exit 2 ;;
esac
VENV=${MMHIRE_VENV:-$default_venv}
installer=${MMHIRE_INSTALLER:-uv}
case "$installer" in
    uv|pip) ;;
    *) echo "[setup_env] error: MMHIRE_INSTALLER must be 'uv' or 'pip', got '$installer'" >&2
       exit 2 ;;
esac
CACHE=${MMHIRE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmhire}
PYTHON=${PYTHON:-python3}
MMCV_VERSION=2.1.0

log() { printf '[setup_env] %s\n' "$*" >&2; }

inputs_hash() {
    cat "$ROOT"/requirements/*.txt "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" \
        | sha256sum | cut -d' ' -f1
}

imports='import mmcv.ops, mmdet, mmseg, mmpretrain, mmhire'
[ "$STACK" = deploy ] && imports="$imports, mmdeploy, onnxruntime, openvino, mmdeploy_runtime"
stamp="$VENV/.mmhire-setup-stamp"
want="$(inputs_hash) cuda=${FORCE_CUDA:-auto}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c "$imports" 2>/dev/null; then
    log "environment $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# The packages go in with uv (requirements/installer.txt, into the environment itself): from a
# warm cache it links torch's 3 GB in seconds, where pip unpacks them again each time. uv reads
# no pip configuration, so pip's package sources are handed over (tools/misc/uv_index_args.py).
# MMHIRE_INSTALLER=pip, or uv not installing, keeps pip.
uv_args=()
if [ "$installer" = uv ]; then
    if "$PY" -m pip install --disable-pip-version-check -q -r "$ROOT/requirements/installer.txt" \
        && sources=$("$PY" "$ROOT/tools/misc/uv_index_args.py"); then
        while IFS= read -r arg; do
            case "$arg" in
                env:*) setting=${arg#env:}; name=${setting%%=*}
                       [ -n "${!name:-}" ] || export "$setting" ;;  # the user's own wins
                ?*) uv_args+=("$arg") ;;
            esac
        done <<< "$sources"
    else
        log "could not install uv; installing with pip"
        installer=pip
    fi
fi
pip_install() {
    if [ "$installer" = uv ]; then
        # --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, nothing else
        # would, and each process would compile torch's sources again (4 s more per start)
        "$VENV/bin/uv" pip install --compile-bytecode --python "$PY" \
            ${uv_args[@]+"${uv_args[@]}"} "$@"
    else
        "$PY" -m pip install --disable-pip-version-check "$@"
    fi
}

log "installing torch, torchvision and build tools ($STACK stack)"
pip_install -r "$stack_file"

# mmcv's compiled ops must match the torch they were built against, so the wheelhouse is
# keyed by torch version, Python tag and whether the CUDA ops were compiled.
read -r torch_version py_tag torch_cuda gpu_visible < <("$PY" - <<'PYEOF'
import sys
import torch
print(torch.__version__, f'cp{sys.version_info[0]}{sys.version_info[1]}',
      torch.version.cuda or 'none', int(torch.cuda.is_available()))
PYEOF
)
with_cuda=0
if [ "${FORCE_CUDA:-0}" = "1" ] || [ "$gpu_visible" = "1" ]; then
    [ "$torch_cuda" = "none" ] && { log "error: CUDA ops requested but torch $torch_version has no CUDA"; exit 1; }
    with_cuda=1
fi
flavor=cpu
[ "$with_cuda" = "1" ] && flavor="cu${torch_cuda//./}"
wheelhouse="$CACHE/wheelhouse/torch-${torch_version//+/_}-$py_tag-$flavor"
mkdir -p "$wheelhouse"
wheel=$(ls "$wheelhouse"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)

if [ -z "$wheel" ]; then
    log "compiling mmcv $MMCV_VERSION ops ($flavor) for torch $torch_version; about 3 minutes on a 2-core AMD EPYC (Zen 4), longer on older CPUs"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
        --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
    src="$work/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes older standards, which
    # older torch builds with unchanged.
    if "$PY" -c 'import sys, torch; sys.exit(tuple(map(int, torch.__version__.split(".")[:2])) < (2, 10))'; then
        sed -i -E 's/-std=c\+\+1[147]/-std=c++20/g' "$src/setup.py"
        grep -q 'std=c++20' "$src/setup.py" || { log "error: could not raise the C++ standard in mmcv's setup.py"; exit 1; }
    fi
    export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}"
    # The interpreter's CFLAGS carry -g: debug information for 77 template-heavy objects
    # nobody debugs. -g0 (last, so it wins) keeps the same code, optimisation and ops.
    export CFLAGS="${CFLAGS:-} -g0" CXXFLAGS="${CXXFLAGS:-} -g0"
    # Most of mmcv's sources start by including one header that pulls in torch's; parsing it is
    # most of each compile. The compiler front precompiles it once with the same flags.
    pch_header="$src/mmcv/ops/csrc/common/pytorch_cpp_helper.hpp"
    if [ -f "$pch_header" ] && command -v flock >/dev/null; then
        export MMHIRE_REAL_CXX="${CXX:-c++}" CXX="$ROOT/tools/misc/cxx_with_pch.sh"
        export MMHIRE_PCH_HEADER="$pch_header" MMHIRE_PCH_DIR="$work/pch"
    fi
    [ "$with_cuda" = "1" ] && export FORCE_CUDA=1
    "$PY" -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation \
        --no-cache-dir "$src" -w "$work/out"
    built=$(ls "$work"/out/mmcv-"$MMCV_VERSION"-*.whl)
    # Copy then rename, so an interrupted run never leaves a half-written wheel behind.
    cp "$built" "$wheelhouse/.partial.whl"
    wheel="$wheelhouse/$(basename "$built")"
    mv "$wheelhouse/.partial.whl" "$wheel"
else
    log "reusing compiled mmcv from $wheel"
fi

log "installing mmcv, mmdet, mmsegmentation, mmpretrain, test tools and mmhire"
# One resolver run with the compiled wheel, so nothing tries to fetch mmcv from PyPI; the
# stack file as constraints keeps torch, torchvision and numpy where the first stage put them.
stack_tests=()
[ "$STACK" = default ] && stack_tests=(-r "$ROOT/requirements/tests-default.txt")
# mmdeploy pins onnxruntime/onnx/protobuf: its file is a constraint as well as a requirement.
[ "$STACK" = deploy ] && stack_tests=(-r "$ROOT/requirements/deploy.txt" -c "$ROOT/requirements/deploy.txt")
pip_install "$wheel" -c "$stack_file" -r "$ROOT/requirements/optional.txt" \
    -r "$ROOT/requirements/tests.txt" ${stack_tests[@]+"${stack_tests[@]}"} \
    "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0" "ftfy==6.3.1"
pip_install --no-build-isolation --no-deps -e "$ROOT"

"$PY" -c "$imports" \
    || { log "error: the environment does not import"; exit 1; }
echo "$want" > "$stamp"
log "environment ready: $VENV"
