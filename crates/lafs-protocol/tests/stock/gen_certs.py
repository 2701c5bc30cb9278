"""Makes the extra test certificates in tests/data and prints their SPKI hashes as stock computes
them (`allmydata.storage.http_common.get_spki_hash`) and their Foolscap tub ids
(`foolscap.crypto.digest32(cert.digest("sha1"))`).

    ~/.cache/lafs/tahoe-venv/bin/python crates/lafs-protocol/tests/stock/gen_certs.py tests/data

With no directory argument it only prints the values for the PEM files given on the command line.
"""
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from foolscap.crypto import digest32
from OpenSSL import crypto as ossl

from allmydata.storage.http_common import get_spki_hash


def make(key, algorithm, path):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lafs-protocol test")])
    now = datetime.datetime(2026, 1, 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(12345)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, algorithm)
    )
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def show(path):
    pem = open(path, "rb").read()
    cert = x509.load_pem_x509_certificate(pem)
    tubid = digest32(ossl.load_certificate(ossl.FILETYPE_PEM, pem).digest("sha1"))
    print(path, get_spki_hash(cert).decode(), tubid)


args = sys.argv[1:]
if args and not args[0].endswith(".pem"):
    d = args.pop(0)
    make(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256(), f"{d}/ec-p256-cert.pem")
    make(ed25519.Ed25519PrivateKey.generate(), None, f"{d}/ed25519-cert.pem")
    args += [f"{d}/stock-node-cert.pem", f"{d}/ec-p256-cert.pem", f"{d}/ed25519-cert.pem"]
for p in args:
    show(p)
