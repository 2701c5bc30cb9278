#!/usr/bin/env bash
# Client throughput and latency, side by side in one run: a 10-server loopback grid of stock
# Tahoe 1.20 (10 storage nodes + a stock client node) and one of lafs (10 `lafs run`
# storage nodes + a lafs client node), both 3-of-10, happy 7. Through each one's own CLI:
# put and get of a SIZE_MIB file (MB/s, client node peak RSS); through each web API (one
# persistent HTTP connection): COUNT puts and gets of 4 KiB files (ms per operation).
#
# Usage: bench/client.sh   (SIZE_MIB=256 COUNT=200; LAFS_BENCH_NO_BUILD=1 reuses binaries;
#        LAFS_ONLY=1 measures only the lafs grid, e.g. SIZE_MIB=2048 for the RSS bound)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB="${SIZE_MIB:-256}"
COUNT="${COUNT:-200}"
venv="$(interop/tahoe-venv.sh | tail -1)"
tahoe="$venv/bin/tahoe"
if [[ -z "${LAFS_BENCH_NO_BUILD:-}" ]]; then cargo build --release -q -p lafs-cli --bin lafs; fi
lafs="${CARGO_TARGET_DIR:-target}/release/lafs"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_file() { for _ in $(seq 900); do [[ -s "$1" ]] && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; return 1; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

echo "== building the grids" >&2
stock_entries="$work/stock-servers"; lafs_entries="$work/lafs-servers"; : >"$stock_entries"; : >"$lafs_entries"
stock=1; [[ -n "${LAFS_ONLY:-}" ]] && stock=
for i in $(seq 0 9); do
    p="$(free_port)"; w="$(free_port)"
    if [[ -n "$stock" ]]; then
    "$tahoe" create-node --port="tcp:$p:interface=127.0.0.1" --location="tcp:127.0.0.1:$p" \
        --webport="tcp:$w:interface=127.0.0.1" --nickname="stock$i" "$work/stock$i" >/dev/null
    "$tahoe" run --allow-stdin-close "$work/stock$i" >"$work/stock$i.log" 2>&1 & pids+=($!)
    fi
    p="$(free_port)"
    "$lafs" init --storage --listen "127.0.0.1:$p" --nickname "lafs$i" "$work/lafs$i" >/dev/null
    "$lafs" run "$work/lafs$i" >"$work/lafs$i.log" 2>&1 & pids+=($!)
done
for i in $(seq 0 9); do
    if [[ -n "$stock" ]]; then
    wait_file "$work/stock$i/private/storage.furl"
    "$lafs" storage announcement "$work/stock$i" | sed 's/^/  /' >>"$stock_entries"
    fi
    "$lafs" storage announcement "$work/lafs$i" | sed 's/^/  /' >>"$lafs_entries"
done
sw="$(free_port)"; lw="$(free_port)"
if [[ -n "$stock" ]]; then
"$tahoe" create-client --webport="tcp:$sw:interface=127.0.0.1" --shares-needed=3 --shares-happy=7 \
    --shares-total=10 "$work/stockc" >/dev/null
{ echo "storage:"; cat "$stock_entries"; } >"$work/stockc/private/servers.yaml"
fi
"$lafs" init --web "127.0.0.1:$lw" --shares-needed 3 --shares-happy 7 --shares-total 10 "$work/lafsc" >/dev/null
{ echo "storage:"; cat "$lafs_entries"; } >"$work/lafsc/private/servers.yaml"
if [[ -n "$stock" ]]; then
"$tahoe" run --allow-stdin-close "$work/stockc" >"$work/stockc.log" 2>&1 & spid=$!; pids+=($spid)
wait_file "$work/stockc/node.url"
fi
"$lafs" run "$work/lafsc" >"$work/lafsc.log" 2>&1 & lpid=$!; pids+=($lpid)
wait_file "$work/lafsc/node.url"
sleep 5   # let both clients connect to their servers
# Then wait (up to 120 s) until the nodes are idle: eleven Python processes starting up keep
# both cores busy for a while, which would be measured as part of whichever put comes first.
settle() {
    local ticks prev=-1 idle=0
    for _ in $(seq 120); do
        ticks=0
        for p in "${pids[@]}"; do
            [[ -r "/proc/$p/stat" ]] && ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat")))
        done
        # Under 5 ticks (50 ms of CPU) per second across all nodes: idle.
        if (( prev >= 0 && ticks - prev < 5 )); then idle=$((idle + 1)); else idle=0; fi
        (( idle >= 3 )) && return 0
        prev=$ticks; sleep 1
    done
    echo "nodes still busy after 120 s; measuring anyway" >&2
}
t_settle=$(date +%s); settle; echo "== nodes idle after $(( $(date +%s) - t_settle )) s" >&2

head -c "$((SIZE_MIB << 20))" /dev/urandom >"$work/big"
echo "== $(date -u +%FT%TZ) $(nproc) cores; ${SIZE_MIB} MiB file; ${COUNT} x 4 KiB"
timed() { local t0 t1; t0=$(date +%s.%N); "$@" >"$work/out.txt"; t1=$(date +%s.%N); echo "$t0 $t1" | awk -v mib="$SIZE_MIB" '{printf "%.1f", mib*1048576/($2-$1)/1e6}'; }
echo 5 >"/proc/$lpid/clear_refs" 2>/dev/null || true
l_put=$(timed "$lafs" -d "$work/lafsc" put "$work/big"); l_cap=$(tail -1 "$work/out.txt")
l_put_rss=$(( $(hwm_kib "$lpid") / 1024 )); echo 5 >"/proc/$lpid/clear_refs" 2>/dev/null || true
l_get=$(timed "$lafs" -d "$work/lafsc" get "$l_cap" "$work/big.lafs")
cmp "$work/big" "$work/big.lafs"
l_get_rss=$(( $(hwm_kib "$lpid") / 1024 )); l_rss=$(( l_put_rss > l_get_rss ? l_put_rss : l_get_rss ))
echo "lafs client node peak RSS: put ${l_put_rss} MiB, get ${l_get_rss} MiB" >&2
small_ops() {   # COUNT puts then gets of 4 KiB through each given web API; prints ms/op
"$venv/bin/python" - "$COUNT" "$@" <<'PY'
import http.client, os, sys, time, urllib.parse
def run(url, n):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port)
    caps, t = [], time.perf_counter()
    for i in range(n):
        c.request("PUT", "/uri", body=os.urandom(4096))
        r = c.getresponse(); caps.append(r.read().decode().strip()); assert r.status in (200, 201), r.status
    put = (time.perf_counter() - t) / n * 1000
    t = time.perf_counter()
    for cap in caps:
        c.request("GET", "/uri/" + urllib.parse.quote(cap)); r = c.getresponse(); assert len(r.read()) == 4096
    get = (time.perf_counter() - t) / n * 1000
    return put, get
res = [run(url, int(sys.argv[1])) for url in sys.argv[2:]]
for label, i in (("4 KiB put (ms/op)", 0), ("4 KiB get (ms/op)", 1)):
    vals = [r[i] for r in res]
    ratio = f" {vals[0] / vals[1]:6.1f}x" if len(vals) == 2 else ""
    print(f"{label:28}" + "".join(f" {v:10.1f}" for v in vals) + ratio)
PY
}
if [[ -z "$stock" ]]; then
    printf '%-28s %10s\n' "" lafs
    printf '%-28s %10s\n' "put ${SIZE_MIB} MiB (MB/s)" "$l_put" "get ${SIZE_MIB} MiB (MB/s)" "$l_get" \
        "client peak RSS (MiB)" "$l_rss"
    small_ops "$(cat "$work/lafsc/node.url")"
    exit 0
fi
s_put=$(timed "$tahoe" -d "$work/stockc" put "$work/big"); s_cap=$(tail -1 "$work/out.txt")
s_get=$(timed "$tahoe" -d "$work/stockc" get "$s_cap" "$work/big.stock")
cmp "$work/big" "$work/big.stock"
[[ "$s_cap" == "$l_cap" ]] && same="identical caps" || same="caps differ"
s_rss=$(( $(hwm_kib "$spid") / 1024 ))
printf '%-28s %10s %10s %7s\n' "" stock lafs ratio
printf '%-28s %10s %10s %6.1fx\n' "put ${SIZE_MIB} MiB (MB/s)" "$s_put" "$l_put" "$(echo "$l_put / $s_put" | bc -l)"
printf '%-28s %10s %10s %6.1fx\n' "get ${SIZE_MIB} MiB (MB/s)" "$s_get" "$l_get" "$(echo "$l_get / $s_get" | bc -l)"
printf '%-28s %10s %10s   (%s)\n' "client peak RSS (MiB)" "$s_rss" "$l_rss" "$same"
small_ops "$(cat "$work/stockc/node.url")" "$(cat "$work/lafsc/node.url")"
