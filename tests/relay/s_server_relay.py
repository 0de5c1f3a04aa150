#!/usr/bin/env python3
"""An HTTP/1.1 relay on top of `openssl s_server`: an independent TLS stack for the tests.

    s_server_relay.py --listen IP:PORT --cert CERT --key KEY [--log FILE]
                      [--key-update-every N] [--openssl PATH] [--verbose]
                      [-- EXTRA s_server ARGS...]

`openssl s_server` terminates TLS; this script only speaks HTTP through its pipes. s_server
writes the decrypted application data to its stdout and sends whatever arrives on its stdin to
the client, so: requests are parsed from s_server's stdout (request line, headers, a body of
`Content-Length` bytes), each is appended to --log as one JSON line

    {"method": "POST", "path": "/x", "headers": {"host": "relay.test", ...},
     "body": "<body as text>", "len": <body bytes>, "seq": <request number, from 1>,
     "conn": <connection number, from 1>, "cipher": "<s_server's CIPHER is ...>",
     "key_update_after": <bool>}

(header names lowercased; repeated headers joined with ", "; the body decoded as UTF-8 with
replacement characters, `len` counts its bytes; `conn` counts every accepted connection,
failed handshakes too), and answered, in one write to s_server's stdin, with

    HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 44\\r\\n\\r\\n
    {"jsonrpc":"2.0","result":"s_server","id":1}

Extra arguments after `--` go to s_server as they are
(`-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256`,
`-tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256`, ...).

s_server's report. s_server runs without `-quiet`: in OpenSSL 3.0, `-quiet` (and `-brief`) also
turn off its stdin commands, and the `K` command (a TLS 1.3 KeyUpdate with update_requested) is
what --key-update-every needs. Its own report lines therefore share stdout with the decrypted
data. s_server runs under `stdbuf -oL`, so each report line reaches the pipe in one write(2)
(atomic) when it is printed, and decrypted data in other writes (one per TLS record read); each
read here drains the pipe, so a report line is never split across reads. The lines that can come
while a request is still arriving (`SSL_do_handshake -> R` after a `K`, `Read BLOCK`, `Write
BLOCK`) and `CONNECTION CLOSED` are cut out of the stream wherever they are. The rest (a new
connection's handshake summary, the close report) come between requests and end in a bare LF,
while an HTTP request line ends in CRLF: lines that are no request line are s_server's.
`CIPHER is X` gives the connection's cipher. s_server serves one connection at a time and
accepts the next when the current one ends; `CONNECTION CLOSED` ends a connection: a request cut
short by it is dropped (reported on stderr).

s_server's stdin. s_server reads it in chunks (one read(2) of up to 16 KiB), not lines, and only
while a connection is up; it treats a chunk starting with `Q` (quit), `q` (close), `P`
(plaintext to the socket), `S` (stats), or `r`, `R`, `k`, `K`, `c` followed by a newline as a
command (see apps/s_server.c). Every response starts with `HTTP/` and is one write (atomic:
shorter than PIPE_BUF). Before each write this script waits until s_server has read everything
written before (FIONREAD on the pipe is 0), so a response and a following `K\\n` never arrive
in the same chunk (the `K` would then go to the client as data). Writes are for one connection:
one still queued when its connection ends is dropped, and whatever s_server did not read
before the end is taken back out of the pipe (this script holds a second, non-blocking read
end), so nothing meant for one connection reaches the next.

--key-update-every N: after every N-th response (counted over all connections), write `K\\n`:
s_server sends a KeyUpdate (update_requested) right away, and the client must answer with its
own. Each one s_server performs is logged as {"event": "key_update", "result": R, "conn": C}
(R: what SSL_do_handshake returned; 1 is success). TLS 1.3 only: on a connection whose cipher
is no TLS 1.3 suite (or not known) no `K` is written (s_server's SSL_key_update would fail
with "wrong ssl version" and still print `SSL_do_handshake -> 1`). Should a `K` still reach a
new connection before its handshake (taken back too late), s_server completes the handshake
there instead of sending a KeyUpdate and prints no summary for that connection: logged as
{"event": "stale_key_update", ...}, and that connection's cipher stays unknown.

Once s_server listens this prints `listening on IP:PORT` and flushes. SIGTERM or SIGINT: stop
s_server, print `stopped`, exit 0. s_server dies with this script (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import array
import ctypes
import fcntl
import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import termios
import threading
import time

RESPONSE_BODY = b'{"jsonrpc":"2.0","result":"s_server","id":1}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(RESPONSE_BODY)).encode() + b"\r\n\r\n" + RESPONSE_BODY)
KEY_UPDATE = b"K\n"
REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]\r\n")
MAX_BODY = 1 << 20
# s_server's report lines that may come in the middle of a request, and the end of a connection.
SCRUB = re.compile(rb"SSL_do_handshake -> (-?\d+)\n|Read BLOCK\n|Write BLOCK\n|"
                   rb"CONNECTION CLOSED\n")


def die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the relay dies (PR_SET_PDEATHSIG = 1)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Relay:
    def __init__(self, args: argparse.Namespace, extra: list[str]) -> None:
        self.args = args
        cmd = ["stdbuf", "-oL", args.openssl, "s_server", "-accept", args.listen,
               "-cert", args.cert, "-key", args.key, "-ign_eof", *extra]
        stdin_r, self.stdin_w = os.pipe()
        # A second open file description of the pipe's read end: non-blocking for us only
        # (O_NONBLOCK on s_server's own would make it see EOF).
        self.takeback_fd = os.open(f"/proc/self/fd/{stdin_r}", os.O_RDONLY | os.O_NONBLOCK)
        self.proc = subprocess.Popen(cmd, stdin=stdin_r, stdout=subprocess.PIPE, stderr=None,
                                     bufsize=0, preexec_fn=die_with_parent)
        os.close(stdin_r)
        self.stdout_fd = self.proc.stdout.fileno()
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.log_lock = threading.Lock()
        # (connection, bytes) to write; None ends the writer.
        self.writes: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        # Held while writing to s_server and while switching to the next connection.
        self.io_lock = threading.Lock()
        self.conn = 1
        self.summary = False  # the current connection's handshake summary was printed
        self.cipher: str | None = None
        self.seq = 0
        self.listening = False
        # The HTTP parser: unparsed bytes, state ("line", "headers", "body") and the request
        # being read.
        self.buf = bytearray()
        self.state = "line"
        self.method = ""
        self.path = ""
        self.headers: dict[str, str] = {}
        self.length = 0
        self.error: str | None = None

    def say(self, text: str) -> None:
        print(f"s_server_relay: {text}", file=sys.stderr, flush=True)

    # -- output to s_server ---------------------------------------------------------------------

    def pending(self) -> int:
        """Bytes written to s_server's stdin that it has not read yet."""
        buf = array.array("i", [0])
        fcntl.ioctl(self.stdin_w, termios.FIONREAD, buf, True)
        return buf[0]

    def writer(self) -> None:
        """Writes queued chunks one at a time, each only once s_server read the one before,
        and only while their connection is up."""
        while True:
            item = self.writes.get()
            if item is None:
                return
            conn, chunk = item
            while True:
                while self.pending() > 0:
                    if self.proc.poll() is not None:
                        return
                    time.sleep(0.0002)
                with self.io_lock:
                    if conn != self.conn:
                        if self.args.verbose:
                            self.say(f"dropped {chunk[:8]!r}... for closed connection {conn}")
                        break
                    if self.pending() > 0:
                        continue
                    try:
                        n = os.write(self.stdin_w, chunk)
                    except OSError as e:
                        self.say(f"write to s_server: {e}")
                        return
                    if n != len(chunk):
                        self.say(f"short write {n} of {len(chunk)}")
                    break

    def next_connection(self) -> None:
        """The current connection ended: take back what s_server did not read of what was
        written for it, and count the next one."""
        with self.io_lock:
            taken = b""
            while True:
                try:
                    more = os.read(self.takeback_fd, 1 << 16)
                except BlockingIOError:
                    break
                if not more:
                    break
                taken += more
            if taken:
                self.say(f"connection {self.conn} ended before s_server read {taken[:60]!r}"
                         f"{'...' if len(taken) > 60 else ''} ({len(taken)} bytes): taken back")
            self.conn += 1
            self.summary = False
            self.cipher = None

    # -- input from s_server --------------------------------------------------------------------

    def write_log(self, record: dict) -> None:
        if self.log is None:
            return
        with self.log_lock:
            self.log.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.log.flush()

    def info(self, line: bytes) -> None:
        """One of s_server's own report lines."""
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if self.args.verbose:
            print(f"s_server: {text}", file=sys.stderr, flush=True)
        if text == "ACCEPT" and not self.listening:
            self.listening = True
            print(f"listening on {self.args.listen}", flush=True)
        elif text == "-----BEGIN SSL SESSION PARAMETERS-----":
            self.summary = True
        elif text.startswith("CIPHER is "):
            self.cipher = text[len("CIPHER is "):].strip()

    def scrubbed(self, m: re.Match) -> None:
        """A report line cut out of the stream."""
        if self.args.verbose:
            print(f"s_server: {m.group(0).decode().rstrip()} (cut out of the stream; parser: "
                  f"{self.state}, {len(self.buf)} bytes pending)", file=sys.stderr, flush=True)
        if m.group(1) is not None:
            event = "key_update" if self.summary else "stale_key_update"
            self.write_log({"event": event, "result": int(m.group(1)), "conn": self.conn})
        elif m.group(0) == b"CONNECTION CLOSED\n":
            if self.state != "line" or self.buf:
                self.say(f"connection {self.conn} closed inside a request ({self.state}, "
                         f"{len(self.buf)} bytes unparsed): dropped")
            self.buf.clear()
            self.state = "line"
            self.next_connection()

    def feed(self, chunk: bytes) -> None:
        """Decrypted data and report lines, as read from s_server's stdout."""
        pos = 0
        for m in SCRUB.finditer(chunk):
            self.buf += chunk[pos:m.start()]
            self.parse()
            self.scrubbed(m)
            pos = m.end()
        self.buf += chunk[pos:]
        self.parse()

    def take_line(self) -> bytes | None:
        i = self.buf.find(b"\n")
        if i < 0:
            return None
        line = bytes(self.buf[:i + 1])
        del self.buf[:i + 1]
        return line

    def parse(self) -> None:
        """Consumes every complete request line, header line and body in the buffer."""
        while True:
            if self.state == "line":
                line = self.take_line()
                if line is None:
                    return
                m = REQUEST_LINE.fullmatch(line)
                if not m:
                    self.info(line)
                    continue
                self.method = m.group(1).decode()
                self.path = m.group(2).decode("utf-8", "replace")
                self.headers = {}
                self.state = "headers"
            elif self.state == "headers":
                line = self.take_line()
                if line is None:
                    return
                if line == b"\r\n":
                    self.start_body()
                elif not line.endswith(b"\r\n"):
                    self.info(line)
                else:
                    name, sep, value = line[:-2].decode("latin-1").partition(":")
                    if not sep:
                        self.say(f"bad header line {line!r}")
                        continue
                    key, value = name.strip().lower(), value.strip()
                    self.headers[key] = (f"{self.headers[key]}, {value}" if key in self.headers
                                         else value)
            else:
                if len(self.buf) < self.length:
                    return
                body = bytes(self.buf[:self.length])
                del self.buf[:self.length]
                self.state = "line"
                self.answer(body)

    def start_body(self) -> None:
        self.error = None
        self.length = 0
        if "transfer-encoding" in self.headers:
            self.error = "Transfer-Encoding is not supported (Content-Length only)"
        elif "content-length" in self.headers:
            text = self.headers["content-length"]
            if text.isdigit() and int(text) <= MAX_BODY:
                self.length = int(text)
            else:
                self.error = f"bad Content-Length {text!r}"
        self.state = "body"

    def answer(self, body: bytes) -> None:
        self.seq += 1
        # KeyUpdate is TLS 1.3 only (OpenSSL's TLS 1.3 suite names start with TLS_).
        update = (self.args.key_update_every is not None
                  and self.seq % self.args.key_update_every == 0
                  and (self.cipher or "").startswith("TLS_"))
        record = {"method": self.method, "path": self.path, "headers": self.headers,
                  "body": body.decode("utf-8", "replace"), "len": len(body), "seq": self.seq,
                  "conn": self.conn, "cipher": self.cipher, "key_update_after": update}
        if self.error is not None:
            record["error"] = self.error
        self.write_log(record)
        self.writes.put((self.conn, RESPONSE))
        if update:
            self.writes.put((self.conn, KEY_UPDATE))

    def serve(self) -> None:
        """Reads s_server's stdout until it ends, draining the pipe on every read."""
        fd = self.stdout_fd
        eof = False
        while not eof:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            while select.select([fd], [], [], 0)[0]:
                more = os.read(fd, 1 << 16)
                if not more:
                    eof = True
                    break
                chunk += more
            self.feed(chunk)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, metavar="IP:PORT", help="s_server's -accept")
    ap.add_argument("--cert", required=True, help="server certificate (PEM)")
    ap.add_argument("--key", required=True, help="its private key (PEM)")
    ap.add_argument("--log", metavar="FILE", help="append one JSON line per request")
    ap.add_argument("--key-update-every", type=int, metavar="N",
                    help="send a TLS 1.3 KeyUpdate (update_requested) after every N-th response")
    ap.add_argument("--openssl", default="openssl", help="the openssl binary")
    ap.add_argument("--verbose", action="store_true", help="copy s_server's report to stderr")
    args = ap.parse_args(argv)
    if args.key_update_every is not None and args.key_update_every < 1:
        ap.error("--key-update-every must be >= 1")

    relay = Relay(args, extra)
    stop = threading.Event()

    def on_signal(*_) -> None:
        stop.set()
        relay.proc.kill()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    threading.Thread(target=relay.writer, daemon=True).start()
    reader = threading.Thread(target=relay.serve, daemon=True)
    reader.start()
    while reader.is_alive():
        reader.join(0.2)
    relay.writes.put(None)
    code = relay.proc.wait()
    if relay.log is not None:
        relay.log.close()
    if stop.is_set():
        print("stopped", flush=True)
        return 0
    print(f"s_server_relay: s_server exited ({code})", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
