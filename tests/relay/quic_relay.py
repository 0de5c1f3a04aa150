#!/usr/bin/env python3
"""QUIC relay peer: impersonates the QUIC SWQOS relays (Node1, Astralane, Soyas, Speedlanding,
Solami, Glaive, Lunar Lander) and checks the exact shape of what a client sends.

One asyncio process, one aioquic server per --listen. Each listener is pinned to one provider
and checks, in order: the ALPN and the SNI (refused at the handshake with a TLS alert), the
client certificate (missing: TLS alert; wrong identity: application close 1), the connection
limit (application close 2), the auth stream where the provider has one, then every
transaction stream (one Solana transaction each, validated like mock_relay.py does). One JSON
line per transaction, refused connection and auth goes to --log. See tests/relay/README.md,
section "QUIC relay peer", and docs/quic-lanes.md for the providers' shapes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import time
import uuid

from aioquic import tls
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio import server as aioquic_server
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_relay import B58_ALPHABET, TxInvalid, parse_tx  # noqa: E402

# Application close codes (docs/quic-lanes.md, "The test peer").
CLOSE_OK = 0
CLOSE_UNKNOWN_KEY = 1  # Astralane's code; used for every provider's identity/key refusal
CLOSE_CONNECTION_LIMIT = 2  # Astralane's code
CLOSE_PROTOCOL = 3  # ours: a malformed or missing auth frame, a stream of the wrong kind

# Lunar Lander's MEV-protect certificate extension (lunar-lander-quic-client).
LUNAR_MEV_OID = x509.ObjectIdentifier("2.999.1.1")

# cert: None (not requested), "any" (required, identifies nothing: Glaive), "cn-key" (CN = API
# key), "cn-pubkey" (CN = base58 wallet public key: Soyas), "ed25519" (the certificate's
# Ed25519 key is the wallet key: Speedlanding, Solami). auth: None, "node1", "glaive".
PROVIDERS = {
    "node1": dict(alpn=None, sni=None, cert=None, auth="node1", tx_stream="bi"),
    "astralane": dict(alpn="astralane-tpu", sni="astralane", cert="cn-key", auth=None,
                      tx_stream="uni"),
    "soyas": dict(alpn="solana-tpu", sni="soyas-landing", cert="cn-pubkey", auth=None,
                  tx_stream="uni"),
    "speedlanding": dict(alpn="solana-tpu", sni="speed-landing", cert="ed25519", auth=None,
                         tx_stream="uni"),
    "solami": dict(alpn="solana-tpu", sni="solami-beam", cert="ed25519", auth=None,
                   tx_stream="uni"),
    "glaive": dict(alpn="solana-tpu", sni="glaive-intake", cert="any", auth="glaive",
                   tx_stream="uni"),
    "lunarlander": dict(alpn="lunar-lander-tpu", sni=None, cert="cn-key", auth=None,
                        tx_stream="uni"),
}


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text.encode():
        i = B58_ALPHABET.find(bytes([ch]))
        if i < 0:
            raise ValueError(f"not base58: {text!r}")
        n = n * 58 + i
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class AlertUnrecognizedName(tls.Alert):
    description = tls.AlertDescription.unrecognized_name


class AlertCertificateRequired(tls.Alert):
    description = tls.AlertDescription.certificate_required


class Config:
    """Process-wide settings and the log."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.keys = parse_pairs(args.key, "--key")
        self.pubkeys = {}
        for provider, text in parse_pairs(args.keypair_pubkey, "--keypair-pubkey").items():
            try:
                raw = b58decode(text)
            except ValueError as e:
                raise SystemExit(f"--keypair-pubkey {provider}: {e}") from None
            if len(raw) != 32:
                raise SystemExit(f"--keypair-pubkey {provider}: {len(raw)} bytes, expected 32")
            self.pubkeys[provider] = text
        for provider, key in self.keys.items():
            if provider in ("node1", "glaive"):
                try:
                    uuid.UUID(key)
                except ValueError:
                    raise SystemExit(f"--key {provider}: not a UUID") from None
        self.sni = parse_pairs(args.sni, "--sni")
        self.max_connections = args.max_connections
        self.close_after = args.close_after
        self.conn_ids = itertools.count(1)
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None

    def write_log(self, record: dict) -> None:
        if self.log is not None:
            self.log.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.log.flush()


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        provider, sep, value = item.partition("=")
        if not sep or not value:
            raise SystemExit(f"{flag} {item!r}: expected PROVIDER=VALUE")
        if provider not in PROVIDERS:
            raise SystemExit(f"{flag} {item!r}: unknown provider {provider!r}")
        out[provider] = value
    return out


class Listener:
    """One bound address pinned to one provider."""

    def __init__(self, cfg: Config, provider: str) -> None:
        self.cfg = cfg
        self.provider = provider
        self.spec = PROVIDERS[provider]
        self.sni = cfg.sni.get(provider, self.spec["sni"])
        self.label = "?"
        self.active = 0


class RelayConnection(QuicConnection):
    """aioquic's connection with the TLS hooks the relay needs: it requests a client
    certificate where the provider sends one, and records (and checks) the ClientHello's SNI
    and ALPN list before aioquic negotiates."""

    relay_listener: Listener | None = None
    hello_sni: str | None = None
    hello_alpn: list[str] | None = None
    refused_in_tls: str | None = None

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        listener = getattr(self._configuration, "relay_listener", None)
        if listener is None or self._is_client:
            return
        self.relay_listener = listener
        ctx = self.tls
        ctx._request_client_certificate = listener.spec["cert"] is not None
        orig_hello = ctx._server_handle_hello
        orig_cert = ctx._server_handle_certificate

        def handle_hello(input_buf, initial_buf, handshake_buf):
            pos = input_buf.tell()
            hello = tls.pull_client_hello(input_buf)
            input_buf.seek(pos)
            self.hello_sni, self.hello_alpn = hello.server_name, hello.alpn_protocols
            try:
                self._check_hello(listener)
                return orig_hello(input_buf, initial_buf, handshake_buf)
            except tls.Alert as exc:
                self.refused_in_tls = f"tls alert {exc.description.name}: {exc}"
                raise

        def handle_certificate(input_buf):
            orig_cert(input_buf)
            if ctx._peer_certificate is None:
                self.refused_in_tls = "tls alert certificate_required: no client certificate"
                raise AlertCertificateRequired("no client certificate")

        ctx._server_handle_hello = handle_hello
        ctx._server_handle_certificate = handle_certificate

    def _check_hello(self, listener: Listener) -> None:
        want_alpn = listener.spec["alpn"]
        if want_alpn is None and self.hello_alpn:
            raise tls.AlertNoApplicationProtocol(
                f"{listener.provider} expects no ALPN, client offered {self.hello_alpn}")
        if want_alpn is not None and want_alpn not in (self.hello_alpn or []):
            raise tls.AlertNoApplicationProtocol(
                f"{listener.provider} expects ALPN {want_alpn!r}, client offered "
                f"{self.hello_alpn}")
        if listener.sni is not None and self.hello_sni != listener.sni:
            raise AlertUnrecognizedName(
                f"{listener.provider} expects SNI {listener.sni!r}, client sent "
                f"{self.hello_sni!r}")

    def peer_certificate(self) -> x509.Certificate | None:
        return getattr(self.tls, "_peer_certificate", None)


# aioquic's server builds its connections by this module-level name.
aioquic_server.QuicConnection = RelayConnection


def fmt_addr(addr) -> str:
    if not addr:
        return "?"
    host, port = addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cert_cn(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def lunar_mev(cert: x509.Certificate) -> bool | None:
    try:
        ext = cert.extensions.get_extension_for_oid(LUNAR_MEV_OID)
    except x509.ExtensionNotFound:
        return False
    return ext.value.value == b"\x01\x01\xff"


class RelayProtocol(QuicConnectionProtocol):
    """One QUIC connection: identity, auth, then one transaction per stream."""

    def __init__(self, quic: RelayConnection, *args, **kwargs) -> None:
        super().__init__(quic, *args, **kwargs)
        self.listener: Listener = quic._configuration.relay_listener
        self.cfg = self.listener.cfg
        self.conn_id = next(self.cfg.conn_ids)
        self.peer = "?"
        self.alpn = None
        self.counted = False
        self.closing = False
        self.authed = self.listener.spec["auth"] is None
        self.auth_stream = {"node1": 0, "glaive": 2}.get(self.listener.spec["auth"])
        self.mev = None
        self.seq = 0
        self.buffers: dict[int, tuple[int, bytearray]] = {}
        self.pending: list[tuple[int, int, int, bytes]] = []
        self.logged_tls = False

    # ----------------------------------------------------------------------------- logging

    def record(self, kind: str, ok: bool, error: str | None, stream=None, sig=None,
               tx_len=None, t_first=None, t_done=None, close_code=None) -> None:
        quic: RelayConnection = self._quic
        if self.peer == "?":
            paths = getattr(quic, "_network_paths", None)
            if paths:
                self.peer = fmt_addr(paths[0].addr)
        t = t_done if t_done is not None else now_ns()
        line = {
            "t_ns": t, "t_first_ns": t_first if t_first is not None else t,
            "listen": self.listener.label, "peer": self.peer, "conn": self.conn_id,
            "seq": self.seq if kind == "tx" else 0, "provider": self.listener.provider,
            "kind": kind, "ok": ok, "error": error, "signature": sig, "tx_len": tx_len,
            "stream": stream,
            "alpn": self.alpn if self.alpn is not None else quic.hello_alpn,
            "sni": quic.hello_sni, "close_code": close_code, "mev": self.mev,
        }
        self.cfg.write_log(line)

    def close_with(self, code: int, reason: str, kind: str = "connection",
                   stream=None, flush: int | None = None) -> None:
        if self.closing:
            return
        self.record(kind, False, reason, stream=stream, close_code=code)
        if flush is None:
            self.closing = True
            self._quic.close(error_code=code, reason_phrase=reason)
            self.transmit()
        else:
            self.transmit()
            asyncio.ensure_future(self.close_when_flushed(flush, code, reason))

    # ----------------------------------------------------------------------------- events

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self.alpn = event.alpn_protocol
            self.on_handshake()
        elif isinstance(event, events.StreamDataReceived):
            self.on_stream_data(event)
        elif isinstance(event, events.ConnectionTerminated):
            self.on_terminated(event)

    def on_terminated(self, event: events.ConnectionTerminated) -> None:
        quic: RelayConnection = self._quic
        if quic.refused_in_tls and not self.logged_tls:
            self.logged_tls = True
            self.record("connection", False, quic.refused_in_tls,
                        close_code=event.error_code)
        if self.counted:
            self.counted = False
            self.listener.active -= 1

    def on_handshake(self) -> None:
        listener = self.listener
        self.listener.active += 1
        self.counted = True
        if self.cfg.max_connections is not None and listener.active > self.cfg.max_connections:
            self.close_with(CLOSE_CONNECTION_LIMIT,
                            f"connection limit exceeded ({self.cfg.max_connections})")
            return
        error = self.check_identity()
        if error is not None:
            self.close_with(CLOSE_UNKNOWN_KEY, error)

    def check_identity(self) -> str | None:
        """None when the client certificate identifies a configured client."""
        provider, mode = self.listener.provider, self.listener.spec["cert"]
        cert = self._quic.peer_certificate()
        if mode is None:
            return None
        if cert is None:  # the TLS hook refuses this first; kept for safety
            return "no client certificate"
        if mode == "cn-key":
            cn = cert_cn(cert)
            want = self.cfg.keys.get(provider)
            if provider == "lunarlander":
                self.mev = lunar_mev(cert)
            if not cn:
                return "client certificate has no CN (the API key)"
            if want is not None and cn != want:
                return "unknown API key (certificate CN)"
        elif mode == "cn-pubkey":
            cn = cert_cn(cert) or ""
            try:
                ok_len = len(b58decode(cn)) == 32
            except ValueError:
                ok_len = False
            if not ok_len:
                return "client certificate CN is not a base58 public key"
            want = self.cfg.pubkeys.get(provider)
            if want is not None and cn != want:
                return "unknown wallet public key (certificate CN)"
        elif mode == "ed25519":
            key = cert.public_key()
            if not isinstance(key, ed25519.Ed25519PublicKey):
                return "client certificate key is not Ed25519 (a Solana keypair)"
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            want = self.cfg.pubkeys.get(provider)
            if want is not None and raw != b58decode(want):
                return "unknown wallet public key (certificate key)"
        return None

    def on_stream_data(self, event: events.StreamDataReceived) -> None:
        if self.closing:
            return
        sid = event.stream_id
        t_first, buf = self.buffers.setdefault(sid, (now_ns(), bytearray()))
        buf += event.data
        if len(buf) > 64 * 1024:
            self.close_with(CLOSE_PROTOCOL, f"stream {sid} exceeds 64 KiB", stream=sid)
            return
        if not event.end_stream:
            return
        del self.buffers[sid]
        data, t_done = bytes(buf), now_ns()
        if sid == self.auth_stream and not self.authed:
            self.on_auth(sid, data, t_first, t_done)
        elif not self.authed:
            self.pending.append((sid, t_first, t_done, data))
        else:
            self.on_tx(sid, data, t_first, t_done)

    # ----------------------------------------------------------------------------- auth

    def on_auth(self, sid: int, data: bytes, t_first: int, t_done: int) -> None:
        kind = self.listener.spec["auth"]
        code, error = (self.check_node1_auth(data) if kind == "node1"
                       else self.check_glaive_auth(data))
        if kind == "node1":
            self._quic.send_stream_data(sid, bytes([code]), end_stream=True)
        if code != CLOSE_OK:
            self.close_with(code, error, kind="auth", stream=sid,
                            flush=sid if kind == "node1" else None)
            return
        self.authed = True
        self.record("auth", True, None, stream=sid, tx_len=len(data), t_first=t_first,
                    t_done=t_done)
        self.transmit()
        pending, self.pending = self.pending, []
        for p_sid, p_first, p_done, p_data in sorted(pending):
            if not self.closing:
                self.on_tx(p_sid, p_data, p_first, p_done)

    def check_node1_auth(self, data: bytes) -> tuple[int, str | None]:
        if len(data) != 16:
            return CLOSE_PROTOCOL, f"auth stream carries {len(data)} bytes, expected 16 (UUID)"
        want = self.cfg.keys.get("node1")
        if want is not None and data != uuid.UUID(want).bytes:
            return CLOSE_UNKNOWN_KEY, "unknown API key (auth UUID)"
        return CLOSE_OK, None

    def check_glaive_auth(self, data: bytes) -> tuple[int, str | None]:
        if len(data) != 17:
            return CLOSE_PROTOCOL, (f"auth stream carries {len(data)} bytes, expected 17 "
                                    "(UUIDv4 + flags)")
        key, flags = uuid.UUID(bytes=data[:16]), data[16]
        if key.version != 4 or key.variant != uuid.RFC_4122:
            return CLOSE_PROTOCOL, "auth UUID is not a version 4 UUID"
        if flags & ~0x01:
            return CLOSE_PROTOCOL, f"auth flags 0x{flags:02x} has unknown bits"
        self.mev = bool(flags & 0x01)
        want = self.cfg.keys.get("glaive")
        if want is not None and key != uuid.UUID(want):
            return CLOSE_UNKNOWN_KEY, "unknown API key (auth UUID)"
        return CLOSE_OK, None

    # ----------------------------------------------------------------------------- transactions

    def on_tx(self, sid: int, data: bytes, t_first: int, t_done: int) -> None:
        self.seq += 1
        bidi = sid % 4 == 0
        want = self.listener.spec["tx_stream"]
        sig, error = None, None
        try:
            sig = parse_tx(data)
        except TxInvalid as e:
            error = f"invalid transaction: {e.args[0]}"
        if (want == "bi") != bidi:
            error = (f"transaction on a {'bi' if bidi else 'uni'}-stream, "
                     f"{self.listener.provider} sends one {want}-stream per transaction")
        self.record("tx", error is None, error, stream=sid, sig=sig, tx_len=len(data),
                    t_first=t_first, t_done=t_done)
        if bidi:
            status, msg = (200, sig) if error is None else (400, error)
            if want != "bi":
                self._quic.send_stream_data(sid, b"", end_stream=True)
            else:
                body = msg.encode()
                self._quic.send_stream_data(
                    sid, status.to_bytes(2, "big") + len(body).to_bytes(4, "big") + body,
                    end_stream=True)
        self.transmit()
        if self.cfg.close_after is not None and self.seq >= self.cfg.close_after:
            asyncio.ensure_future(self.close_when_flushed(
                sid, CLOSE_OK, f"close after {self.cfg.close_after} transactions"))

    async def close_when_flushed(self, sid: int, code: int, reason: str) -> None:
        """Closes once what the relay wrote on stream `sid` (a reply) is acknowledged, so the
        client reads it before the close (at most 1 s)."""
        if self.closing:
            return
        self.closing = True
        stream = self._quic._streams.get(sid)
        for _ in range(200):
            if stream is None or sid % 4 != 0 or stream.sender.is_finished:
                break
            await asyncio.sleep(0.005)
        self._quic.close(error_code=code, reason_phrase=reason)
        self.transmit()


def parse_listen(spec: str) -> tuple[str, int, str]:
    addr, sep, provider = spec.partition("=")
    if not sep or provider not in PROVIDERS:
        raise SystemExit(f"--listen {spec!r}: expected ADDR:PORT=PROVIDER with PROVIDER one of "
                         + ", ".join(PROVIDERS))
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise SystemExit(f"--listen {spec!r}: expected ADDR:PORT=PROVIDER")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port), provider


async def run(args: argparse.Namespace, cfg: Config) -> int:
    keylog = open(args.keylog, "a", encoding="ascii") if args.keylog else None
    servers, labels = [], []
    for spec in args.listen:
        host, port, provider = parse_listen(spec)
        listener = Listener(cfg, provider)
        conf = QuicConfiguration(is_client=False, alpn_protocols=None,
                                 idle_timeout=args.idle_timeout, secrets_log_file=keylog)
        if PROVIDERS[provider]["alpn"] is not None:
            conf.alpn_protocols = [PROVIDERS[provider]["alpn"]]
        conf.load_cert_chain(args.cert, args.key_file)
        conf.relay_listener = listener
        try:
            server = await serve(host, port, configuration=conf, create_protocol=RelayProtocol)
        except OSError as e:
            print(f"quic-relay: cannot listen on {spec}: {e}", file=sys.stderr)
            return 1
        sock = server._transport.get_extra_info("sockname")
        listener.label = fmt_addr(sock)
        servers.append(server)
        labels.append(f"{listener.label}={provider}")
    print("listening on " + " ".join(labels), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
    if keylog is not None:
        keylog.close()
    if cfg.log is not None:
        cfg.log.close()
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", action="append", required=True, metavar="ADDR:PORT=PROVIDER",
                    help="address to serve for one provider (repeatable; port 0 picks one)")
    ap.add_argument("--cert", required=True, metavar="FILE", help="server certificate (PEM)")
    ap.add_argument("--key", dest="key", action="append", default=[],
                    metavar="PROVIDER=APIKEY",
                    help="the API key a provider expects (repeatable); or, with a single "
                         "path and no '=', the server's private key (PEM)")
    ap.add_argument("--server-key", dest="server_key", metavar="FILE",
                    help="server private key (PEM); --key FILE works too")
    ap.add_argument("--client-ca", metavar="FILE",
                    help="accepted for symmetry; client certificates are self-signed and "
                         "checked by identity (CN or public key), not by a CA")
    ap.add_argument("--keypair-pubkey", action="append", default=[],
                    metavar="PROVIDER=BASE58", help="the wallet public key a provider expects")
    ap.add_argument("--sni", action="append", default=[], metavar="PROVIDER=NAME",
                    help="require this SNI (Node1 and Lunar Lander send the endpoint's host)")
    ap.add_argument("--max-connections", type=int, metavar="N",
                    help="per listener: further connections are closed with code 2")
    ap.add_argument("--close-after", type=int, metavar="N",
                    help="close a connection after N transactions on it")
    ap.add_argument("--idle-timeout", type=float, default=300.0, help="seconds (default 300)")
    ap.add_argument("--log", metavar="FILE", help="append one JSON line per event")
    ap.add_argument("--keylog", metavar="FILE", help="TLS key log (SSLKEYLOGFILE format)")
    args = ap.parse_args(argv)
    key_files = [k for k in args.key if "=" not in k]
    args.key = [k for k in args.key if "=" in k]
    if len(key_files) > 1 or (key_files and args.server_key):
        ap.error("one server private key, please")
    args.key_file = args.server_key or (key_files[0] if key_files else None)
    if args.key_file is None:
        ap.error("the server's private key is required (--key FILE or --server-key FILE)")
    for n, flag in ((args.max_connections, "--max-connections"),
                    (args.close_after, "--close-after")):
        if n is not None and n < 1:
            ap.error(f"{flag} must be >= 1")
    cfg = Config(args)
    return asyncio.run(run(args, cfg))


if __name__ == "__main__":
    sys.exit(main())
