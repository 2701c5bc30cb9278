"""Stock Tahoe-LAFS 1.20 side of crates/lafs-storage/tests/backend_conformance.rs.

Runs stock's own storage classes (StorageServer, BucketWriter, ShareFile, MutableShareFile)
from the interop virtualenv. Two commands:

  stock_shares.py make STORAGE_DIR
      Writes shares the way a stock server does (with leases, v1 and v2 containers, extra
      mutable leases, a partially written immutable share, a truncated mutable share) and
      prints a JSON manifest of what a reader must see.

  stock_shares.py check STORAGE_DIR MANIFEST_JSON
      Verifies, with stock's classes, every share listed in the manifest: container kind and
      version, share data (served length and bytes), write enabler, lease count. Then, for
      entries marked "stock_modify", modifies them the way a stock server would (adds five
      leases; mutable: extends the data with a 10-byte hole and b"stock" through
      slot_testv_and_readv_and_writev). Prints {"ok": true} or exits non-zero.

Manifest: {"nodeid": hex, "shares": [{"si": base32, "shnum": int,
  "kind": "immutable"|"mutable", "version": int, "data": hex, "write_enabler": hex|null,
  "leases": int, "stock_modify": bool}]}
"""

import json
import os
import struct
import sys

from twisted.internet.task import Clock

from allmydata.storage.common import si_a2b, si_b2a, storage_index_to_dir
from allmydata.storage.immutable import ShareFile
from allmydata.storage.immutable_schema import ALL_SCHEMAS as IMMUTABLE_SCHEMAS
from allmydata.storage.lease import LeaseInfo
from allmydata.storage.mutable import MutableShareFile
from allmydata.storage.mutable_schema import ALL_SCHEMAS as MUTABLE_SCHEMAS
from allmydata.storage.server import StorageServer

NODEID = b"\x07" * 20
WE = b"\x0e" * 32


def pattern(n, seed):
    """Deterministic bytes (no zeros, so holes are recognisable)."""
    out = bytearray()
    x = seed * 2654435761 % 2**32 or 1
    while len(out) < n:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(x % 255 + 1)
    return bytes(out)


def secret(tag, i):
    return bytes([tag, i]) * 16


def schema(schemas, version):
    return [s for s in schemas if s.version == version][0]


def server(storage_dir):
    return StorageServer(storage_dir, NODEID, clock=Clock())


def share_path(storage_dir, si, shnum):
    return os.path.join(storage_dir, "shares", storage_index_to_dir(si), str(shnum))


def entry(si, shnum, kind, version, data, we, leases):
    return {
        "si": si_b2a(si).decode(),
        "shnum": shnum,
        "kind": kind,
        "version": version,
        "data": data.hex(),
        "write_enabler": we.hex() if we is not None else None,
        "leases": leases,
        "stock_modify": False,
    }


def make(storage_dir):
    ss = server(storage_dir)
    shares = []

    # Immutable v2 through the server, as an upload does: one lease from the allocation,
    # plus one more.
    si = bytes(range(16))
    data = pattern(1000, 1)
    _, writers = ss.allocate_buckets(si, secret(1, 0), secret(2, 0), {0}, len(data))
    writers[0].write(0, data[:600])
    writers[0].write(600, data[600:])
    writers[0].close()
    ss.add_lease(si, secret(1, 1), secret(2, 1))
    shares.append(entry(si, 0, "immutable", 2, data, None, 2))

    # A client that allocated 100 bytes but wrote 40: stock serves 100 (zero-filled).
    _, writers = ss.allocate_buckets(si, secret(1, 0), secret(2, 0), {1}, 100)
    writers[1].write(0, pattern(40, 2))
    writers[1].close()
    # add_lease above renewed nothing for share 1; it has the allocation lease only.
    shares.append(entry(si, 1, "immutable", 2, pattern(40, 2) + b"\0" * 60, None, 1))

    # An empty immutable share.
    _, writers = ss.allocate_buckets(si, secret(1, 0), secret(2, 0), {2}, 0)
    writers[2].close()
    shares.append(entry(si, 2, "immutable", 2, b"", None, 1))

    # Immutable v1 (cleartext lease secrets), written directly.
    si = b"\xff" * 16
    data = pattern(3333, 3)
    path = share_path(storage_dir, si, 4)
    sf = ShareFile(path, max_size=len(data), create=True, schema=schema(IMMUTABLE_SCHEMAS, 1))
    sf.write_share_data(0, data)
    for i in range(3):
        sf.add_lease(LeaseInfo(1, secret(3, i), secret(4, i), 1700000000 + i, NODEID))
    shares.append(entry(si, 4, "immutable", 1, data, None, 3))

    # Mutable v2 through the server: share 0 and 1 get six leases each (two of them in the
    # extra-lease block after the data), then share 0 grows past that block; share 2 is
    # truncated (its file keeps the old bytes past the new length).
    si = b"\x42" * 16
    secrets = (WE, secret(5, 0), secret(6, 0))
    d0, d1, d2 = pattern(3000, 4), pattern(2000, 5), pattern(1500, 6)
    ok, _ = ss.slot_testv_and_readv_and_writev(
        si, secrets,
        {0: ([], [(0, d0)], None), 1: ([], [(0, d1)], None), 2: ([], [(0, d2)], None)}, [])
    assert ok
    for i in range(1, 6):
        ss.add_lease(si, secret(5, i), secret(6, i))
    ok, _ = ss.slot_testv_and_readv_and_writev(
        si, secrets,
        {0: ([], [(4000, b"grown")], None), 2: ([], [], 700)}, [])
    assert ok
    d0 = d0 + b"\0" * 1000 + b"grown"
    shares.append(entry(si, 0, "mutable", 2, d0, WE, 6))
    shares.append(entry(si, 1, "mutable", 2, d1, WE, 6))
    shares.append(entry(si, 2, "mutable", 2, d2[:700], WE, 6))

    # Mutable v1, written directly, with one lease.
    si = b"\x00" * 16
    data = pattern(900, 7)
    path = share_path(storage_dir, si, 9)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    MutableShareFile(path, schema=schema(MUTABLE_SCHEMAS, 1)).create(NODEID, WE)
    msf = MutableShareFile(path)
    msf.writev([(0, data)], None)
    msf.add_lease(10**9, LeaseInfo(1, secret(7, 0), secret(8, 0), 1700000000, NODEID))
    shares.append(entry(si, 9, "mutable", 1, data, WE, 1))

    print(json.dumps({"nodeid": NODEID.hex(), "shares": shares}))


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def check(storage_dir, manifest_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    ss = server(storage_dir)
    for e in manifest["shares"]:
        si = si_a2b(e["si"].encode())
        shnum = e["shnum"]
        data = bytes.fromhex(e["data"])
        what = "%s/%d" % (e["si"], shnum)
        path = share_path(storage_dir, si, shnum)
        with open(path, "rb") as f:
            head = f.read(32)
        if e["kind"] == "immutable":
            if MutableShareFile.is_valid_header(head) or not ShareFile.is_valid_header(head):
                fail("%s: not an immutable container" % what)
            (version,) = struct.unpack(">L", head[:4])
            sf = ShareFile(path)
            if version != e["version"]:
                fail("%s: container version %d, expected %d" % (what, version, e["version"]))
            if sf.get_length() != len(data):
                fail("%s: stock sees length %d, expected %d" % (what, sf.get_length(), len(data)))
            if sf.read_share_data(0, len(data) + 100) != data:
                fail("%s: stock reads different bytes" % what)
            buckets = ss.get_buckets(si)
            if buckets[shnum].read(0, len(data) + 100) != data:
                fail("%s: stock's BucketReader reads different bytes" % what)
            leases = len(list(sf.get_leases()))
        else:
            if not MutableShareFile.is_valid_header(head):
                fail("%s: not a mutable container" % what)
            msf = MutableShareFile(path, ss)
            if msf._schema.version != e["version"]:
                fail("%s: container version %d, expected %d" % (what, msf._schema.version, e["version"]))
            if msf.get_length() != len(data):
                fail("%s: stock sees length %d, expected %d" % (what, msf.get_length(), len(data)))
            if msf.readv([(0, len(data) + 100)]) != [data]:
                fail("%s: stock reads different bytes" % what)
            msf.check_write_enabler(bytes.fromhex(e["write_enabler"]), e["si"].encode())
            got = ss.slot_readv(si, [shnum], [(0, len(data) + 100)])
            if got.get(shnum) != [data]:
                fail("%s: stock's slot_readv reads different bytes" % what)
            leases = len(list(msf.get_leases()))
        if leases != e["leases"]:
            fail("%s: %d leases, expected %d" % (what, leases, e["leases"]))

    for e in manifest["shares"]:
        if not e["stock_modify"]:
            continue
        si = si_a2b(e["si"].encode())
        shnum = e["shnum"]
        data = bytes.fromhex(e["data"])
        for i in range(5):
            ss.add_lease(si, secret(9, i), secret(10, i))
        if e["kind"] == "mutable":
            secrets = (bytes.fromhex(e["write_enabler"]), secret(9, 0), secret(10, 0))
            testv = [(0, len(data), b"eq", data)]
            ok, _ = ss.slot_testv_and_readv_and_writev(
                si, secrets, {shnum: (testv, [(len(data) + 10, b"stock")], None)}, [])
            if not ok:
                fail("%s/%d: stock's test vector failed on the lafs share" % (e["si"], shnum))
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        fail(__doc__)
