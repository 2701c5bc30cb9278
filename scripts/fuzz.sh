#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 15) on the stable toolchain (no sanitizer).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-15}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "fuzz: $t for ${secs}s"
    cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 \
        | grep -E '^(#[0-9]+ *(DONE|INITED)|Done|==|.*(panicked|ERROR|SUMMARY|crash-).*)' || true
    # grep hides libFuzzer's chatter; the exit status of cargo fuzz decides.
    if [ "${PIPESTATUS[0]}" -ne 0 ]; then
        echo "fuzz target $t FAILED (see fuzz/artifacts/$t)" >&2
        exit 1
    fi
done
