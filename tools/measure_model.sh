#!/usr/bin/env bash
# measure_model.sh - the README's measurements of the reference model with adamas-run.
#
#   bash tools/measure_model.sh perplexity   bits per byte against budget, every selector,
#                                            16K context, 8 windows of the held-out text
#   bash tools/measure_model.sh passkey      retrieval against context and depth
#   bash tools/measure_model.sh speed        prefill and decode tokens/s against context
#   bash tools/measure_model.sh all          the three (about 35 minutes on 2 cores)
#
# Each run writes its JSON (adamas-run --json) and a .meta file (command, date, commit,
# `uptime` before and after, seconds) to $RESULTS (default build-model/results); then
#   python3 tools/plot_model.py collect $RESULTS   docs/model_{perplexity,passkey,speed}.json
#   python3 tools/plot_model.py plot               docs/model_*.png
# Environment: BUILD_DIR (default build-model, a release build), HELDOUT (default
# build-train/corpus/heldout.txt: `python3 tools/train/train.py prepare --out
# build-train/corpus` makes it from Debian's linux-source-6.1), THREADS (default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
what=${1:-all}
build=${BUILD_DIR:-build-model}
results=${RESULTS:-build-model/results}
heldout=${HELDOUT:-build-train/corpus/heldout.txt}
threads=${THREADS:-2}
run=$build/tools/adamas-run
case "$what" in
perplexity | passkey | speed | all) ;;
*)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
for f in "$run" "$heldout"; do
    [ -e "$f" ] || { echo "measure_model.sh: $f is missing (see --help)" >&2; exit 1; }
done
mkdir -p "$results"

# measure NAME ARGS...: adamas-run ARGS --json $results/NAME.json, with its .meta
measure() {
    local name=$1
    shift
    local meta=$results/$name.meta t0
    t0=$(date +%s)
    {
        echo "command: adamas-run $* --threads $threads"
        echo "date: $(date -Is)"
        echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "uptime before: $(uptime)"
    } >"$meta"
    echo "== $name: adamas-run $* --threads $threads"
    "$run" "$@" --threads "$threads" --json "$results/$name.json" | tee "$results/$name.txt"
    {
        echo "uptime after: $(uptime)"
        echo "seconds: $(($(date +%s) - t0))"
    } >>"$meta"
}

if [ "$what" = perplexity ] || [ "$what" = all ]; then
    measure perplexity-16k perplexity "$heldout" --ctx 16384 --tail 128 --windows 8 \
        --select full,adamas,adamas:0,adamas-calibrated,adamas-rerank4,quest,streaming,oracle \
        --budget 32,64,128,256,512,1024
fi
if [ "$what" = passkey ] || [ "$what" = all ]; then
    for ctx in 1024 4096 8192 16384; do
        trials=2
        [ "$ctx" -ge 8192 ] && trials=1 # a prefill per trial: 40 s at 16K on 2 cores
        measure "passkey-$ctx" passkey --ctx "$ctx" --filler "$heldout" --needle c \
            --depths 0.1,0.3,0.5,0.7,0.9 --trials "$trials" \
            --select full,adamas,adamas:0,adamas-calibrated,adamas-rerank4,quest,streaming,oracle \
            --budget 128
    done
fi
if [ "$what" = speed ] || [ "$what" = all ]; then
    for ctx in 1024 2048 4096 8192 16384 32768; do
        measure "speed-$ctx" perplexity "$heldout" --ctx "$ctx" --tail 64 --windows 1 \
            --select full,adamas --dense-layers 2,0 --budget 128
    done
fi
