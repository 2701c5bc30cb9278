# Sourced by bench/cloud.sh and bench/garage.sh: start an S3-compatible server on loopback
# and create buckets on it. Each start_* function sets S3_URL, S3_REGION, S3_KEY, S3_SECRET
# and S3_KIND, and defines mkbucket NAME. Servers are stopped by stop_s3 (registered with
# the caller's EXIT trap).

S3_PIDS=()

stop_s3() {
    local p
    for p in "${S3_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${S3_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    S3_PIDS=()
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # PORT
    local i
    for i in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# s3s-fs (built by interop/s3s-fs.sh) with its data in $1.
start_s3s() {
    local root="$1" bin port
    bin="${LAFS_S3S_FS:-$(interop/s3s-fs.sh)}"
    mkdir -p "$root"
    port="$(free_port)"
    S3_KEY=lafs-bench-access
    S3_SECRET=lafs-bench-secret-0123456789
    "$bin" --host 127.0.0.1 --port "$port" --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
        "$root" >"$root.log" 2>&1 &
    S3_PIDS+=("$!")
    wait_port "$port"
    S3_URL="http://127.0.0.1:$port"
    S3_REGION=us-east-1
    S3_KIND=s3s-fs
    S3S_ROOT="$root"
    mkbucket() { mkdir -p "$S3S_ROOT/$1"; }
}

# Garage (~/.cache/lafs/garage-root/bin/garage, or LAFS_GARAGE), one node, data in $1.
start_garage() {
    local w="$1" port rpc out id
    GARAGE="${LAFS_GARAGE:-$HOME/.cache/lafs/garage-root/bin/garage}"
    [ -x "$GARAGE" ] || { echo "garage not found at $GARAGE" >&2; return 1; }
    mkdir -p "$w"
    port="$(free_port)"
    rpc="$(free_port)"
    cat >"$w/garage.toml" <<TOML
metadata_dir = "$w/meta"
data_dir = "$w/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
TOML
    GARAGE_CFG="$w/garage.toml"
    "$GARAGE" -c "$GARAGE_CFG" server >"$w/server.log" 2>&1 &
    S3_PIDS+=("$!")
    wait_port "$rpc"
    wait_port "$port"
    id="$("$GARAGE" -c "$GARAGE_CFG" node id -q 2>/dev/null | cut -d@ -f1)"
    "$GARAGE" -c "$GARAGE_CFG" layout assign -z dc1 -c 10G "$id" >/dev/null
    "$GARAGE" -c "$GARAGE_CFG" layout apply --version 1 >/dev/null
    out="$("$GARAGE" -c "$GARAGE_CFG" key create lafs-key)"
    S3_KEY="$(awk '/^Key ID:/ {print $3}' <<<"$out")"
    S3_SECRET="$(awk '/^Secret key:/ {print $3}' <<<"$out")"
    S3_URL="http://127.0.0.1:$port"
    S3_REGION=garage
    S3_KIND=garage
    mkbucket() {
        "$GARAGE" -c "$GARAGE_CFG" bucket create "$1" >/dev/null
        "$GARAGE" -c "$GARAGE_CFG" bucket allow --read --write --owner "$1" --key lafs-key >/dev/null
    }
}
