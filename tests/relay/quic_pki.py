#!/usr/bin/env python3
"""Test PKI for the QUIC relay peer (quic_relay.py) and its clients.

quic_pki.py DIR [--ip IP]... [--dns NAME]... [--client NAME=CN]... [--client-mev NAME=CN]...
                [--keypair NAME]...

Writes into DIR (created if missing; files of the same names are replaced):
- ca.pem, ca.key: a test CA (P-256, CN "swqos test CA"), as scripts/tls-relay.sh makes one.
- server.pem, server.key: a P-256 certificate the CA signed (Soyas's client accepts only
  ECDSA P-256 server signatures), SANs: 127.0.0.1, ::1, every --ip, the providers' server names
  (astralane, soyas-landing, speed-landing, solami-beam, glaive-intake, relay.test) and every
  --dns.
- client-NAME.pem/.key for each --client NAME=CN: a self-signed P-256 certificate whose subject
  CN is the API key CN, like sol-trade-sdk's Astralane and Lunar Lander clients make.
  --client-mev also adds Lunar Lander's MEV-protect extension (OID 2.999.1.1, DER TRUE).
- for each --keypair NAME: keypair-NAME.json (a Solana keypair: JSON array of 64 bytes, secret
  seed then public key, as solana-keygen writes), keypair-NAME.pubkey (base58 public key),
  keypair-NAME.pem/.key (Ed25519 certificate of that key, subject CN "Solana node", like
  solana_tls_utils::new_dummy_x509_certificate: Speedlanding, Solami, Glaive) and
  keypair-NAME-cn.pem/.key (P-256 certificate with CN = the base58 public key: Soyas).
Prints the written file names, one a line. Private keys are PKCS#8 PEM, mode 0600.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_relay import b58encode  # noqa: E402

SERVER_NAMES = ["astralane", "soyas-landing", "speed-landing", "solami-beam", "glaive-intake",
                "relay.test"]
LUNAR_MEV_OID = x509.ObjectIdentifier("2.999.1.1")


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30)))


def write(path: str, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    print(path)


def write_pair(dir_: str, stem: str, cert: x509.Certificate, key) -> None:
    write(os.path.join(dir_, stem + ".pem"), cert.public_bytes(serialization.Encoding.PEM))
    write(os.path.join(dir_, stem + ".key"),
          key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()), private=True)


def self_signed_cn(cn: str, mev: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    b = builder(name(cn), name(cn), key.public_key())
    if mev:
        b = b.add_extension(x509.UnrecognizedExtension(LUNAR_MEV_OID, b"\x01\x01\xff"),
                            critical=False)
    return b.sign(key, hashes.SHA256()), key


def make(args: argparse.Namespace) -> None:
    d = args.dir
    os.makedirs(d, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder(name("swqos test CA"), name("swqos test CA"), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write_pair(d, "ca", ca, ca_key)

    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ["127.0.0.1", "::1", *args.ip]]
    sans += [x509.DNSName(n) for n in SERVER_NAMES + args.dns]
    cert = (builder(name("relay.test"), ca.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    write_pair(d, "server", cert, key)

    for spec, mev in [(s, False) for s in args.client] + [(s, True) for s in args.client_mev]:
        stem, sep, cn = spec.partition("=")
        if not sep or not stem or not cn:
            raise SystemExit(f"--client {spec!r}: expected NAME=CN")
        write_pair(d, f"client-{stem}", *self_signed_cn(cn, mev))

    for stem in args.keypair:
        wallet = ed25519.Ed25519PrivateKey.generate()
        seed = wallet.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        pub = wallet.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
        write(os.path.join(d, f"keypair-{stem}.json"),
              json.dumps(list(seed + pub)).encode() + b"\n", private=True)
        write(os.path.join(d, f"keypair-{stem}.pubkey"), (b58encode(pub) + "\n").encode())
        cert = builder(name("Solana node"), name("Solana node"), wallet.public_key()).sign(
            wallet, None)
        write_pair(d, f"keypair-{stem}", cert, wallet)
        write_pair(d, f"keypair-{stem}-cn", *self_signed_cn(b58encode(pub)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--ip", action="append", default=[], help="another SAN IP of the server")
    ap.add_argument("--dns", action="append", default=[], help="another SAN name of the server")
    ap.add_argument("--client", action="append", default=[], metavar="NAME=CN")
    ap.add_argument("--client-mev", action="append", default=[], metavar="NAME=CN")
    ap.add_argument("--keypair", action="append", default=[], metavar="NAME")
    args = ap.parse_args(argv)
    for ip in args.ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            ap.error(f"--ip {ip!r}: not an IP address")
    make(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
