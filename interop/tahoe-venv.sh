#!/usr/bin/env bash
# Ensure a cached virtualenv holding stock tahoe-lafs (the interop oracle) exists, and print
# its path on stdout (everything else goes to stderr).
#
#   LAFS_TAHOE_VENV     venv location (default: ~/.cache/lafs/tahoe-venv)
#   LAFS_TAHOE_PYTHON   interpreter used to create it (default: python3; CPython 3.11 is known good)
#
# Idempotent: when the venv exists and `bin/tahoe --version` reports the pinned release, this
# only costs that one check (~1 s). Otherwise the venv is built in a temporary directory next
# to the final location and renamed into place, so an interrupted run never leaves behind a
# half-installed venv at the real path. Concurrent runs are serialised with flock(1).
set -euo pipefail

TAHOE_VERSION=1.20.0
VENV="${LAFS_TAHOE_VENV:-$HOME/.cache/lafs/tahoe-venv}"
PYTHON="${LAFS_TAHOE_PYTHON:-python3}"

log() { printf 'tahoe-venv: %s\n' "$*" >&2; }

# True when $1 is a usable venv with the pinned tahoe-lafs.
venv_ok() {
    local dir="$1" out
    [[ -x "$dir/bin/python" && -x "$dir/bin/tahoe" ]] || return 1
    out="$("$dir/bin/tahoe" --version 2>/dev/null)" || return 1
    [[ "$(head -n 1 <<<"$out")" == "tahoe-lafs/$TAHOE_VERSION" ]]
}

# Absolute path without requiring the final component to exist.
parent="$(dirname -- "$VENV")"
mkdir -p -- "$parent"
parent="$(cd -- "$parent" && pwd -P)"
VENV="$parent/$(basename -- "$VENV")"

if venv_ok "$VENV"; then
    printf '%s\n' "$VENV"
    exit 0
fi

# Slow path: take a lock so two concurrent runs don't both build (or fight over the rename).
exec 9>"$parent/.$(basename -- "$VENV").lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if venv_ok "$VENV"; then # someone else finished it while we waited
    printf '%s\n' "$VENV"
    exit 0
fi

staging="$(mktemp -d "$parent/.$(basename -- "$VENV").tmp.XXXXXX")"
chmod "$(printf '%o' $((0777 & ~$(umask))))" "$staging" # mktemp makes it 0700
retired=""
cleanup() {
    [[ -n "$staging" && -d "$staging" ]] && rm -rf -- "$staging"
    [[ -n "$retired" && -d "$retired" ]] && rm -rf -- "$retired"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "creating venv with tahoe-lafs==$TAHOE_VERSION (takes ~30 s) ..."
"$PYTHON" -m venv "$staging"
# --no-compile: byte-code compiled now would record the staging path in tracebacks; it is
# compiled after the rename instead.
"$staging/bin/python" -m pip install --disable-pip-version-check --no-input --no-compile -q \
    "tahoe-lafs==$TAHOE_VERSION" >&2

# A venv hard-codes its own absolute path (console-script shebangs, activate scripts,
# pyvenv.cfg). Point those at the final location before moving the tree there.
"$staging/bin/python" - "$staging" "$VENV" <<'EOF'
import os, sys
old, new = (os.fsencode(p) for p in sys.argv[1:3])
paths = [os.path.join(sys.argv[1], "pyvenv.cfg")]
bindir = os.path.join(sys.argv[1], "bin")
paths += [os.path.join(bindir, name) for name in os.listdir(bindir)]
for path in paths:
    if os.path.islink(path) or not os.path.isfile(path):
        continue
    with open(path, "rb") as f:
        data = f.read()
    if old in data:
        with open(path, "wb") as f:
            f.write(data.replace(old, new))
EOF

# Only now that the staged venv is complete does anything appear at (or leave) the real path.
if [[ -e "$VENV" || -L "$VENV" ]]; then
    log "replacing unusable venv at $VENV"
    retired="$(mktemp -d "$parent/.$(basename -- "$VENV").old.XXXXXX")"
    mv -T -- "$VENV" "$retired/venv"
fi
mv -T -- "$staging" "$VENV"
staging=""

if ! venv_ok "$VENV"; then
    log "ERROR: freshly built venv at $VENV does not report tahoe-lafs/$TAHOE_VERSION"
    exit 1
fi
"$VENV/bin/python" -m compileall -q "$VENV/lib" >/dev/null 2>&1 || true
log "ready"
printf '%s\n' "$VENV"
