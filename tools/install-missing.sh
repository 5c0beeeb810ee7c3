#!/usr/bin/env bash
# install-missing.sh - install the Debian packages named that are not installed yet.
#
#   bash tools/install-missing.sh WHO PACKAGE...
#
# WHO names the caller in the progress line ("== WHO: installing ...").  Runs apt-get
# as root, or through sudo; does nothing when every package is there.  The scripts of
# this tree (setup.sh, the fuzz, sanitizer and NEON steps) install through it.
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && exit 0 || exit 2
fi
who=$1
shift

missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "$who: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
}
echo "== $who: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
