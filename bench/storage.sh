#!/usr/bin/env bash
# GBS storage-server load, side by side in one run: one lafs storage server and one stock
# Tahoe 1.20 storage node on loopback, each driven by the same Rust load generator
# (crates/lafs-client/examples/gbs_load.rs): bulk allocate+PATCH and 1 MiB range GETs
# (MB/s), small shares (operations/s), and each server's peak RSS (VmHWM).
#
# Usage: bench/storage.sh            (BULK_MIB=256 SMALL=1000 PARALLEL=8 by default;
#                                    LAFS_BENCH_NO_BUILD=1 uses the binaries already built)
set -euo pipefail
cd "$(dirname "$0")/.."
BULK_MIB="${BULK_MIB:-256}"
SMALL="${SMALL:-1000}"
PARALLEL="${PARALLEL:-8}"
venv="$(interop/tahoe-venv.sh | tail -1)"
if [[ -z "${LAFS_BENCH_NO_BUILD:-}" ]]; then
    cargo build --release -q -p lafs-cli --bin lafs
    cargo build --release -q -p lafs-client --example gbs_load
fi
target="${CARGO_TARGET_DIR:-target}/release"
lafs="$target/lafs"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# lafs storage server.
lport="$(free_port)"
"$lafs" init --storage --listen "127.0.0.1:$lport" --nickname lafs "$work/lafs" >/dev/null
"$lafs" run "$work/lafs" >"$work/lafs.log" 2>&1 &
lpid=$!; pids+=("$lpid")
# Stock storage node.
sport="$(free_port)"; wport="$(free_port)"
"$venv/bin/tahoe" create-node --port="tcp:$sport:interface=127.0.0.1" --location="tcp:127.0.0.1:$sport" \
    --webport="tcp:$wport:interface=127.0.0.1" --nickname=stock "$work/stock" >/dev/null
"$venv/bin/tahoe" run --allow-stdin-close "$work/stock" >"$work/stock.log" 2>&1 &
spid=$!; pids+=("$spid")
wait_port "$lport"; wait_port "$sport"
for _ in $(seq 600); do [[ -s "$work/stock/private/storage.furl" ]] && break; sleep 0.1; done

# servers.yaml: `lafs storage announcement` reads both node directories (stock's too).
{
    echo "storage:"
    for d in lafs stock; do "$lafs" storage announcement "$work/$d" | sed 's/^/  /'; done
} >"$work/servers.yaml"

echo "== $(date -u +%FT%TZ) $(nproc) cores; bulk ${BULK_MIB} MiB in 16 MiB shares, ${SMALL} x 4 KiB shares, ${PARALLEL} in parallel"
"$target/examples/gbs_load" "$work/servers.yaml" --bulk-mib "$BULK_MIB" --small "$SMALL" --parallel "$PARALLEL" | tee "$work/results.jsonl"
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status"; }
# Stock runs as a child of `tahoe run`: report the largest process of its tree.
stock_hwm=0
for p in $spid $(pgrep -P "$spid" || true); do
    v="$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"
    (( v > stock_hwm )) && stock_hwm=$v
done
echo "peak RSS: lafs $(hwm "$lpid"); stock $((stock_hwm / 1024)) MiB"
python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["server"], r["phase"]): r for r in rows}
for phase, key, unit in [("bulk_write", "mb_per_s", "MB/s"), ("bulk_read", "mb_per_s", "MB/s"),
                         ("small_write", "ops_per_s", "ops/s"), ("small_read", "ops_per_s", "ops/s")]:
    l, s = by[("lafs", phase)][key], by[("stock", phase)][key]
    print(f"{phase:12} lafs {l:9.1f} {unit:5}  stock {s:9.1f} {unit:5}  ratio {l / s:5.1f}x")
PY
