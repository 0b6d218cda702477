"""What hostile and careless clients cost `mnist-edge serve` with its default limits: memory,
descriptors, and whether it keeps answering. Each case starts a fresh server on 127.0.0.1 with
the shipped default model. Writes benchmarks/results/hostile_clients.json.

    python benchmarks/hostile_clients.py        # about a minute; needs pip install '.[serve]'

- idle: resident memory of a server that has answered one request;
- half-open: 300 connections that send nothing (the cap is 256): how many are refused at once,
  descriptors held, and how long until a new client is answered again;
- stalled uploads: 48 clients declare 7 MB bodies, send them but one byte, and wait;
- large requests: 100 clients at once, each with 4,096 images (a 3.2 MB .npy);
- a 40 MP PNG of 140 KB, and /healthz latency while a 14 MP PNG is being decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, *args: str):
        command = [sys.executable, "-m", "runtime.cli", "serve", "--port", "0", *args]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        while self.get("/healthz")[0] != 200:
            time.sleep(0.05)

    def request(self, method: str, path: str, body: bytes = b"", timeout: float = 30):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            s.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0, data

    def get(self, path: str):
        try:
            return self.request("GET", path, timeout=5)
        except OSError:
            return 0, b""

    def memory_mb(self, field: str = "VmRSS") -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            line = next(x for x in f if x.startswith(field + ":"))
        return round(int(line.split()[1]) / 1024, 1)

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def npy(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, images)
    return buffer.getvalue()


def png(side_w: int, side_h: int) -> bytes:
    img = Image.new("RGBA", (side_w, side_h), (255, 255, 255, 255))
    box = (side_w // 3, side_h // 4, 2 * side_w // 3, 3 * side_h // 4)
    ImageDraw.Draw(img).ellipse(box, outline=(0, 0, 0, 255), width=max(side_w // 20, 1))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def status(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except (TimeoutError, ConnectionResetError):
        return "none"
    return data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed"


def half_open() -> dict:
    s = Server()
    try:
        before = s.descriptors()
        socks = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(300)]
        time.sleep(0.5)
        held = s.descriptors() - before
        at_cap = s.get("/healthz")[0]
        start = time.monotonic()
        while s.get("/healthz")[0] != 200 and time.monotonic() - start < 30:
            time.sleep(0.1)
        answered_after = time.monotonic() - start
        answers = [status(sock, 1) for sock in socks]
        for sock in socks:
            sock.close()
        return {
            "connections": 300,
            "descriptors_held": held,
            "healthz_at_the_cap": at_cap,
            "healthz_200_again_after_s": round(answered_after, 1),
            "answers": {a: answers.count(a) for a in sorted(set(answers))},
            "rss_mb": s.memory_mb(),
        }
    finally:
        s.stop()


def stalled_uploads() -> dict:
    s = Server()
    try:
        idle = s.memory_mb()
        body = b"\0" * (7 << 20)
        socks = []
        for _ in range(48):
            sock = socket.create_connection(("127.0.0.1", s.port))
            head = f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            with contextlib.suppress(OSError):
                sock.sendall(head.encode() + body[:-1])
            socks.append(sock)
        time.sleep(1.0)
        during = s.memory_mb()
        healthz = s.get("/healthz")[0]
        answers = [status(sock, 15) for sock in socks]
        for sock in socks:
            sock.close()
        return {
            "uploads": 48,
            "body_mb": 7,
            "rss_idle_mb": idle,
            "rss_while_stalled_mb": during,
            "healthz_while_stalled": healthz,
            "answers": {a: answers.count(a) for a in sorted(set(answers))},
        }
    finally:
        s.stop()


def large_requests() -> dict:
    s = Server()
    try:
        idle = s.memory_mb()
        body = npy(np.random.default_rng(0).integers(0, 256, (4096, 28, 28), dtype=np.uint8))

        def client(_):
            try:
                return s.request("POST", "/v1/predict", body)[0]
            except ConnectionResetError:
                return "reset"

        with ThreadPoolExecutor(100) as pool:
            codes = list(pool.map(client, range(100)))
        return {
            "clients": 100,
            "images_each": 4096,
            "rss_idle_mb": idle,
            "peak_rss_mb": s.memory_mb("VmHWM"),
            "answers": {str(c): codes.count(c) for c in sorted(set(codes))},
        }
    finally:
        s.stop()


def big_images() -> dict:
    s = Server()
    try:
        bomb = png(8000, 5000)
        start = time.perf_counter()
        code = s.request("POST", "/v1/predict", bomb)[0]
        refused_in = time.perf_counter() - start
        quiet = [_timed(s.get, "/healthz") for _ in range(50)]
        decoding, done = [], threading.Event()
        big = png(3800, 3800)

        def upload():
            s.request("POST", "/v1/predict", big)
            done.set()

        threading.Thread(target=upload).start()
        while not done.is_set():
            decoding.append(_timed(s.get, "/healthz"))
        return {
            "png_40mp_bytes": len(bomb),
            "png_40mp_status": code,
            "png_40mp_answered_ms": round(refused_in * 1000, 1),
            "healthz_p50_ms_idle": round(float(np.median(quiet)) * 1000, 2),
            "healthz_p50_ms_during_14mp_decode": round(float(np.median(decoding)) * 1000, 2),
            "healthz_answers_during_decode": len(decoding),
        }
    finally:
        s.stop()


def _timed(call, *args) -> float:
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    report = {}
    for name, case in (
        ("half_open", half_open),
        ("stalled_uploads", stalled_uploads),
        ("large_requests", large_requests),
        ("big_images", big_images),
    ):
        report[name] = case()
        print(f"{name:16} {json.dumps(report[name])}")
    out = args.out / "hostile_clients.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
