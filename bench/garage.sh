#!/usr/bin/env bash
# The real-world check of the cloud backend on Garage 2.5 (a production S3 store), not run in
# CI: starts a one-node Garage on loopback, runs the cloud grid test against it (ten lafs
# servers on cloud.s3, stock Tahoe client, 0 B .. 100 MiB, MDMF), then bench/cloud.sh on
# Garage alone (pass TARGETS="disk s3s garage" to bench/cloud.sh for the side-by-side run).
# Usage: bench/garage.sh [SIZE_MIB=256] [BIG_MIB=1024] [MDMF_MIB=100]
# Needs ~/.cache/lafs/garage-root/bin/garage (or LAFS_GARAGE):
#   cargo install garage@2.5.0 --locked --root ~/.cache/lafs/garage-root   (~19 min)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/s3-lib.sh
trap stop_s3 EXIT

work="${TMPDIR:-/tmp}/lafs-garage-grid"
rm -rf "$work"
start_garage "$work"
for i in $(seq 0 9); do mkbucket "lafs-$i"; done
echo "==> cloud grid test on Garage at $S3_URL" >&2
LAFS_CLOUD_GRID_S3="$S3_URL $S3_REGION $S3_KEY $S3_SECRET" \
    cargo test --release -p lafs-cli --test cloud_grid -- --nocapture
stop_s3

echo "==> benchmark on Garage" >&2
TARGETS="${TARGETS:-garage}" bench/cloud.sh "$@"
