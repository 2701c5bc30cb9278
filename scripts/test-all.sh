#!/usr/bin/env bash
# Runs every lafs test, installing what the tests need first:
#   - stock Tahoe-LAFS 1.20 from PyPI in a cached virtualenv (interop cross-checks),
#   - s3s-fs 0.14.1, a small S3 server, built once into ~/.cache/lafs/s3s-root (cloud backend),
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
