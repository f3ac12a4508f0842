#!/usr/bin/env python3
"""A dashboard-stream client that stops reading at the TCP level, over a connection shaped like a real link.

On loopback the kernel's socket buffers swallow megabytes (the 64 KiB loopback MSS lets the send buffer grow to
tcp_wmem's maximum), so a paused Node client never makes the server buffer anything. A small MSS and receive
buffer, set before connecting, bring that down to tens of KiB as on a network; Node cannot set them, Python's
standard library can (and Python 3 is present wherever better-sqlite3 builds: node-gyp needs it).

usage: slow-reader.py HOST PORT TOKEN JOB_ID [AFTER_SEQUENCE]
With JOB_ID "-" it connects, prints {"phase": "connected"} and reads the job id from a line on stdin first, so that a
test can start it (Python's start-up is slow on a loaded machine) before the job exists and subscribe at once.
Subscribes to the job without reading, prints {"phase": "paused"}, reads nothing until a line arrives on stdin, then
prints {"phase": "reading"}, reads every message and prints a summary once the result arrived.
"""
import base64
import json
import os
import socket
import struct
import sys


def main() -> None:
    host, port, token, job_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    after = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Protocol: bearer.{token}\r\n\r\n").encode())
    reader = FrameReader(sock)
    status = reader.read_head()
    if not status.startswith("HTTP/1.1 101"):
        raise SystemExit(f"upgrade refused: {status}")
    if job_id == "-":
        print(json.dumps({"phase": "connected"}), flush=True)
        job_id = sys.stdin.readline().strip()
    send_text(sock, {"type": "subscribe", "jobId": job_id, "afterSequence": after})
    print(json.dumps({"phase": "paused"}), flush=True)
    sys.stdin.readline()
    print(json.dumps({"phase": "reading"}), flush=True)

    sequences, coalesced, kinds = [], 0, {}
    while True:
        opcode, payload = reader.read_frame()
        if opcode == 0x9:  # ping: answer, as a browser would
            send_frame(sock, 0xA, payload)
            continue
        if opcode == 0x8:
            raise SystemExit("the server closed the socket before the result")
        if opcode != 0x1:
            continue
        message = json.loads(payload)
        if message["type"] == "error":
            raise SystemExit(f"error: {message}")
        if message["type"] != "event" or message["jobId"] != job_id:
            continue
        event = message["event"]
        sequences.append(event["sequence"])
        kind = next(k for k in ("queued", "started", "progress", "restartResult", "result") if k in event)
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "progress":
            coalesced += event["progress"].get("coalesced", 0)
        if kind == "result":
            print(json.dumps({"phase": "done", "sequences": sequences, "kinds": kinds, "coalesced": coalesced,
                              "status": event["result"]["status"]}), flush=True)
            send_frame(sock, 0x8, struct.pack("!H", 1000))
            sock.close()
            return


class FrameReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("connection closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_head(self) -> str:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit("connection closed during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head.decode().split("\r\n")[0]

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self.take(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.take(8))[0]
        return first & 0x0F, self.take(length)  # the server does not fragment, and does not mask


def send_text(sock: socket.socket, message: dict) -> None:
    send_frame(sock, 0x1, json.dumps(message).encode())


def send_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    n = len(payload)
    header += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


if __name__ == "__main__":
    main()
