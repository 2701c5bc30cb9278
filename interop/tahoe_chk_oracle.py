"""Stock Tahoe-LAFS immutable (CHK) encoder, driven in-process, as a cross-check oracle.

Run it with the python of the venv made by ``interop/tahoe-venv.sh`` (tahoe-lafs 1.20.0)::

    python tahoe_chk_oracle.py encode MANIFEST.json OUTDIR
    python tahoe_chk_oracle.py selftest VECTORS.json

No node, no network: the stock uploader's own pieces are wired together directly.

- the plaintext goes into ``allmydata.immutable.upload.Data`` (the stock IUploadable, which
  owns the convergent key derivation and the segment size adjustment), wrapped in
  ``upload.EncryptAnUploadable`` (AES-CTR + storage index);
- ``allmydata.immutable.encode.Encoder`` segments, zfec-encodes and hashes it;
- for every share number it talks to a stock ``layout.make_write_bucket_proxy`` proxy (the
  object that lays out the share bytes and sends them to a storage server in ``write``
  calls), whose remote reference is a local object collecting those writes. What that
  object holds at the end is what a storage server would serve back from offset 0 over GBS
  GET: the share's version field first, no container header, no leases.
- files of at most ``Uploader.URI_LIT_SIZE_THRESHOLD`` (55) bytes become ``URI:LIT`` caps,
  exactly as ``Uploader.upload`` decides.

The manifest is a JSON list of cases::

    {"name": "x", "file": "/path/to/plaintext", "k": 3, "n": 10, "happy": 7 (optional),
     "max_segment_size": 131072, "convergence_hex": "00..."}

For each case OUTDIR/<name>/ receives ``cap`` (the read cap as stock prints it),
``share.<i>`` for every i in 0..n (CHK only) and ``info.json`` (``ueb_hex``, ``verify_cap``,
``storage_index`` (base32), plus the encoding parameters stock settled on). A case stock
refuses gets ``error`` (the exception text) instead, the other cases still run, and the
process exits with status 1.
"""

import hashlib
import json
import os
import struct
import sys
import time
import traceback

from twisted.internet import defer, task

import allmydata
from allmydata import hashtree, uri
from allmydata.immutable import encode, layout, upload
from allmydata.storage.server import si_b2a

# The release whose bytes lafs must reproduce (interop/tahoe-venv.sh installs it).
EXPECTED_TAHOE_VERSION = "1.20.0"

# Stock's default when `shares.happy` isn't configured; it only matters if a share write
# fails (never here), and it is not part of the convergent key.
DEFAULT_HAPPY = 7


class _CollectingBucket(object):
    """Plays the remote bucket writer of one storage server.

    The write proxy calls ``callRemote("write", offset, data)`` with consecutive batches,
    then ``callRemote("close")``; the bytes land in ``self.data`` at the given offsets,
    which is the share body a server stores after its container header.
    """

    def __init__(self):
        self.data = bytearray()
        self.closed = False
        self.aborted = False

    def callRemote(self, method, *args, **kwargs):
        try:
            if method == "write":
                offset, chunk = args
                if self.closed:
                    raise RuntimeError("write after close")
                if offset > len(self.data):
                    self.data.extend(b"\x00" * (offset - len(self.data)))
                self.data[offset : offset + len(chunk)] = chunk
                return defer.succeed(None)
            if method == "close":
                self.closed = True
                return defer.succeed(None)
            if method == "abort":
                self.aborted = True
                return defer.succeed(None)
            raise NotImplementedError("unexpected remote call %r" % (method,))
        except Exception:
            return defer.fail()


class _Server(object):
    """The little a write proxy and the encoder ask of a storage server object."""

    def __init__(self, shnum):
        self._name = "oracle-server-%d" % shnum
        self._serverid = b"oracle-server-%d" % shnum

    def get_name(self):
        return self._name

    def get_serverid(self):
        return self._serverid


def _parse_share(share):
    """Split a share (as served) into its header fields and regions, for checks and info."""
    (version,) = struct.unpack(">L", share[:4])
    if version == 1:
        fields = struct.unpack(">LLLLLLLLL", share[:0x24])
        ueb_len_size = 4
    elif version == 2:
        fields = struct.unpack(">LQQQQQQQQ", share[:0x44])
        ueb_len_size = 8
    else:
        raise ValueError("unknown share version %d" % version)
    names = ("version", "block_size", "data_size", "data", "plaintext_hash_tree",
             "crypttext_hash_tree", "block_hashes", "share_hashes", "uri_extension")
    hdr = dict(zip(names, fields))
    ueb_off = hdr["uri_extension"]
    (ueb_len,) = struct.unpack(">L" if ueb_len_size == 4 else ">Q",
                               share[ueb_off : ueb_off + ueb_len_size])
    hdr["ueb"] = bytes(share[ueb_off + ueb_len_size : ueb_off + ueb_len_size + ueb_len])
    chain = share[hdr["share_hashes"] : ueb_off]
    hdr["share_hash_order"] = [
        struct.unpack(">H", chain[i : i + 2])[0] for i in range(0, len(chain), 34)
    ]
    return hdr


async def encode_one(data, k, n, happy, max_segment_size, convergence):
    """Encode `data` the way a stock uploader would. Returns a dict (see `write_case`)."""
    if len(data) <= upload.Uploader.URI_LIT_SIZE_THRESHOLD:
        return {"cap": uri.LiteralFileURI(data).to_string().decode("ascii"), "shares": []}

    uploadable = upload.Data(data, convergence=convergence)
    uploadable.set_default_encoding_parameters(
        {"k": k, "happy": happy, "n": n, "max_segment_size": max_segment_size}
    )
    encoder = encode.Encoder()
    await encoder.set_encrypted_uploadable(upload.EncryptAnUploadable(uploadable))

    # The sizes Tahoe2ServerSelector/ServerTracker hand to the write proxies.
    share_size = encoder.get_param("share_size")
    block_size = encoder.get_param("block_size")
    num_segments = encoder.get_param("num_segments")
    num_share_hashes = len(hashtree.IncompleteHashTree(n).needed_hashes(0, include_leaf=True))
    ueb_size = encoder.get_uri_extension_size()

    buckets, proxies, servermap = [], {}, {}
    for shnum in range(n):
        server = _Server(shnum)
        bucket = _CollectingBucket()
        buckets.append(bucket)
        proxies[shnum] = layout.make_write_bucket_proxy(
            bucket, server, share_size, block_size, num_segments, num_share_hashes, ueb_size
        )
        servermap[shnum] = {server.get_serverid()}
    encoder.set_shareholders(proxies, servermap)
    verifycap = await encoder.start()

    # What Uploader.upload does to turn the verify cap into the read cap.
    key = await uploadable.get_encryption_key()
    readcap = uri.CHKFileURI(
        key, verifycap.uri_extension_hash, verifycap.needed_shares,
        verifycap.total_shares, verifycap.size,
    )

    shares = [bytes(b.data) for b in buckets]
    for shnum, (bucket, proxy) in enumerate(zip(buckets, proxies.values())):
        if not bucket.closed or bucket.aborted:
            raise RuntimeError("share %d was not closed cleanly" % shnum)
        if len(bucket.data) != proxy.get_allocated_size():
            raise RuntimeError("share %d is %d bytes, %d were allocated"
                               % (shnum, len(bucket.data), proxy.get_allocated_size()))
    ueb = uri.pack_extension(encoder.get_uri_extension_data())
    for shnum, share in enumerate(shares):
        if _parse_share(share)["ueb"] != ueb:
            raise RuntimeError("share %d carries a different UEB" % shnum)
    k_, happy_, n_, segsize = uploadable._all_encoding_parameters
    return {
        "cap": readcap.to_string().decode("ascii"),
        "verify_cap": verifycap.to_string().decode("ascii"),
        "storage_index": si_b2a(verifycap.get_storage_index()).decode("ascii"),
        "ueb": ueb,
        "params": [k_, happy_, n_, segsize],
        "num_segments": num_segments,
        "block_size": block_size,
        "share_size": share_size,
        "shares": shares,
    }


def write_case(outdir, name, result):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "cap"), "w") as f:
        f.write(result["cap"])
    for i, share in enumerate(result["shares"]):
        with open(os.path.join(d, "share.%d" % i), "wb") as f:
            f.write(share)
    info = {"cap": result["cap"], "ueb_hex": None, "verify_cap": None, "storage_index": None}
    if result["shares"]:
        info.update(
            ueb_hex=result["ueb"].hex(),
            verify_cap=result["verify_cap"],
            storage_index=result["storage_index"],
            params=result["params"],
            num_segments=result["num_segments"],
            block_size=result["block_size"],
            share_size=result["share_size"],
            share_version=_parse_share(result["shares"][0])["version"],
        )
    with open(os.path.join(d, "info.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)


def _default_happy(k, n):
    return max(k, min(DEFAULT_HAPPY, n))


async def cmd_encode(manifest_path, outdir):
    with open(manifest_path) as f:
        cases = json.load(f)
    failures = 0
    for case in cases:
        name = case["name"]
        if not name or "/" in name or name.startswith("."):
            raise ValueError("bad case name %r" % (name,))
        t0 = time.time()
        try:
            with open(case["file"], "rb") as f:
                data = f.read()
            k, n = int(case["k"]), int(case["n"])
            happy = case.get("happy")
            happy = _default_happy(k, n) if happy is None else int(happy)
            result = await encode_one(
                data, k, n, happy, int(case["max_segment_size"]),
                bytes.fromhex(case.get("convergence_hex", "00" * 16)),
            )
        except Exception:
            failures += 1
            d = os.path.join(outdir, name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "error"), "w") as f:
                f.write(traceback.format_exc())
            print("oracle: %s: stock refused: %s" % (name, sys.exc_info()[1]), file=sys.stderr)
            continue
        write_case(outdir, name, result)
        print("oracle: %s: %d bytes k=%s n=%s in %.2fs"
              % (name, len(data), case["k"], case["n"], time.time() - t0), file=sys.stderr)
    return 1 if failures else 0


def vector_data(size):
    """The known-answer data rule: bytes(i % 251 for i in range(size))."""
    pattern = bytes(range(251))
    return (pattern * (size // 251 + 1))[:size]


def vector_convergence(name, case):
    """16 zero bytes unless the case says otherwise.

    The "-convA" case carries no explicit secret; b"A" * 16 is the secret that reproduces its
    key (found by trying candidates against the recorded key).
    """
    for field in ("convergence_hex", "conv_hex"):
        if field in case:
            return bytes.fromhex(case[field])
    if "conv" in case:
        return case["conv"].encode("latin-1")
    if name.endswith("-convA"):
        return b"A" * 16
    return b"\x00" * 16


async def cmd_selftest(vectors_path):
    with open(vectors_path) as f:
        cases = json.load(f)["cases"]
    bad = 0
    for name, want in cases.items():
        problems = []

        def check(what, got, expected):
            if got != expected:
                problems.append("%s: got %r, want %r" % (what, got, expected))

        if name.startswith("LIT-"):
            size = int(name.split("-", 1)[1])
            got = await encode_one(vector_data(size), 3, 10, 7, 1 << 20, b"\x00" * 16)
            check("cap", got["cap"], want["cap"])
        else:
            k, happy, n, segsize = want["params"]
            got = await encode_one(vector_data(want["n"]), k, n, happy, want["maxseg"],
                                   vector_convergence(name, want))
            share0 = got["shares"][0]
            hdr = _parse_share(share0)
            check("cap", got["cap"], want["cap"])
            check("vcap", got["verify_cap"], want["vcap"])
            check("key", got["cap"].split(":")[2], want["key"])
            check("si", got["storage_index"], want["si"])
            check("ueb_hash", got["cap"].split(":")[3], want["ueb_hash"])
            check("ueb_hex", got["ueb"].hex(), want["ueb_hex"])
            check("ueb_len", len(got["ueb"]), want["ueb_len"])
            check("params", got["params"], want["params"])
            check("num_segments", got["num_segments"], want["num_segments"])
            check("block_size", got["block_size"], want["block_size"])
            check("share_size", got["share_size"], want["share_size"])
            check("share0_len", len(share0), want["share0_len"])
            check("share0_sha256", hashlib.sha256(share0).hexdigest(), want["share0_sha256"])
            check("share0_version", hdr["version"], want["share0_version"])
            head = want["share0_head_hex"]
            check("share0_head_hex", share0[: len(head) // 2].hex(), head)
            check("share0_hash_order", hdr["share_hash_order"], want["share0_hash_order"])
            check("num shares", len(got["shares"]), n)
        if problems:
            bad += 1
            print("FAIL %s" % name)
            for p in problems:
                print("    " + p)
        else:
            print("ok   %s" % name)
    print("selftest: %d/%d cases match stock known answers" % (len(cases) - bad, len(cases)))
    return 1 if bad else 0


USAGE = """usage:
  tahoe_chk_oracle.py encode MANIFEST.json OUTDIR
  tahoe_chk_oracle.py selftest VECTORS.json"""


def main(argv):
    if len(argv) == 4 and argv[1] == "encode":
        run = lambda: cmd_encode(argv[2], argv[3])  # noqa: E731
    elif len(argv) == 3 and argv[1] == "selftest":
        run = lambda: cmd_selftest(argv[2])  # noqa: E731
    else:
        print(USAGE, file=sys.stderr)
        return 2
    if allmydata.__version__ != EXPECTED_TAHOE_VERSION:
        print("oracle: this python has tahoe-lafs %s, not %s; run interop/tahoe-venv.sh"
              % (allmydata.__version__, EXPECTED_TAHOE_VERSION), file=sys.stderr)
        return 2
    status = []

    async def body(_reactor):
        status.append(await run())

    # The encoder needs a running reactor: the zfec step is deferred to a thread and
    # segments are separated by eventual-send turns.
    try:
        task.react(lambda reactor: defer.ensureDeferred(body(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return e.code
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
