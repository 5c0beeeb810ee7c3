#!/usr/bin/env bash
# check_transformers.sh - the library's attention against Hugging Face transformers.
#
# Builds the library and adamas-eval (tools/setup.sh build), makes a virtual
# environment with torch and transformers if none is there, exports a dump of a small
# randomly initialised LlamaForCausalLM (head_dim 128, 8 query heads, 2 kv heads,
# 4 layers, eager attention, 256 tokens) with tools/dump_qkv.py, and runs its --check:
# for every layer and head the library's full attention on the dump must match the
# attention output transformers computed within 1e-4 relative, and adamas-eval must run
# every selector on the dump.  Exits non-zero when the check fails.
#
# Environment:
#   BUILD_DIR       build directory (default: build)
#   LAB_VENV        virtual environment (default: ~/.cache/adamas-c/lab-venv)
#   LAB_PYTHON      a python3 that already has torch and transformers (skips the venv)
#   CHECK_ARGS      more arguments for dump_qkv.py (e.g. "--tokens 512 --device cuda")
#   PIP_INDEX_URL   as usual for pip, e.g. an index of CPU-only torch wheels
set -euo pipefail

case "${1:-}" in
-h | --help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*)
    echo "check_transformers.sh: takes no arguments (see --help)" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
start=$(date +%s)
say() { printf '== %s (%ds)\n' "$*" "$(($(date +%s) - start))"; }

build_dir=${BUILD_DIR:-build}
say "building $build_dir"
BUILD_DIR=$build_dir bash tools/setup.sh build >/dev/null
if ! [ -x "$build_dir/tools/adamas-eval" ]; then
    echo "check_transformers.sh: $build_dir/tools/adamas-eval was not built (libcjson missing?)" >&2
    exit 1
fi

# the versions the check was last seen passing with
torch_version=2.15.0
transformers_version=5.24.0

has_torch() { "$1" -c 'import torch, transformers, safetensors' 2>/dev/null; }

python=${LAB_PYTHON:-}
if [ -z "$python" ]; then
    venv=${LAB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/adamas-c/lab-venv}
    python=$venv/bin/python3
    if ! [ -x "$python" ] || ! has_torch "$python"; then
        say "installing torch and transformers into $venv (a few GB, once)"
        python3 -m venv "$venv"
        "$python" -m pip install -q --disable-pip-version-check \
            "torch==$torch_version" "transformers==$transformers_version"
    fi
fi
if ! has_torch "$python"; then
    echo "check_transformers.sh: $python cannot import torch, transformers and safetensors" >&2
    exit 1
fi
say "$("$python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "dump and check"
# shellcheck disable=SC2086  # CHECK_ARGS is a list of words
"$python" tools/dump_qkv.py --out "$tmp/random-llama.safetensors" --check \
    --eval "$build_dir/tools/adamas-eval" ${CHECK_ARGS:-}
say "passed"
