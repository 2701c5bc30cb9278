#!/usr/bin/env bash
# Erasure coding, 3-of-10 with 1 MiB segments, one core: stock zfec (Python, C core) and
# every lafs-fec kernel, in the same run. Needs the stock venv (interop/tahoe-venv.sh).
# Usage: bench/fec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(interop/tahoe-venv.sh | tail -1)"
echo "== zfec $("$venv/bin/python" -c 'import zfec; print(zfec.__version__)') (stock Tahoe's codec)"
"$venv/bin/python" - <<'PY'
import os, time, zfec
k, n, seg = 3, 10, 1048578
blocks = [os.urandom(seg // k) for _ in range(k)]
enc = zfec.Encoder(k, n)
dec = zfec.Decoder(k, n)
def best(f, reps=20):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
t = best(lambda: enc.encode(blocks))
print(f"zfec encode 3-of-10: {seg / t / 1e6:.0f} MB/s of input")
shares = enc.encode(blocks)
t = best(lambda: dec.decode([shares[7], shares[8], shares[9]], [7, 8, 9]))
print(f"zfec decode 3-of-10 from shares 7,8,9: {seg / t / 1e6:.0f} MB/s")
PY
echo "== lafs-fec (criterion; MB/s = 'thrpt' column)"
taskset -c 0 cargo bench -p lafs-fec --bench fec -- --warm-up-time 1 --measurement-time 3 '3-of-10' 2>&1 \
    | grep -E '^3-of-10|thrpt' | paste - - | sed -E 's/ +/ /g'
