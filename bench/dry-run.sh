#!/usr/bin/env bash
# Benchmarks `lafs put --dry-run` against `openssl dgst -sha256` on the same file, in the same
# run, and measures peak RSS on a large input.
# Usage: bench/dry-run.sh [SIZE_MIB=256] [BIG_MIB=2048] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib="${1:-256}"
big_mib="${2:-2048}"
runs="${3:-5}"
work="${TMPDIR:-/tmp}/lafs-bench-dry-run"
mkdir -p "$work"
cargo build --release -p lafs-cli --quiet
target_dir="${CARGO_TARGET_DIR:-target}"
lafs="$target_dir/release/lafs"

file="$work/input-${size_mib}M"
[ -f "$file" ] || head -c "$((size_mib << 20))" /dev/urandom > "$file"
cat "$file" > /dev/null   # page cache

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wall() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -1; }

echo "input: $size_mib MiB, $runs runs each, median wall seconds"
o=$(for _ in $(seq "$runs"); do wall openssl dgst -sha256 "$file" | cut -d' ' -f1; done | median)
l=$(for _ in $(seq "$runs"); do
    wall "$lafs" put --dry-run --convergence-secret-base32 aaaaaaaaaaaaaaaaaaaaaaaaaa "$file" | cut -d' ' -f1
done | median)
echo "openssl dgst -sha256: ${o}s"
echo "lafs put --dry-run:   ${l}s"
awk -v o="$o" -v l="$l" -v s="$size_mib" \
    'BEGIN {printf "ratio lafs/openssl: %.2fx   lafs throughput: %.0f MiB/s\n", l/o, s/l}'

big="$work/input-${big_mib}M"
[ -f "$big" ] || head -c "$((big_mib << 20))" /dev/zero > "$big"
r=$(wall "$lafs" put --dry-run --convergence-secret-base32 aaaaaaaaaaaaaaaaaaaaaaaaaa "$big")
echo "peak RSS for $big_mib MiB input: $(( ${r#* } / 1024 )) MiB (wall ${r% *}s)"
