#!/usr/bin/env bash
# valgrind.sh - the command-line tools under valgrind's memcheck on small inputs; any
# error (invalid read or write, use of uninitialised values, a definite leak) fails the
# run.  Possible leaks are not counted: libgomp's pool threads are never joined, and
# their thread-local blocks show as possibly lost at exit.
#
#   bash tests/sanitize/valgrind.sh [BUILD_DIR]
#
# BUILD_DIR (default build) holds the tools built by tools/setup.sh.  Valgrind does not
# decode AVX-512 instructions, so the programs run with ADAMAS_ISA=avx2 (the AVX2
# kernels, which valgrind emulates; the scalar kernels are the same code paths minus
# the intrinsics), and OpenBLAS is held to its Haswell kernels for the same reason.
# Installs valgrind when missing (Debian; root or sudo).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build}}

bash tools/install-missing.sh valgrind valgrind

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ADAMAS_ISA=avx2 OPENBLAS_CORETYPE=Haswell OMP_NUM_THREADS=2
vg=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --track-origins=yes)

check() { # description command...
    local what=$1
    shift
    local start=$SECONDS
    local st=0
    "${vg[@]}" "$@" >"$tmp/out" 2>"$tmp/err" || st=$?
    if [ $st -ne 0 ]; then
        echo "valgrind.sh: $what: errors or a failure (exit status $st)" >&2
        cat "$tmp/err" >&2
        exit 1
    fi
    echo "== valgrind: $what: 0 errors ($((SECONDS - start)) s)"
}

check "adamas demo" "$build/tools/adamas" demo --tokens 600 --heads 4 --kv-heads 2 --dim 64 \
    --budgets 64,128 --reps 1
if [ -x "$build/tools/adamas-gen" ]; then
    check "adamas-gen" "$build/tools/adamas-gen" "$tmp/tiny.safetensors" --layers 2 --tokens 300 \
        --heads 4 --kv-heads 2 --dim 32 --dtype bf16
    check "adamas-eval" "$build/tools/adamas-eval" "$tmp/tiny.safetensors" --budgets 32,64 \
        --steps 3 --save-full "$tmp/full.safetensors" --json "$tmp/eval.json"
fi
head -c 3000 tools/llama.c >"$tmp/text.c"
model=tools/model/adamas-ref.gguf
check "adamas-run generate" "$build/tools/adamas-run" generate -m "$model" -n 4 --ctx 64 \
    --prompt 'int main(void)' --temperature 0.7 --seed 1 --select adamas-calibrated --budget 16
# every selector on a tiny Q8_0 model (the fuzz seed of tests/fuzz/make_seeds.py)
for _ in $(seq 40); do printf '!"!!""' ; done >"$tmp/tiny.txt" # bytes of its 4 tokens
check "adamas-run perplexity" "$build/tools/adamas-run" perplexity "$tmp/tiny.txt" \
    -m tests/fuzz/corpus/gguf/llama_q8 --ctx 48 --tail 8 --windows 1 --dense-layers 0 \
    --select adamas,adamas-rerank4,quest,streaming,oracle,full --budget 17 --kv f32
# a broken model is refused without errors either
head -c 100000 "$model" >"$tmp/cut.gguf"
if "${vg[@]}" "$build/tools/adamas-run" generate -m "$tmp/cut.gguf" -n 1 >/dev/null 2>"$tmp/err"; then
    echo "valgrind.sh: a truncated model was accepted" >&2
    exit 1
elif [ $? -eq 99 ]; then
    cat "$tmp/err" >&2
    exit 1
fi
echo "== valgrind: adamas-run on a truncated model: refused, 0 errors"
