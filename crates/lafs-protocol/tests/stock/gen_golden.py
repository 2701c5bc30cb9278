"""Prints the golden values used by `tests/stock_golden.rs`, computed by stock Tahoe-LAFS 1.20.

Run with the Python of a Tahoe-LAFS 1.20 virtualenv (cbor2, werkzeug and allmydata installed):

    ~/.cache/lafs/tahoe-venv/bin/python crates/lafs-protocol/tests/stock/gen_golden.py

Bodies are built the way stock's client (`allmydata.storage.http_client`) and server
(`allmydata.storage.http_server`) build them and encoded with `allmydata.util.cbor.dumps`
(cbor2); headers with `swissnum_auth_header` and werkzeug's `Range`/`ContentRange`, as stock does.
"""

import base64
import tempfile

from attrs import asdict
from twisted.internet import reactor
from werkzeug.datastructures import ContentRange, Range

from allmydata.storage.http_client import (
    ReadVector,
    TestVector,
    TestWriteVectors,
    WriteVector,
)
from allmydata.storage.http_common import Secrets, swissnum_auth_header
from allmydata.storage.http_server import HTTPServer
from allmydata.storage.server import StorageServer
from allmydata.util.cbor import dumps

out = {}

ss = StorageServer(tempfile.mkdtemp(), b"\x02" * 20)
ss.get_available_space = lambda: 123456789012
out["version"] = dumps(HTTPServer(reactor, ss, b"swiss")._get_version()).hex()

out["allocate_request"] = dumps(
    {"share-numbers": set(range(10)), "allocated-size": 1049000}
).hex()
out["allocate_request_empty"] = dumps({"share-numbers": set(), "allocated-size": 0}).hex()
out["allocate_response"] = dumps({"already-have": {1}, "allocated": {3, 7}}).hex()
# CPython set iteration order: {200, 7} iterates as [200, 7].
out["allocate_response_unsorted"] = dumps({"already-have": set(), "allocated": {7, 200}}).hex()
out["write_response"] = dumps(
    {"required": [{"begin": 16, "end": 48}, {"begin": 100, "end": 70000}]}
).hex()
out["write_response_done"] = dumps({"required": []}).hex()
out["list_shares"] = dumps({1, 2, 5}).hex()
# CPython set iteration order: {0, 3, 9} iterates as [0, 9, 3].
out["list_shares_unsorted"] = dumps({0, 3, 9}).hex()
out["list_shares_empty"] = dumps(set()).hex()
out["advise_corrupt"] = dumps({"reason": "expected hash abcd, got hash efgh \u00e9"}).hex()


def rtw(twv, reads):
    # As StorageClientMutables._read_test_write_chunks builds the message.
    return dumps(
        {
            "test-write-vectors": {n: t.asdict() for (n, t) in twv.items()},
            "read-vector": [asdict(r) for r in reads],
        }
    ).hex()


share0 = TestWriteVectors(
    test_vectors=[TestVector(0, 41, b"\x00" * 41)],
    write_vectors=[WriteVector(41, b"yy"), WriteVector(1000, b"")],
    new_length=None,
)
share3 = TestWriteVectors(
    test_vectors=[TestVector(0, 1, b"")],
    write_vectors=[WriteVector(0, b"x" * 10)],
    new_length=10,
)
out["rtw_request"] = rtw({0: share0, 3: share3}, [ReadVector(0, 41), ReadVector(70000, 5)])
out["rtw_request_unsorted"] = rtw({3: share3, 0: share0}, [])
out["rtw_request_empty"] = rtw({}, [])
out["rtw_response"] = dumps({"success": True, "data": {0: [b"abc", b""], 5: [b"\xff"]}}).hex()
out["rtw_response_fail"] = dumps({"success": False, "data": {}}).hex()

out["authorization"] = swissnum_auth_header(b"g44v5ghvq7fx65wsuvuhuyrgjioef6rw").decode()
# As StorageClient._request formats each secret.
out["x_tahoe_authorization_renew"] = b"%s %s" % (
    Secrets.LEASE_RENEW.value.encode("ascii"),
    base64.b64encode(bytes(range(32))).strip(),
)
out["x_tahoe_authorization_renew"] = out["x_tahoe_authorization_renew"].decode()
out["x_tahoe_authorization_upload"] = (
    b"%s %s" % (Secrets.UPLOAD.value.encode("ascii"), base64.b64encode(b"\xfe" * 20).strip())
).decode()
# read_share_chunk(offset=10, length=90) and write_share_chunk(offset=100, 16 bytes).
out["range_10_90"] = Range("bytes", [(10, 10 + 90)]).to_header()
out["content_range_100_16"] = ContentRange("bytes", 100, 100 + 16).to_header()

for k, v in out.items():
    print(f"{k} = {v}")
