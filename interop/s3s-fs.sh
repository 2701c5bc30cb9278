#!/usr/bin/env bash
# Ensure a cached s3s-fs binary (a small S3-compatible server that stores objects as files and
# checks SigV4 request signatures) exists, and print its path on stdout (everything else goes
# to stderr). The cloud backend's conformance, fault and grid tests run against it.
#
#   LAFS_S3S_ROOT   install root (default: ~/.cache/lafs/s3s-root); the binary is $ROOT/bin/s3s-fs
#
# Idempotent: when the cached binary exists and reports the pinned version this costs one
# exec. Otherwise it is built with `cargo install` (about 4 minutes on 2 cores) into a
# temporary root and moved into place, so an interrupted build never leaves a broken binary
# at the real path. Concurrent runs are serialised with flock(1).
set -euo pipefail

S3S_VERSION=0.14.1
ROOT="${LAFS_S3S_ROOT:-$HOME/.cache/lafs/s3s-root}"

log() { printf 's3s-fs: %s\n' "$*" >&2; }

bin_ok() {
    local bin="$1/bin/s3s-fs" out
    [[ -x "$bin" ]] || return 1
    out="$("$bin" --version 2>/dev/null)" || return 1
    [[ "$out" == *"$S3S_VERSION"* ]]
}

parent="$(dirname -- "$ROOT")"
mkdir -p -- "$parent"
parent="$(cd -- "$parent" && pwd -P)"
ROOT="$parent/$(basename -- "$ROOT")"

if bin_ok "$ROOT"; then
    printf '%s\n' "$ROOT/bin/s3s-fs"
    exit 0
fi

exec 9>"$parent/.$(basename -- "$ROOT").lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if bin_ok "$ROOT"; then
    printf '%s\n' "$ROOT/bin/s3s-fs"
    exit 0
fi

staging="$(mktemp -d "$parent/.$(basename -- "$ROOT").tmp.XXXXXX")"
cleanup() { [[ -n "$staging" && -d "$staging" ]] && rm -rf -- "$staging"; return 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building s3s-fs $S3S_VERSION with cargo install (takes ~4 min) ..."
# A private target dir so this build never contends with the workspace's lock.
CARGO_TARGET_DIR="$staging/target" cargo install "s3s-fs@$S3S_VERSION" --features binary \
    --locked --root "$staging/root" >&2
mkdir -p -- "$ROOT/bin"
mv -f -- "$staging/root/bin/s3s-fs" "$ROOT/bin/s3s-fs"

if ! bin_ok "$ROOT"; then
    log "ERROR: freshly built $ROOT/bin/s3s-fs does not report version $S3S_VERSION"
    exit 1
fi
log "ready"
printf '%s\n' "$ROOT/bin/s3s-fs"
