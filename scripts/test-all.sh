#!/usr/bin/env bash
# Runs every lafs test, installing what the tests need first:
#   - stock Tahoe-LAFS 1.20 from PyPI in a cached virtualenv (interop cross-checks),
#   - s3s-fs 0.14.1, a small S3 server, built once into ~/.cache/lafs/s3s-root (cloud backend),
#   - headless Chromium (apt-get, when missing and running as root),
#   - cargo-fuzz (the fuzz targets run briefly).
# Needs: the Rust toolchain (cargo, rustfmt, clippy), python3 with venv, gcc.
# Environment: LAFS_TAHOE_VENV (venv path), LAFS_FUZZ_SECONDS (per target, default 15).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

export LAFS_TAHOE_VENV="${LAFS_TAHOE_VENV:-$HOME/.cache/lafs/tahoe-venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "stock Tahoe-LAFS 1.20 in $LAFS_TAHOE_VENV"
interop/tahoe-venv.sh

step "s3s-fs (S3 server for the cloud backend tests)"
LAFS_S3S_FS="$(interop/s3s-fs.sh)"
export LAFS_S3S_FS

step "headless Chromium (the storage web pages are rendered and screenshotted in a test)"
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && ! command -v google-chrome >/dev/null 2>&1 && [ -z "${LAFS_CHROMIUM:-}" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends chromium \
            || { apt-get update && apt-get install -y --no-install-recommends chromium; }
    else
        echo "Chromium is missing: install it (Debian/Ubuntu: sudo apt-get install chromium) or set LAFS_CHROMIUM" >&2
        exit 1
    fi
fi

step "cargo-fuzz"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz@0.13.2 --locked
fi

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "fuzz targets, ${LAFS_FUZZ_SECONDS:-15}s each"
scripts/fuzz.sh "${LAFS_FUZZ_SECONDS:-15}"

step "doc tests"
cargo test --workspace --doc --locked

step "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
