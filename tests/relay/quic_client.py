#!/usr/bin/env python3
"""An independent aioquic client for quic_relay.py's tests: connects the way sol-trade-sdk's
client for PROVIDER does (docs/quic-lanes.md), or with one thing changed, sends the auth frame
and N sample transactions, and prints one JSON summary line.

quic_client.py ADDR:PORT PROVIDER [--alpn A | --no-alpn] [--sni NAME] [--cert F --key F]
               [--api-key UUID] [--mev] [--no-auth] [--auth-hex HEX] [--count N]
               [--invalid NAME]... [--stream uni|bi] [--hold] [--timeout S]

Summary: {"connected", "close_code", "close_reason", "auth_reply" (Node1's byte), "sent" (first
signatures, null for invalid samples), "replies" ([status, message] per bi-stream)}. Exit 0
whatever the relay did (the test reads the summary); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import ssl
import sys
import uuid

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "..", "..", "wire", "tests", "data", "solana-txs.jsonl")
ALPN = {"node1": None, "astralane": "astralane-tpu", "soyas": "solana-tpu",
        "speedlanding": "solana-tpu", "solami": "solana-tpu", "glaive": "solana-tpu",
        "lunarlander": "lunar-lander-tpu"}
SNI = {"astralane": "astralane", "soyas": "soyas-landing", "speedlanding": "speed-landing",
       "solami": "solami-beam", "glaive": "glaive-intake"}
AUTH = {"node1": "bi", "glaive": "uni"}


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.terminated = asyncio.Event()
        self.close_code = None
        self.close_reason = None
        self.data: dict[int, bytearray] = {}
        self.ended: dict[int, asyncio.Event] = {}

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.close_code, self.close_reason = event.error_code, event.reason_phrase
            self.terminated.set()
            for ev in self.ended.values():
                ev.set()
        elif isinstance(event, events.StreamDataReceived):
            self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.end_stream:
                self.ended.setdefault(event.stream_id, asyncio.Event()).set()

    def send(self, data: bytes, bidi: bool) -> int:
        sid = self._quic.get_next_available_stream_id(is_unidirectional=not bidi)
        self.ended.setdefault(sid, asyncio.Event())
        self._quic.send_stream_data(sid, data, end_stream=True)
        self.transmit()
        return sid

    async def reply(self, sid: int, timeout: float) -> bytes | None:
        try:
            await asyncio.wait_for(self.ended[sid].wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return bytes(self.data.get(sid, b""))

    async def flushed(self, sids: list[int], timeout: float) -> None:
        """Waits until every stream's data and FIN are acknowledged, or the end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not self.terminated.is_set():
            streams = self._quic._streams
            if all(s not in streams or streams[s].sender.is_finished for s in sids):
                return
            await asyncio.sleep(0.005)


def samples(count: int, invalid: list[str]) -> list[tuple[bytes, str | None]]:
    out, bad = [], {}
    with open(SAMPLES, encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            raw = base64.b64decode(s.get("base64", ""))
            if s.get("signature") and len(out) < count:
                out.append((raw, s["signature"]))
            elif s.get("invalid"):
                bad[s["name"]] = raw
    for name in invalid:
        out.append((bad[name], None))
    return out


def auth_frame(args: argparse.Namespace) -> bytes | None:
    if args.auth_hex is not None:
        return bytes.fromhex(args.auth_hex)
    if args.provider not in AUTH or args.no_auth:
        return None
    key = uuid.UUID(args.api_key).bytes
    return key + bytes([1 if args.mev else 0]) if args.provider == "glaive" else key


async def run(args: argparse.Namespace) -> dict:
    host, _, port = args.addr.rpartition(":")
    host = host.strip("[]")
    alpn = None if args.no_alpn else (args.alpn or ALPN[args.provider])
    conf = QuicConfiguration(is_client=True, alpn_protocols=[alpn] if alpn else None,
                             verify_mode=ssl.CERT_NONE, idle_timeout=30.0,
                             server_name=args.sni or SNI.get(args.provider))
    if args.cert:
        conf.load_cert_chain(args.cert, args.key)
    summary = {"connected": False, "close_code": None, "close_reason": None,
               "auth_reply": None, "sent": [], "replies": []}
    holder: list[Client] = []

    def make(*a, **kw):
        holder.append(Client(*a, **kw))
        return holder[0]

    try:
        async with connect(host, int(port), configuration=conf, create_protocol=make,
                           wait_connected=True) as client:
            summary["connected"] = True
            await exchange(args, client, summary)
            if args.hold:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGTERM, stop.set)
                print("holding", flush=True)
                waits = [asyncio.ensure_future(stop.wait()),
                         asyncio.ensure_future(client.terminated.wait())]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            client.close(error_code=0, reason_phrase="client closing")
    except ConnectionError:
        pass
    if holder and holder[0].close_code is not None and (
            holder[0].close_reason != "client closing"):
        summary["close_code"] = holder[0].close_code
        summary["close_reason"] = holder[0].close_reason
    return summary


async def exchange(args: argparse.Namespace, client: Client, summary: dict) -> None:
    frame = auth_frame(args)
    if frame is not None:
        sid = client.send(frame, bidi=AUTH.get(args.provider) == "bi")
        if args.provider == "node1":
            reply = await client.reply(sid, args.timeout)
            summary["auth_reply"] = reply[0] if reply else None
            if reply != b"\x00":
                await asyncio.wait_for(client.terminated.wait(), args.timeout)
                return
    bidi = (args.stream or ("bi" if args.provider == "node1" else "uni")) == "bi"
    sids = []
    for raw, sig in samples(args.count, args.invalid):
        if client.terminated.is_set():
            break
        sid = client.send(raw, bidi)
        sids.append(sid)
        summary["sent"].append(sig)
        if bidi:
            reply = await client.reply(sid, args.timeout)
            if reply is not None and len(reply) >= 6:
                n = int.from_bytes(reply[2:6], "big")
                summary["replies"].append([int.from_bytes(reply[:2], "big"),
                                           reply[6:].decode(errors="replace"),
                                           len(reply) == 6 + n])
            else:
                summary["replies"].append(None if reply is None else reply.hex())
    await client.flushed(sids, args.timeout)
    if frame is not None or args.expect_close:
        # A refused identity or auth is answered by a close right after the handshake.
        try:
            await asyncio.wait_for(client.terminated.wait(),
                                   args.timeout if args.expect_close else 0.2)
        except asyncio.TimeoutError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("addr", metavar="ADDR:PORT")
    ap.add_argument("provider", choices=sorted(ALPN))
    ap.add_argument("--alpn")
    ap.add_argument("--no-alpn", action="store_true")
    ap.add_argument("--sni", help="server name (default: the provider's; else the address)")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--api-key", default="00112233-4455-4677-8899-aabbccddeeff")
    ap.add_argument("--mev", action="store_true")
    ap.add_argument("--no-auth", action="store_true", help="skip the auth stream")
    ap.add_argument("--auth-hex", help="send these bytes as the auth frame")
    ap.add_argument("--count", type=int, default=3, help="valid sample transactions to send")
    ap.add_argument("--invalid", action="append", default=[], help="an invalid sample by name")
    ap.add_argument("--stream", choices=["uni", "bi"])
    ap.add_argument("--hold", action="store_true",
                    help="after sending, keep the connection until SIGTERM or a close")
    ap.add_argument("--expect-close", action="store_true",
                    help="after sending, wait (up to --timeout) for the relay to close")
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args(argv)
    summary = asyncio.run(run(args))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
