#!/usr/bin/env python3
"""Mock SWQOS relay for the end-to-end tests (Python 3.11, standard library only).

One process impersonates all fourteen providers of wire/src/relay.rs over plain HTTP/1.1 with
keep-alive. Each request is recognised by method, path and (where two providers share a path)
headers or body, checked against the exact shape the data plane writes, and answered the way
that relay answers. Every request is appended to --log as one JSON line. See README.md next to
this file for the CLI, the recognition rules and the response formats.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import http.server
import itertools
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

PROVIDERS = (
    "jito",
    "bloxroute",
    "nextblock",
    "0slot",
    "temporal",
    "helius",
    "astralane",
    "node1",
    "flashblock",
    "stellium",
    "blockrazor",
    "lightspeed",
    "glaive",
    "lunarlander",
)

TOKEN = object()  # placeholder for "the provider's token" in SPECS

# Per provider: default path, required query parameters (TOKEN = the provider's token), the
# auth header (None: token in the query or path), Content-Type, and the body kind with its
# fixed parameters. Mirrors wire/src/relay.rs.
SPECS = {
    "jito": dict(path="/api/v1/transactions", query={"uuid": TOKEN}, header="x-jito-auth",
                 ctype="application/json", body=("jsonrpc", {"encoding": "base64"})),
    "bloxroute": dict(path="/api/v2/submit", query={}, header="Authorization",
                      ctype="application/json",
                      body=("submit", {"frontRunningProtection": False, "useStakedRPCs": True})),
    "nextblock": dict(path="/api/v2/submit", query={}, header="Authorization",
                      ctype="application/json",
                      body=("submit", {"frontRunningProtection": False})),
    "0slot": dict(path="/txb", query={"api-key": TOKEN}, header=None,
                  ctype="application/octet-stream", body=("raw", None)),
    "temporal": dict(path="/", query={"c": TOKEN}, header=None, ctype="application/json",
                     body=("jsonrpc", {"encoding": "base64"})),
    "helius": dict(path="/fast", query={"api-key": TOKEN}, header=None, ctype="application/json",
                   body=("jsonrpc", {"encoding": "base64", "skipPreflight": True,
                                     "maxRetries": 0})),
    "astralane": dict(path="/irisb", query={"api-key": TOKEN, "method": "sendTransaction"},
                      header=None, ctype="application/octet-stream", body=("raw", None)),
    "node1": dict(path="/", query={}, header="api-key", ctype="application/json",
                  body=("jsonrpc", {"encoding": "base64", "skipPreflight": True})),
    "flashblock": dict(path="/api/v2/submit-batch", query={}, header="Authorization",
                       ctype="application/json", body=("batch", None)),
    "stellium": dict(path=None, query={}, header=None, ctype="application/json",
                     body=("jsonrpc", {"encoding": "base64"})),
    "blockrazor": dict(path="/v2/sendTransaction", query={"auth": TOKEN, "mode": "fast"},
                       header=None, ctype="text/plain", body=("b64", None)),
    "lightspeed": dict(path=None, query={}, header=None, ctype="application/json",
                       body=("jsonrpc", {"encoding": "base64", "skipPreflight": True,
                                         "preflightCommitment": "processed", "maxRetries": 0})),
    # The HTTP binary forms of two QUIC-first relays (sol-trade-sdk src/swqos/glaive.rs,
    # src/swqos/lunarlander.rs): the raw transaction as application/octet-stream.
    "glaive": dict(path="/binary", query={"api-key": TOKEN}, header=None,
                   ctype="application/octet-stream", body=("raw", None)),
    "lunarlander": dict(path="/send-bin", query={}, header="x-api-key",
                        ctype="application/octet-stream", body=("raw", None)),
}

# Jito's bundle endpoint: the same auth as jito's transactions (its token: --token jito=...),
# a JSON-RPC sendBundle body. Not one of PROVIDERS (no lane of its own; relay.rs
# jito_bundle_request writes it for a jito lane).
BUNDLE = "jito-bundle"
SPECS[BUNDLE] = dict(path="/api/v1/bundles", query={"uuid": TOKEN}, header="x-jito-auth",
                     ctype="application/json", body=("bundle", {"encoding": "base64"}))
MAX_BUNDLE_TXS = 5

JSONRPC_PROVIDERS = {"jito", "temporal", "helius", "node1", "stellium", "lightspeed", "astralane",
                     "glaive", "lunarlander"}

MAX_TX_SIZE = 1232
MAX_BODY = 64 * 1024

# ---------------------------------------------------------------------------------------------
# base58 and transaction validation (a port of wire/src/solana.rs, same reason strings)

B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = bytearray()
    while n:
        n, r = divmod(n, 58)
        out.append(B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return (b"1" * zeros + bytes(reversed(out))).decode()


class TxInvalid(Exception):
    """A transaction that wire/src/solana.rs would reject; args[0] is its reason."""


class Truncated(TxInvalid):
    def __init__(self) -> None:
        super().__init__("truncated message")


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def rest(self) -> bytes:
        return self.data[self.pos:]

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise Truncated()
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Truncated()
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def short_len(self) -> int:
        value = 0
        for i in range(3):
            if self.pos + i >= len(self.data):
                raise Truncated()
            b = self.data[self.pos + i]
            if i == 2 and b > 0x03:
                raise TxInvalid("invalid compact-u16 length")
            value |= (b & 0x7F) << (7 * i)
            if b & 0x80 == 0:
                if i > 0 and b == 0:
                    raise TxInvalid("invalid compact-u16 length")
                self.pos += i + 1
                return value
        raise TxInvalid("invalid compact-u16 length")


def parse_message(message: bytes) -> int:
    """Checks a message; returns num_required_signatures."""
    r = Reader(message)
    if not message:
        raise Truncated()
    v0 = False
    if message[0] & 0x80:
        if message[0] & 0x7F != 0:
            raise TxInvalid("unsupported message version")
        r.u8()
        v0 = True
    required, ro_signed, ro_unsigned = r.u8(), r.u8(), r.u8()
    num_keys = r.short_len()
    r.take(num_keys * 32)
    r.take(32)
    num_ix = r.short_len()
    max_program, payer_is_program, max_account = 0, False, None
    for _ in range(num_ix):
        program = r.u8()
        max_program = max(max_program, program)
        payer_is_program |= program == 0
        accounts = r.take(r.short_len())
        if accounts:
            m = max(accounts)
            max_account = m if max_account is None else max(max_account, m)
        r.take(r.short_len())
    loaded = 0
    if v0:
        for _ in range(r.short_len()):
            r.take(32)
            w = r.short_len()
            r.take(w)
            ro = r.short_len()
            r.take(ro)
            if w + ro == 0:
                raise TxInvalid("address table lookup loads no accounts")
            loaded += w + ro
    if r.rest():
        raise TxInvalid("trailing bytes after message")
    if required + ro_unsigned > num_keys:
        raise TxInvalid("header requires more account keys than present")
    if ro_signed >= required:
        raise TxInvalid("fee payer is read-only")
    total = num_keys + loaded
    if total > 256:
        raise TxInvalid("more than 256 account keys")
    if num_ix > 0 and (payer_is_program or max_program >= num_keys):
        raise TxInvalid("invalid program id index")
    if max_account is not None and max_account >= total:
        raise TxInvalid("account index out of range")
    return required


def parse_tx(tx: bytes) -> str:
    """Validates a signed transaction like swqos_wire::solana::Transaction::parse; returns the
    base58 of its first signature."""
    if not tx:
        raise TxInvalid("empty")
    if len(tx) > MAX_TX_SIZE:
        raise TxInvalid("larger than 1232 bytes")
    r = Reader(tx)
    num_sigs = r.short_len()
    if num_sigs == 0:
        raise TxInvalid("no signatures")
    try:
        sigs = r.take(num_sigs * 64)
    except Truncated:
        raise TxInvalid("signature count exceeds data") from None
    message = r.rest()
    try:
        required = parse_message(message)
    except Truncated:
        if message and message[0] & 0x80:
            declared = message[1] if len(message) > 1 else None
        else:
            declared = message[0] if message else None
        if declared is not None and declared != num_sigs:
            raise TxInvalid("signature count exceeds data") from None
        raise
    if required != num_sigs:
        raise TxInvalid("signature count does not match header")
    return b58encode(sigs[:64])


# ---------------------------------------------------------------------------------------------
# request checking


class Reject(Exception):
    """An answer other than 200: status, reason, whether to close the connection."""

    def __init__(self, status: int, reason: str, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close


def strict_equal(a, b) -> bool:
    """JSON equality that tells true from 1 and 0 from false."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return a == b


def compact(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def canonical_body(provider: str, b64: str) -> bytes:
    """The body wire/src/relay.rs writes for a transaction whose base64 is b64."""
    kind, fixed = SPECS[provider]["body"]
    if kind == "jsonrpc":
        return ('{"id":1,"jsonrpc":"2.0","method":"sendTransaction","params":["' + b64 + '",'
                + compact(fixed) + "]}").encode()
    if kind == "submit":
        return compact({"transaction": {"content": b64}, **fixed}).encode()
    if kind == "batch":
        return compact({"transactions": [b64]}).encode()
    return b64.encode()


def no_duplicate_keys(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def decode_b64(s, where: str) -> bytes:
    if not isinstance(s, str):
        raise Reject(400, f"{where} is not a string")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise Reject(400, f"bad base64 in {where}: {e}") from None
    if base64.b64encode(raw).decode() != s:
        raise Reject(400, f"non-canonical base64 in {where}")
    return raw


def canonical_bundle_body(b64s: list[str]) -> bytes:
    """The body relay.rs jito_bundle_request writes for these base64 transactions."""
    return ('{"id":1,"jsonrpc":"2.0","method":"sendBundle","params":[['
            + ",".join('"' + b + '"' for b in b64s) + '],{"encoding":"base64"}]}').encode()


def extract_bundle(body: bytes, strict: bool) -> tuple[list[bytes], object]:
    """The transactions of a sendBundle body, in order, and the JSON-RPC id."""
    try:
        doc = json.loads(body, object_pairs_hook=no_duplicate_keys)
    except (ValueError, UnicodeDecodeError) as e:
        raise Reject(400, f"body is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.keys() != {"id", "jsonrpc", "method", "params"}:
        raise Reject(400, "body must be an object with exactly id, jsonrpc, method, params")
    rpc_id = doc["id"]
    if strict and not strict_equal(rpc_id, 1):
        raise Reject(400, "id must be 1")
    if not isinstance(rpc_id, (int, str)) or isinstance(rpc_id, bool):
        raise Reject(400, "id must be a number or string")
    if not strict_equal(doc["jsonrpc"], "2.0"):
        raise Reject(400, 'jsonrpc must be "2.0"')
    if not strict_equal(doc["method"], "sendBundle"):
        raise Reject(400, 'method must be "sendBundle"')
    params = doc["params"]
    if not isinstance(params, list) or len(params) != 2:
        raise Reject(400, "params must be [[transactions], config]")
    fixed = SPECS[BUNDLE]["body"][1]
    if not strict_equal(params[1], fixed):
        raise Reject(400, f"params[1] is {compact(params[1])}, expected {compact(fixed)}")
    b64s = params[0]
    if not isinstance(b64s, list) or not 1 <= len(b64s) <= MAX_BUNDLE_TXS:
        raise Reject(400, f"params[0] must be a list of 1 to {MAX_BUNDLE_TXS} transactions")
    raws = [decode_b64(b, f"params[0][{i}]") for i, b in enumerate(b64s)]
    if strict and body != canonical_bundle_body(b64s):
        raise Reject(400, "body bytes differ from the wire/src/relay.rs bundle request")
    return raws, rpc_id


def bundle_id(raws: list[bytes]) -> str:
    """The mock's deterministic bundle id: hex sha256 of the transactions' first signatures
    (64 bytes each, raw), concatenated in bundle order."""
    h = hashlib.sha256()
    for raw in raws:
        r = Reader(raw)
        r.short_len()
        h.update(r.take(64))
    return h.hexdigest()


def bundle_path(cfg: "Config") -> str:
    """Where jito bundles go: a jito --path override ending in /transactions has that segment
    replaced by /bundles (as relay.rs does); otherwise /api/v1/bundles."""
    custom = cfg.paths.get("jito", "")
    if custom.endswith("/transactions"):
        return custom[: -len("/transactions")] + "/bundles"
    return SPECS[BUNDLE]["path"]


def extract_tx(provider: str, body: bytes, strict: bool) -> tuple[bytes, object]:
    """The transaction bytes from a body of `provider`'s shape, and the JSON-RPC id."""
    kind, fixed = SPECS[provider]["body"]
    if kind == "raw":
        return body, None
    if kind == "b64":
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise Reject(400, "body is not ASCII base64") from None
        return decode_b64(text, "body"), None
    try:
        doc = json.loads(body, object_pairs_hook=no_duplicate_keys)
    except (ValueError, UnicodeDecodeError) as e:
        raise Reject(400, f"body is not JSON: {e}") from None
    rpc_id = None
    if kind == "jsonrpc":
        if not isinstance(doc, dict) or doc.keys() != {"id", "jsonrpc", "method", "params"}:
            raise Reject(400, "body must be an object with exactly id, jsonrpc, method, params")
        rpc_id = doc["id"]
        if strict and not strict_equal(rpc_id, 1):
            raise Reject(400, "id must be 1")
        if not isinstance(rpc_id, (int, str)) or isinstance(rpc_id, bool):
            raise Reject(400, "id must be a number or string")
        if not strict_equal(doc["jsonrpc"], "2.0"):
            raise Reject(400, 'jsonrpc must be "2.0"')
        if not strict_equal(doc["method"], "sendTransaction"):
            raise Reject(400, 'method must be "sendTransaction"')
        params = doc["params"]
        if not isinstance(params, list) or len(params) != 2:
            raise Reject(400, "params must be [transaction, config]")
        if not strict_equal(params[1], fixed):
            raise Reject(400, f"params[1] is {compact(params[1])}, expected {compact(fixed)}")
        b64 = params[0]
        where = "params[0]"
    elif kind == "submit":
        if not isinstance(doc, dict) or doc.keys() != {"transaction", *fixed}:
            raise Reject(400, f"body keys must be transaction, {', '.join(fixed)}")
        for k, v in fixed.items():
            if not strict_equal(doc[k], v):
                raise Reject(400, f"{k} must be {compact(v)}")
        t = doc["transaction"]
        if not isinstance(t, dict) or t.keys() != {"content"}:
            raise Reject(400, 'transaction must be {"content": B64}')
        b64 = t["content"]
        where = "transaction.content"
    else:  # batch
        if not isinstance(doc, dict) or doc.keys() != {"transactions"}:
            raise Reject(400, 'body must be {"transactions": [B64]}')
        txs = doc["transactions"]
        if not isinstance(txs, list) or len(txs) != 1:
            raise Reject(400, "transactions must hold exactly one transaction")
        b64 = txs[0]
        where = "transactions[0]"
    raw = decode_b64(b64, where)
    if strict and body != canonical_body(provider, b64):
        raise Reject(400, "body bytes differ from the wire/src/relay.rs template")
    return raw, rpc_id


class Config:
    def __init__(self, args: argparse.Namespace) -> None:
        self.tokens: dict[str, str] = {}
        if args.token_all is not None:
            for p in PROVIDERS:
                if p != "lightspeed":
                    self.tokens[p] = args.token_all
        for spec in args.token:
            p, sep, tok = spec.partition("=")
            if not sep or p not in PROVIDERS or not tok:
                raise SystemExit(f"--token {spec!r}: expected PROVIDER=TOKEN, PROVIDER one of "
                                 + ", ".join(PROVIDERS))
            self.tokens[p] = tok
        self.paths: dict[str, str] = {}
        for spec in args.path:
            p, sep, path = spec.partition("=")
            if not sep or p not in PROVIDERS or not path.startswith("/"):
                raise SystemExit(f"--path {spec!r}: expected PROVIDER=/PATH")
            self.paths[p] = path
        self.strict = args.strict
        self.reset_after = args.reset_after
        self.delay = args.delay_ms / 1000.0
        self.body_timeout = args.body_timeout_ms / 1000.0
        self.quiet = not args.verbose
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None
        self.log_lock = threading.Lock()
        self.conn_ids = itertools.count(1)

    def write_log(self, record: dict) -> None:
        if self.log is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.log_lock:
            self.log.write(line)
            self.log.flush()


def classify(cfg: Config, path: str, query: dict, headers, body: bytes) -> str | None:
    """Which provider a request is for, from its path (and headers/body where paths are
    shared); None for an unknown path."""
    if path == bundle_path(cfg):
        # Only a sendBundle body: anything else there (a transaction) is an unknown request.
        return BUNDLE if b'"sendBundle"' in body else None
    for p, custom in cfg.paths.items():
        if path == custom:
            if p in ("bloxroute", "nextblock"):
                break  # shared default path: fall through to the body rule
            return p
    if path == "/api/v1/transactions":
        return "jito"
    if path == cfg.paths.get("bloxroute", "/api/v2/submit") or path == cfg.paths.get(
            "nextblock", "/api/v2/submit"):
        return "bloxroute" if b'"useStakedRPCs"' in body else "nextblock"
    simple = {"/api/v2/submit-batch": "flashblock", "/txb": "0slot", "/fast": "helius",
              "/irisb": "astralane", "/v2/sendTransaction": "blockrazor",
              "/binary": "glaive", "/send-bin": "lunarlander"}
    if path in simple:
        return simple[path]
    if path == "/":
        if "c" in query:
            return "temporal"
        if headers.get("api-key") is not None:
            return "node1"
        if b'"preflightCommitment"' in body:
            return "lightspeed"
        return "node1"  # no auth at all: node1's rules answer 401
    if b'"preflightCommitment"' in body:
        return "lightspeed"
    if path.count("/") == 1:
        return "stellium"
    return None


def route(cfg: Config, pinned: str | None, target: str, headers,
          body: bytes) -> tuple[str, str, dict[str, str]]:
    """Splits the target and picks the provider: (provider, path, query parameters).

    Raises Reject for a malformed query string or a path no provider serves."""
    path, _, query_text = target.partition("?")
    try:
        pairs = urllib.parse.parse_qsl(query_text, keep_blank_values=True, strict_parsing=True) \
            if query_text else []
    except ValueError as e:
        raise Reject(400, f"bad query string: {e}") from None
    query: dict[str, str] = {}
    for k, v in pairs:
        if k in query:
            raise Reject(400, f"query parameter {k} repeated")
        query[k] = v
    provider = pinned or classify(cfg, path, query, headers, body)
    if pinned == "jito" and path == bundle_path(cfg) and b'"sendBundle"' in body:
        provider = BUNDLE  # a jito listener also takes that relay's bundles
    if provider is None:
        raise Reject(404, f"no provider serves {path}")
    return provider, path, query


def check_auth(cfg: Config, provider: str, path: str, query: dict, headers) -> None:
    spec = SPECS[provider]
    want = cfg.tokens.get("jito" if provider == BUNDLE else provider)
    status = 403 if provider == "0slot" else 401

    def match(got: str | None, where: str) -> None:
        if got is None or got == "":
            raise Reject(status, f"missing token ({where})")
        if want is not None and got != want:
            raise Reject(status, f"invalid token ({where})")

    if provider == "lightspeed":
        if want is not None and want not in urllib.parse.unquote(path) and want not in query.values():
            raise Reject(401, "invalid token (lightspeed URL)")
        return
    if provider == "stellium":
        if "stellium" in cfg.paths:
            return  # a path override carries no token
        match(urllib.parse.unquote(path[1:]), "path")
        return
    got = None
    for k, v in spec["query"].items():
        if v is TOKEN:
            got = query.get(k)
            match(got, f"query {k}")
    if spec["header"] is not None:
        values = headers.get_all(spec["header"]) or []
        if len(values) > 1:
            raise Reject(400, f"{spec['header']} header repeated")
        hv = values[0] if values else None
        match(hv, f"{spec['header']} header")
        if got is not None and hv != got:
            raise Reject(status, "invalid token (uuid and x-jito-auth differ)")


def check_shape(cfg: Config, provider: str, path: str, query: dict, headers) -> None:
    spec = SPECS[provider]
    want_path = bundle_path(cfg) if provider == BUNDLE else cfg.paths.get(provider, spec["path"])
    if want_path is not None and path != want_path:
        raise Reject(400, f"path {path} is not {provider}'s {want_path}")
    want_query = spec["query"]
    for k, v in want_query.items():
        if k not in query:
            raise Reject(400, f"query parameter {k} missing")
        if v is not TOKEN and query[k] != v:
            raise Reject(400, f"query parameter {k} must be {v}")
    extra = set(query) - set(want_query)
    if extra and (cfg.strict or provider != "lightspeed"):
        raise Reject(400, f"unexpected query parameters: {', '.join(sorted(extra))}")
    hosts = headers.get_all("Host") or []
    if len(hosts) != 1 or not hosts[0]:
        raise Reject(400, "exactly one non-empty Host header required")
    ctypes = headers.get_all("Content-Type") or []
    if len(ctypes) != 1:
        raise Reject(400, "exactly one Content-Type header required")
    if ctypes[0] != spec["ctype"]:
        raise Reject(400, f"Content-Type {ctypes[0]} is not {spec['ctype']}")
    if cfg.strict:
        allowed = {"host", "content-type", "content-length"}
        if spec["header"] is not None:
            allowed.add(spec["header"].lower())
        names = [k.lower() for k in headers.keys()]
        extra_h = sorted(set(names) - allowed)
        if extra_h:
            raise Reject(400, f"unexpected headers: {', '.join(extra_h)}")
        if len(names) != len(set(names)):
            raise Reject(400, "a header is repeated")


def success(provider: str, sig: str, rpc_id) -> tuple[bytes, str]:
    if provider in ("bloxroute", "nextblock", "blockrazor"):
        return compact({"signature": sig}).encode(), "application/json"
    if provider == "flashblock":
        return compact({"success": True, "data": {"signatures": [sig]}}).encode(), \
            "application/json"
    if provider == "0slot":
        return sig.encode(), "text/plain"
    return compact({"jsonrpc": "2.0", "result": sig,
                    "id": 1 if rpc_id is None else rpc_id}).encode(), "application/json"


def failure(provider: str | None, status: int, reason: str, rpc_id) -> tuple[bytes, str]:
    if provider == "0slot":
        return reason.encode(), "text/plain"
    code = {400: -32602, 401: -32001, 403: -32001, 404: -32601}.get(status, -32600)
    return compact({"jsonrpc": "2.0", "error": {"code": code, "message": reason},
                    "id": rpc_id}).encode(), "application/json"


# ---------------------------------------------------------------------------------------------
# the server


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-relay"
    disable_nagle_algorithm = True

    server: "Server"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = next(self.server.cfg.conn_ids)
        self.seq = 0
        self.t_first = 0
        self.aborted = False
        host, port = self.client_address[:2]
        self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def log_message(self, fmt: str, *args) -> None:  # noqa: D102 (quiet unless --verbose)
        if not self.server.cfg.quiet:
            sys.stderr.write(f"mock-relay conn {self.conn_id}: {fmt % args}\n")

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        self.t_first = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        self.serve()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Called by parse_request for an unparsable request line or headers.
        reason = f"bad request head ({code}): {message or explain or http.HTTPStatus(code).phrase}"
        self.seq += 1
        self.close_connection = True
        self.record(None, False, 400, reason, None, None)
        body, ctype = failure(None, 400, reason, None)
        self.reply(400, body, ctype)

    def reply(self, status: int, body: bytes, ctype: str) -> None:
        head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("ascii") + b"\r\n" + body)

    def record(self, provider, ok, status, error, sig, tx_len, t_done=None,
               bundle=None) -> None:
        cfg = self.server.cfg
        extra = {} if bundle is None else {"signatures": bundle[0], "bundle_id": bundle[1]}
        cfg.write_log({
            "t_ns": t_done if t_done is not None else time.clock_gettime_ns(time.CLOCK_MONOTONIC),
            "t_first_ns": self.t_first,
            "listen": self.server.label,
            "peer": self.peer,
            "conn": self.conn_id,
            "seq": self.seq,
            "provider": provider,
            "ok": ok,
            "status": status,
            "error": error,
            "signature": sig,
            "tx_len": tx_len,
            **extra,
        })

    def read_body(self) -> bytes:
        """The body per Content-Length; Reject (closing) when it cannot be read."""
        if self.headers.get_all("Transfer-Encoding"):
            raise Reject(400, "Transfer-Encoding is not allowed (Content-Length only)", True)
        cls = self.headers.get_all("Content-Length") or []
        if len(cls) != 1:
            raise Reject(400, "exactly one Content-Length header required", True)
        text = cls[0].strip()
        if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
            raise Reject(400, f"bad Content-Length {cls[0]!r}", True)
        n = int(text)
        if n > MAX_BODY:
            raise Reject(400, f"Content-Length {n} exceeds {MAX_BODY}", True)
        self.connection.settimeout(self.server.cfg.body_timeout)
        try:
            body = b""
            while len(body) < n:
                chunk = self.rfile.read1(n - len(body))
                if not chunk:
                    break
                body += chunk
        except (TimeoutError, socket.timeout):
            pass
        finally:
            if not self.aborted:
                try:
                    self.connection.settimeout(None)
                except OSError:
                    pass
        if len(body) < n:
            raise Reject(400, f"body shorter than Content-Length ({len(body)} of {n} bytes)",
                         True)
        return body

    def abort(self) -> None:
        """Closes the connection with RST (SO_LINGER 0), sending no FIN."""
        self.aborted = True
        self.close_connection = True
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os.close(sock.detach())

    def serve(self) -> None:
        cfg = self.server.cfg
        self.seq += 1
        provider = None
        sig = None
        tx_len = None
        rpc_id = None
        bundle = None  # (signatures, bundle id) of a jito-bundle request, when decoded
        reset = cfg.reset_after is not None and self.seq > cfg.reset_after
        try:
            if self.command != "POST":
                self.close_connection = True
                raise Reject(400, f"method must be POST, not {self.command}", True)
            body = self.read_body()
            t_done = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            provider, path, query = route(cfg, self.server.pinned, self.path, self.headers, body)
            # Shape problems come first, but the transaction is still read for the log.
            shape_error = None
            try:
                check_shape(cfg, provider, path, query, self.headers)
            except Reject as e:
                shape_error = e
            try:
                if provider == BUNDLE:
                    raws, rpc_id = extract_bundle(body, cfg.strict)
                    tx_len = sum(len(r) for r in raws)
                    sigs = []
                    for i, raw in enumerate(raws):
                        try:
                            sigs.append(parse_tx(raw))
                        except TxInvalid as e:
                            raise Reject(400, f"invalid transaction {i}: {e.args[0]}") from None
                    bundle = (sigs, bundle_id(raws))
                else:
                    raw, rpc_id = extract_tx(provider, body, cfg.strict)
                    tx_len = len(raw)
                    try:
                        sig = parse_tx(raw)
                    except TxInvalid as e:
                        raise Reject(400, f"invalid transaction: {e.args[0]}") from None
            except Reject as e:
                shape_error = shape_error or e
            if reset:
                self.record(provider, False, None,
                            f"connection reset after {cfg.reset_after} requests", sig, tx_len,
                            t_done, bundle)
                self.abort()
                return
            check_auth(cfg, provider, path, query, self.headers)
            if shape_error is not None:
                raise shape_error
        except Reject as e:
            if provider is None and e.status != 404:
                # The body could not be read: name the provider from the path alone.
                try:
                    provider = route(cfg, self.server.pinned, self.path, self.headers, b"")[0]
                except Reject:
                    pass
            if reset:
                self.record(provider, False, None,
                            f"connection reset after {cfg.reset_after} requests", sig, tx_len,
                            bundle=bundle)
                self.abort()
                return
            if e.close:
                self.close_connection = True
            self.record(provider, False, e.status, e.reason, sig, tx_len, bundle=bundle)
            if cfg.delay:
                time.sleep(cfg.delay)
            body, ctype = failure(provider, e.status, e.reason, rpc_id)
            self.reply(e.status, body, ctype)
            return
        self.record(provider, True, 200, None, sig, tx_len, t_done, bundle)
        if cfg.delay:
            time.sleep(cfg.delay)
        if bundle is not None:
            sig = bundle[1]  # the answer's result is the bundle id
        body, ctype = success(provider, sig, rpc_id)
        self.reply(200, body, ctype)

    # Any method reaches serve(), which answers 400 for all but POST.
    do_POST = do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = serve


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, family, cfg: Config, pinned: str | None) -> None:
        self.address_family = family
        self.cfg = cfg
        self.pinned = pinned
        super().__init__(addr, Handler)
        host, port = self.server_address[:2]
        self.label = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # peer reset or went away: nothing to report
        super().handle_error(request, client_address)

    def shutdown_request(self, request) -> None:
        try:
            if request.fileno() < 0:
                return  # aborted with RST: already closed
        except OSError:
            return
        super().shutdown_request(request)


def parse_listen(spec: str) -> tuple[tuple, int, str | None]:
    addr, _, pinned = spec.partition("=")
    if pinned and pinned not in PROVIDERS:
        raise SystemExit(f"--listen {spec!r}: unknown provider {pinned!r}")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--listen {spec!r}: expected ADDR:PORT[=PROVIDER]")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        family = socket.AF_INET6
    elif ":" in host:
        family = socket.AF_INET6
    return (host, int(port)), family, pinned or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", action="append", default=[], metavar="ADDR:PORT[=PROVIDER]",
                    help="address to serve (repeatable; port 0 picks a free one; =PROVIDER "
                         "serves only that provider there). Default 127.0.0.1:0")
    ap.add_argument("--token", action="append", default=[], metavar="PROVIDER=TOKEN",
                    help="token a provider expects (repeatable)")
    ap.add_argument("--token-all", metavar="TOKEN",
                    help="the token every provider but lightspeed expects")
    ap.add_argument("--path", action="append", default=[], metavar="PROVIDER=/PATH",
                    help="a provider's path override (Endpoint.path)")
    ap.add_argument("--log", metavar="FILE", help="append one JSON line per request")
    ap.add_argument("--reset-after", type=int, metavar="N",
                    help="reset (RST) a connection when request N+1 arrives on it")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="delay before every answer")
    ap.add_argument("--body-timeout-ms", type=float, default=2000.0,
                    help="how long to wait for a body shorter than Content-Length")
    ap.add_argument("--strict", action="store_true",
                    help="also require the exact bytes relay.rs writes: no other headers or "
                         "query parameters, id 1, body byte-identical to the template")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = ap.parse_args(argv)
    if args.reset_after is not None and args.reset_after < 0:
        ap.error("--reset-after must be >= 0")
    cfg = Config(args)

    servers = []
    for spec in args.listen or ["127.0.0.1:0"]:
        addr, family, pinned = parse_listen(spec)
        try:
            servers.append(Server(addr, family, cfg, pinned))
        except OSError as e:
            print(f"mock-relay: cannot listen on {spec}: {e}", file=sys.stderr)
            return 1

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                daemon=True) for s in servers]
    for t in threads:
        t.start()
    labels = [s.label + (f"={s.pinned}" if s.pinned else "") for s in servers]
    print("listening on " + " ".join(labels), flush=True)
    while not stop.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    if cfg.log is not None:
        cfg.log.close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
