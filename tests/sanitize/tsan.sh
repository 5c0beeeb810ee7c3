#!/usr/bin/env bash
# tsan.sh - tests/sanitize/tsan_decode.c under ThreadSanitizer: several threads decoding
# from one cache at once, each step's OpenMP loops on 2 threads.
#
#   bash tests/sanitize/tsan.sh
#
# Built with clang outside meson into $BUILD_DIR (default build-tsan): the library's
# sources, the SIMD kernels, and OpenMP through LLVM's libomp, whose Archer tool tells
# TSan about OpenMP's own synchronization (libgomp would report false races).
# Installs clang and libomp-dev when missing (Debian; root or sudo).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-tsan}

bash tools/install-missing.sh tsan clang libclang-rt-14-dev libomp-14-dev

llvm=/usr/lib/llvm-14
mkdir -p "$build"
flags=(-std=gnu11 -g -O1 -Wall -Wextra -ffp-contract=off -D_POSIX_C_SOURCE=200809L
       -DADAMAS_HAVE_AVX2 -DADAMAS_HAVE_AVX512 -fopenmp=libomp -I"$llvm/include/openmp"
       -fsanitize=thread -Iadamas)
echo "== tsan: building $build/tsan_decode"
objs=()
for src in adamas/*.c simd/avx2.c simd/avx512.c tests/sanitize/tsan_decode.c; do
    obj=$build/$(echo "${src%.c}" | tr / _).o
    extra=()
    case $src in
    simd/avx2.c) extra=(-mavx2 -mfma -mf16c -mpopcnt) ;;
    simd/avx512.c) extra=(-mavx512f -mavx512bw -mavx512vl -mavx512dq) ;;
    esac
    clang "${flags[@]}" "${extra[@]}" -c "$src" -o "$obj" &
    objs+=("$obj")
done
wait
clang -fsanitize=thread -fopenmp=libomp -L"$llvm/lib" -Wl,-rpath,"$llvm/lib" "${objs[@]}" \
    -o "$build/tsan_decode" -lm -ldl -lpthread

echo "== tsan: running (OMP_NUM_THREADS=2, Archer)"
OMP_NUM_THREADS=2 OMP_TOOL_LIBRARIES=$llvm/lib/libarcher.so \
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 ignore_noninstrumented_modules=1 ${TSAN_OPTIONS:-}" "$build/tsan_decode"
