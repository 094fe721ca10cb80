#!/usr/bin/env bash
# A C++ compiler front for building mmcv's ops: it precompiles one header that most of mmcv's
# sources include first, once per set of compile flags, and lets every later compile load it.
#
# tools/setup_env.sh sets CXX to this script while it compiles mmcv. Parsing the torch headers
# behind that header is most of the work in 63 of mmcv's 77 CPU sources; the precompiled form
# is built with the very flags of the compile that asks for it, so the objects are the same
# and a source that cannot use it (another first include, other flags) reads the plain header.
#
# Environment:
#   MMHIRE_PCH_HEADER  the header to precompile (mmcv's pytorch_cpp_helper.hpp); unset: plain
#   MMHIRE_PCH_DIR     where the precompiled headers go (one folder per set of flags)
#   MMHIRE_REAL_CXX    the compiler to run (default: c++)
set -euo pipefail
real=${MMHIRE_REAL_CXX:-c++}
header=${MMHIRE_PCH_HEADER:-}

# Only compiles of one C++ source (`-c`) are changed; linking and version queries pass through.
compiling=0
for arg in "$@"; do [ "$arg" = "-c" ] && compiling=1; done
if [ -z "$header" ] || [ "$compiling" = 0 ] || [ -z "${MMHIRE_PCH_DIR:-}" ]; then
    exec "$real" "$@"
fi

# The flags without what names this object: its source, its output and its dependency file.
flags=()
skip_next=0
for arg in "$@"; do
    if [ "$skip_next" = 1 ]; then skip_next=0; continue; fi
    case "$arg" in
        -c|-MMD|-MD) ;;
        -o|-MF|-MT|-MQ) skip_next=1 ;;
        *.cpp|*.cc|*.cxx) ;;
        *) flags+=("$arg") ;;
    esac
done

key=$(printf '%s\n' "$real" "${flags[@]}" | sha256sum | cut -c1-16)
dir="$MMHIRE_PCH_DIR/$key"
name=$(basename "$header")
if [ -f "$dir/$name.gch.failed" ]; then
    exec "$real" "$@"
fi
if [ ! -f "$dir/$name.gch" ]; then
    mkdir -p "$dir"
    # One process builds it while the other compiles wait; an atomic rename publishes it.
    exec 9>"$dir/.lock"
    flock 9
    if [ ! -f "$dir/$name.gch" ]; then
        cp "$header" "$dir/$name"
        if "$real" "${flags[@]}" -x c++-header "$dir/$name" -o "$dir/$name.gch.partial"; then
            mv "$dir/$name.gch.partial" "$dir/$name.gch"
        else
            # Not fatal: every compile then reads the plain header, as without this script.
            echo "cxx_with_pch: could not precompile $name; compiling without it" >&2
            rm -f "$dir/$name.gch.partial"
            : > "$dir/$name.gch.failed"
        fi
    fi
    flock -u 9
    exec 9>&-
fi
# First on the include path, so `#include "<name>"` finds the precompiled form (GCC looks for
# <name>.gch before <name> in each folder, and reads the copy beside it when it cannot use it).
exec "$real" -I"$dir" "$@"
