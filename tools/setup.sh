#!/usr/bin/env bash
# setup.sh - install what is missing, build, and run the demo or the test suite.
#
#   bash tools/setup.sh demo   Debian packages for the library, build, run `adamas demo`,
#                              then the reference model (tools/model/adamas-ref.gguf) in
#                              adamas-run: 200 bytes of C, and a passkey at 4K tokens
#   bash tools/setup.sh test   the test packages too, build, run the whole test suite
#   bash tools/setup.sh build  packages and build only
#
# Idempotent: a second run installs nothing and rebuilds only what changed.
# Environment:
#   BUILD_DIR         build directory (default: build)
#   MESON_SETUP_ARGS  extra arguments for `meson setup` (e.g. --werror)
#   DEMO_ARGS         arguments for `adamas demo` (default: none, the built-in workload)
set -euo pipefail

mode=${1:-demo}
case "$mode" in
demo | test | build) ;;
-h | --help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "setup.sh: unknown mode '$mode' (demo, test or build)" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
meson_min=1.1              # meson.options needs 1.1
meson_pinned=1.6.1         # installed from PyPI when Debian's meson is older

say() { printf '== %s\n' "$*"; }

# --------------------------------------------------------------- packages
packages=(gcc libc6-dev pkg-config ninja-build python3 python3-venv ca-certificates
          libopenblas-dev libsleef-dev libcjson-dev)
if [ "$mode" = test ]; then
    packages+=(libcriterion-dev)
fi

bash tools/install-missing.sh setup.sh "${packages[@]}"

# ------------------------------------------------------------------ meson
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

meson=""
if command -v meson >/dev/null && version_ge "$(meson --version)" "$meson_min"; then
    meson=$(command -v meson)
else
    venv=${XDG_CACHE_HOME:-$HOME/.cache}/adamas-c/meson-venv
    if ! [ -x "$venv/bin/meson" ] || ! version_ge "$("$venv/bin/meson" --version)" "$meson_min"; then
        say "installing meson $meson_pinned into $venv (Debian's is older than $meson_min)"
        python3 -m venv "$venv"
        "$venv/bin/python3" -m pip install -q --disable-pip-version-check "meson==$meson_pinned"
    fi
    meson=$venv/bin/meson
fi

# ------------------------------------------------------------------ build
# shellcheck disable=SC2086  # MESON_SETUP_ARGS is a list of words
if [ -f "$build_dir/build.ninja" ]; then
    "$meson" setup --reconfigure "$build_dir" ${MESON_SETUP_ARGS:-} >/dev/null
else
    say "configuring $build_dir"
    "$meson" setup "$build_dir" ${MESON_SETUP_ARGS:-}
fi
say "building $build_dir"
"$meson" compile -C "$build_dir"

# -------------------------------------------------------------------- run
case "$mode" in
demo)
    say "adamas demo"
    # shellcheck disable=SC2086
    "$build_dir/tools/adamas" demo ${DEMO_ARGS:-}
    # the shipped reference model (14 M parameters, trained on the Linux kernel's C):
    # prefill with dense attention, decode through Adamas (budget 128) in 26 of 28 layers
    model=tools/model/adamas-ref.gguf
    say "adamas-run generate: 200 bytes of C from $model, Adamas B=128"
    "$build_dir/tools/adamas-run" generate -m "$model" -n 200 --select adamas --budget 128 \
        --temperature 0.7 --top-p 0.9 --seed 1 \
        --prompt $'/* Free every entry of the list and the list itself. */\nstatic void list_free(struct list *list)\n{\n'
    say "adamas-run passkey: a key in 2K tokens of tools/llama.c, full attention and Adamas B=128"
    "$build_dir/tools/adamas-run" passkey -m "$model" --ctx 2048 --filler tools/llama.c \
        --needle c --depths 0.2,0.5,0.8 --trials 1 --select full,adamas --budget 128
    ;;
test)
    say "test suite"
    "$meson" test -C "$build_dir" --print-errorlogs
    ;;
esac
