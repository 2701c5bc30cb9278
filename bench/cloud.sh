#!/usr/bin/env bash
# Benchmarks the cloud backend against the disk backend, side by side in one run:
#   1. put and get of SIZE_MIB through a 10-server grid (stock Tahoe 1.20 client, 3-of-10)
#      on the disk backend, on cloud.s3 with s3s-fs, and on cloud.s3 with Garage (if built),
#      reporting MB/s and the servers' peak RSS;
#   2. on each cloud target, MDMF on the same grid (shares ~MDMF_MIB/3): a new MDMF_MIB file
#      published on freshly restarted servers, then 1 MiB of it modified in the middle through
#      the web API (`PUT /uri/CAP?offset=`) and the whole file read back, again on freshly
#      restarted servers; peak server RSS of each step;
#   3. on each cloud target, one server (1-of-1, so the share is the whole file): a BIG_MIB
#      immutable file stored and read back, then the same MDMF steps as in 2 with a MDMF_MIB
#      share (stock publishes a new MDMF file with one read-test-write request per server
#      carrying the server's whole share; the frontend streams that body to a spool file).
# Usage: bench/cloud.sh [SIZE_MIB=256] [BIG_MIB=1024] [MDMF_MIB=100]
# Env: TARGETS (default "disk s3s garage", garage skipped when not built), CHUNK (s3.chunk_size,
#      default 512KiB), LAFS_BIN (a lafs binary to use instead of building one), LAFS_S3S_FS,
#      LAFS_GARAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/s3-lib.sh

size_mib="${1:-256}"
big_mib="${2:-1024}"
mdmf_mib="${3:-100}"
chunk="${CHUNK:-512KiB}"
work="${TMPDIR:-/tmp}/lafs-bench-cloud"
rm -rf "$work"
mkdir -p "$work"

if [ -n "${LAFS_BIN:-}" ]; then
    lafs="$(realpath "$LAFS_BIN")"
else
    cargo build --release -p lafs-cli --quiet
    lafs="$(realpath "${CARGO_TARGET_DIR:-target}")/release/lafs"
fi
venv="$(interop/tahoe-venv.sh)"
tahoe="$venv/bin/tahoe"
targets="${TARGETS:-disk s3s garage}"

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    stop_s3
}
trap cleanup EXIT

now() { date +%s.%N; }
rss_mib() { awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$1/status"; }

# start_grid DIR N K H TARGET: N lafs servers (buckets DIR-name-I for cloud targets) and a
# stock client K-of-N, happy H; sets SERVER_PIDS and CLIENT.
start_grid() {
    local dir="$1" n="$2" k="$3" h="$4" target="$5" i node listen ann="" web
    SERVER_PIDS=()
    mkdir -p "$dir"
    for i in $(seq 0 $((n - 1))); do
        node="$dir/lafs$i"
        listen="127.0.0.1:$(free_port)"
        "$lafs" init --storage --listen "$listen" --nickname "lafs$i" "$node" >/dev/null 2>&1
        if [ "$target" != disk ]; then
            local bucket
            bucket="$(basename "$dir")-$i"
            mkbucket "$bucket"
            python3 - "$node/tahoe.cfg" "$bucket" <<PY
import sys
p, bucket = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace("backend = disk\n", f"""backend = cloud.s3
s3.bucket = {bucket}
s3.url = $S3_URL
s3.region = $S3_REGION
s3.access_key_id = $S3_KEY
s3.chunk_size = $chunk
""", 1)
open(p, "w").write(s)
PY
            printf '%s' "$S3_SECRET" >"$node/private/s3secret"
        fi
        ann+="$("$lafs" storage announcement "$node" | sed 's/^/  /')"$'\n'
        NO_COLOR=1 "$lafs" run "$node" >"$node.log" 2>&1 &
        SERVER_PIDS+=("$!")
        PIDS+=("$!")
    done
    for i in $(seq 0 $((n - 1))); do
        local t
        for t in $(seq 600); do grep -q " listening on " "$dir/lafs$i.log" && break; sleep 0.05; done
        grep -q " listening on " "$dir/lafs$i.log" || { cat "$dir/lafs$i.log"; exit 1; }
    done
    CLIENT="$dir/client"
    web="$(free_port)"
    "$tahoe" create-client --webport="tcp:$web:interface=127.0.0.1" --shares-needed="$k" \
        --shares-happy="$h" --shares-total="$n" "$CLIENT" >/dev/null
    printf 'storage:\n%s' "$ann" >"$CLIENT/private/servers.yaml"
    "$tahoe" run --allow-stdin-close "$CLIENT" >"$CLIENT.log" 2>&1 &
    PIDS+=("$!")
    CLIENT_PID="$!"
    CLIENT_WEB="http://127.0.0.1:$web"
    wait_connected "$n"
}

wait_connected() { # N
    python3 - "$CLIENT_WEB" "$1" <<'PY'
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(600):
    try:
        j = json.load(urllib.request.urlopen(url + "/?t=json", timeout=2))
        if sum(s.get("connection_status") == "connected" for s in j["servers"]) == n:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit("client did not connect to all servers")
PY
}

# Restarts the grid's servers (a fresh process, so a fresh peak RSS), keeping the client.
restart_servers() { # DIR N
    local p i
    for p in "${SERVER_PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
    SERVER_PIDS=()
    PIDS=("$CLIENT_PID")
    for i in $(seq 0 $(($2 - 1))); do
        NO_COLOR=1 "$lafs" run "$1/lafs$i" >"$1/lafs$i.log" 2>&1 &
        SERVER_PIDS+=("$!")
        PIDS+=("$!")
    done
    for i in $(seq 0 $(($2 - 1))); do
        for p in $(seq 600); do grep -q " listening on " "$1/lafs$i.log" && break; sleep 0.05; done
    done
    sleep 2
    wait_connected "$2"
}

stop_grid() {
    cleanup_grid_pids=("${PIDS[@]}")
    local p
    for p in "${cleanup_grid_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${cleanup_grid_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

max_rss() {
    local p m=0 r
    for p in "${SERVER_PIDS[@]}"; do
        r="$(rss_mib "$p")"
        [ "$r" -gt "$m" ] && m="$r"
    done
    echo "$m"
}

# mdmf_steps DIR N: on the running grid (N servers in DIR), restart the servers, publish a new
# MDMF_MIB MDMF file (peak server RSS in RSS_CREATE); restart them again, rewrite 1 MiB in
# the middle through the web API and read the whole file back, checking it (RSS_UPDATE).
mdmf_steps() {
    local mcap
    head -c "$((mdmf_mib << 20))" /dev/urandom >"$work/mdmf"
    restart_servers "$1" "$2"
    mcap="$("$tahoe" -d "$CLIENT" put --format=MDMF "$work/mdmf")"
    RSS_CREATE="$(max_rss)"
    restart_servers "$1" "$2"
    python3 - "$CLIENT_WEB" "$mcap" "$((mdmf_mib << 19))" "$work/mdmf" <<'PY'
import os, sys, urllib.parse, urllib.request
web, cap, off, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
patch = os.urandom(1 << 20)
req = urllib.request.Request(f"{web}/uri/{urllib.parse.quote(cap)}?offset={off}", data=patch, method="PUT")
urllib.request.urlopen(req, timeout=600).read()
with open(path, "r+b") as f:
    f.seek(off)
    f.write(patch)
PY
    "$tahoe" -d "$CLIENT" get "$mcap" - | cmp -s - "$work/mdmf" || { echo "MDMF on $1 differs" >&2; exit 1; }
    rm -f "$work/mdmf"
    RSS_UPDATE="$(max_rss)"
}

start_target() { # TARGET
    case "$1" in
    disk) ;;
    s3s) start_s3s "$work/s3s-data" ;;
    garage) start_garage "$work/garage" ;;
    esac
}

input="$work/input-$size_mib"
head -c "$((size_mib << 20))" /dev/urandom >"$input"

results=()
big_results=()
mdmf_results=()
for target in $targets; do
    if [ "$target" = garage ] && [ ! -x "${LAFS_GARAGE:-$HOME/.cache/lafs/garage-root/bin/garage}" ]; then
        echo "garage not built: skipping it" >&2
        continue
    fi
    start_target "$target"
    echo "== $target: ${size_mib} MiB through 10 servers" >&2
    start_grid "$work/grid-$target" 10 3 7 "$target"
    t0="$(now)"
    cap="$("$tahoe" -d "$CLIENT" put "$input")"
    t1="$(now)"
    "$tahoe" -d "$CLIENT" get "$cap" "$work/out"
    t2="$(now)"
    cmp -s "$input" "$work/out" || { echo "$target: downloaded bytes differ" >&2; exit 1; }
    rm -f "$work/out"
    rss="$(max_rss)"
    rss_create=0
    rss_update=0
    if [ "$target" != disk ]; then
        mdmf_steps "$work/grid-$target" 10
        rss_create="$RSS_CREATE"
        rss_update="$RSS_UPDATE"
    fi
    results+=("$(awk -v t="$target" -v s="$size_mib" -v a="$t0" -v b="$t1" -v c="$t2" -v r="$rss" \
        'BEGIN {printf "| %s | %.1f MB/s (%.1f s) | %.1f MB/s (%.1f s) | %d MiB |", t, s*1.048576/(b-a), b-a, s*1.048576/(c-b), c-b, r}')")
    stop_grid

    if [ "$target" != disk ]; then
        echo "== $target: ${big_mib} MiB share on one server" >&2
        start_grid "$work/one-$target" 1 1 1 "$target"
        big="$work/big"
        head -c "$((big_mib << 20))" /dev/zero >"$big"
        t0="$(now)"
        cap="$("$tahoe" -d "$CLIENT" put "$big")"
        t1="$(now)"
        "$tahoe" -d "$CLIENT" get "$cap" - | cmp -s - "$big" || { echo "$target: big file differs" >&2; exit 1; }
        t2="$(now)"
        rm -f "$big"
        rss_big="$(max_rss)"
        mdmf_steps "$work/one-$target" 1
        big_results+=("$(awk -v t="$target" -v s="$big_mib" -v a="$t0" -v b="$t1" -v c="$t2" -v r="$rss_big" \
            'BEGIN {printf "| %s | %.1f MB/s | %.1f MB/s | %d MiB |", t, s*1.048576/(b-a), s*1.048576/(c-b), r}')")
        mdmf_results+=("$(printf '| %s | %d MiB | %d MiB | %d MiB | %d MiB |' "$target" \
            "$rss_create" "$rss_update" "$RSS_CREATE" "$RSS_UPDATE")")
        stop_grid
    fi
    stop_s3
done

echo
echo "put/get of $size_mib MiB, stock Tahoe 1.20 client, 3-of-10 on 10 lafs servers (chunk $chunk):"
echo "| backend | put | get | peak server RSS (max of 10) |"
echo "|---|---|---|---|"
printf '%s\n' "${results[@]}"
if [ "${#big_results[@]}" -gt 0 ]; then
    echo
    echo "cloud.s3: $big_mib MiB immutable file on one server (1-of-1, so the share is the whole file), put then get:"
    echo "| backend | $big_mib MiB put | get | server peak RSS |"
    echo "|---|---|---|---|"
    printf '%s\n' "${big_results[@]}"
    echo
    echo "cloud.s3: $mdmf_mib MiB MDMF published on freshly started servers, then 1 MiB rewritten in the middle and the whole file read back on freshly started servers; server peak RSS (max over the servers):"
    echo "| backend | 3-of-10 grid: publish | 3-of-10 grid: update + get | 1-of-1 ($mdmf_mib MiB share): publish | 1-of-1: update + get |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${mdmf_results[@]}"
fi
