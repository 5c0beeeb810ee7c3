#!/usr/bin/env bash
# run.sh - build the libFuzzer targets with clang and run them.
#
#   bash tests/fuzz/run.sh [SECONDS [TARGET...]]
#
# Targets: gguf (the GGUF reader, the tokenizer and the model loader of adamas-run),
# dump (the safetensors attention-dump reader) and api (the public API with arbitrary
# sizes, selectors, budgets and values).  Each is built with
# -fsanitize=fuzzer,address,undefined into $BUILD_DIR (default build-fuzz), outside
# meson, so that the main gcc build is untouched.  First every input under
# tests/fuzz/regress/TARGET is replayed (inputs that once crashed), then each target
# fuzzes for SECONDS (default 30) from its seeds in tests/fuzz/corpus/TARGET and the
# inputs it found in earlier runs ($BUILD_DIR/corpus/TARGET).  A crash stops the script
# with the input saved under $BUILD_DIR/artifacts/TARGET/.
#
# Installs clang, its runtime libraries and libcjson when missing (Debian; root or
# sudo).  Environment: BUILD_DIR, CC (default clang), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf dump api)

cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-fuzz}
cc=${CC:-clang}

say() { printf '== fuzz: %s\n' "$*"; }

# --------------------------------------------------------------- packages
packages=(clang libclang-rt-14-dev libcjson-dev)
bash tools/install-missing.sh fuzz "${packages[@]}"

# ------------------------------------------------------------------ build
# Objects are rebuilt when their source or any header is newer.
mkdir -p "$build/obj"
common=(-std=gnu11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wno-unknown-pragmas
        -ffp-contract=off -D_POSIX_C_SOURCE=200809L -DADAMAS_HAVE_AVX2 -DADAMAS_HAVE_AVX512
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
        -Iadamas -Itools)
newest_header=$(find adamas simd tools tests/fuzz -name '*.h' -printf '%T@\n' | sort -n | tail -1)

compile() { # source [flags...]
    local src=$1 obj
    shift
    obj=$build/obj/$(echo "${src%.c}" | tr / _).o
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] ||
        [ "$(stat -c %Y "$obj")" -lt "${newest_header%.*}" ]; then
        "$cc" "${common[@]}" "$@" -c "$src" -o "$obj"
    fi
    echo "$obj"
}

say "building in $build with $cc"
lib=()
for src in adamas/*.c; do lib+=("$(compile "$src")"); done
lib+=("$(compile simd/avx2.c -mavx2 -mfma -mf16c -mpopcnt)")
lib+=("$(compile simd/avx512.c -mavx512f -mavx512bw -mavx512vl -mavx512dq)")
gguf_objs=()
for src in tools/gguf.c tools/tokenizer.c tools/unicode_classes.c tools/llama.c; do
    gguf_objs+=("$(compile "$src")")
done
dump_objs=("$(compile tools/dump.c)")

link() { # target objects...
    local target=$1
    shift
    "$cc" -fsanitize=fuzzer,address,undefined "$@" -o "$build/fuzz_$target" -lcjson -lm -ldl -lpthread
}
link gguf "$(compile tests/fuzz/fuzz_gguf.c)" "${gguf_objs[@]}" "${lib[@]}"
link dump "$(compile tests/fuzz/fuzz_dump.c)" "${dump_objs[@]}" "${lib[@]}"
link api "$(compile tests/fuzz/fuzz_api.c)" "${lib[@]}"

# -------------------------------------------------------------------- run
# allocations that fail return NULL (the code under test must cope), leaks are errors
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${targets[@]}"; do
    exe=$build/fuzz_$t
    [ -x "$exe" ] || { echo "run.sh: no target $t" >&2; exit 2; }
    regress=tests/fuzz/regress/$t
    if [ -d "$regress" ] && [ -n "$(ls -A "$regress")" ]; then
        say "$t: replaying $(ls "$regress" | wc -l) inputs of $regress"
        "$exe" -runs=1 "$regress"/* >"$build/replay-$t.log" 2>&1 ||
            { tail -n 40 "$build/replay-$t.log" >&2; exit 1; }
    fi
    work=$build/corpus/$t
    mkdir -p "$work" "$build/artifacts/$t"
    say "$t: fuzzing for $seconds s"
    # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
    "$exe" -max_total_time="$seconds" -max_len=16384 -len_control=20 -rss_limit_mb=2048 -timeout=20 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" \
        $( [ -f "tests/fuzz/$t.dict" ] && echo "-dict=tests/fuzz/$t.dict" ) \
        ${FUZZ_ARGS:-} "$work" "tests/fuzz/corpus/$t" 2>&1 |
        grep -E '^(#[0-9]+ +(DONE|INITED)|stat::|==[0-9]+==|SUMMARY|Done)|ERROR|runtime error|Test unit written' || true
    # the pipeline hides libFuzzer's status: a saved crash input fails the run
    if [ -n "$(ls -A "$build/artifacts/$t")" ]; then
        echo "run.sh: $t found a failing input: $(ls "$build/artifacts/$t")" >&2
        exit 1
    fi
done
say "passed"
