#!/usr/bin/env bash
# Benchmarks the accounting crawler over synthetic shares on disk: the first crawl (adopting
# everything into an empty lease database), a steady-state crawl, resumption after a restart
# mid-cycle, and uploads with and without the throttled crawler beside them; peak RSS.
# Usage: bench/crawl.sh [SHARES=1000000] [PER_SI=4] [LOAD_SECONDS=20]
# The shares are generated once under $TMPDIR/lafs-bench-crawl and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
shares="${1:-1000000}"
per_si="${2:-4}"
load="${3:-20}"
work="${TMPDIR:-/tmp}/lafs-bench-crawl"
mkdir -p "$work"
cargo build --release -p lafs-storage --example crawl_bench --quiet
target_dir="${CARGO_TARGET_DIR:-target}"
/usr/bin/time -f 'process: wall %e s, user %U s, sys %S s, peak RSS %M KiB' \
    "$target_dir/release/examples/crawl_bench" "$work" "$shares" "$per_si" "$load"
