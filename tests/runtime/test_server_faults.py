"""`mnist-edge serve` against hostile and careless clients: the server keeps serving, holds
bounded memory and descriptors, answers each fault with a clean HTTP status and no traceback,
and stops when asked. Every client talks to 127.0.0.1; every loop is bounded in count and time."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

pytest.importorskip("starlette", reason="needs the serve extra: pip install '.[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install '.[serve]'")

from runtime.cli import app
from tests.conftest import slow_onnx
from tests.runtime.test_server import DIGIT, Server, npy

BRIGHT = np.full((1, 28, 28), 255, np.uint8)  # the slow model's long call
DARK = np.zeros((1, 28, 28), np.uint8)  # its quick one


def raw_request(body: bytes, content_length: int | None = None) -> bytes:
    length = len(body) if content_length is None else content_length
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    return head.encode() + body


def read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def status_of(answer: bytes) -> str:
    return answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "none"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stop_and_stderr(server: Server) -> tuple[int, str]:
    code = server.stop()
    return code, server.process.stderr.read()


# --- outages ---------------------------------------------------------------------------------


def test_a_request_that_timed_out_in_the_queue_leaves_the_server_serving(tmp_path):
    # A bright image keeps the slow model busy for about 2 s; the dark one behind it times out
    # while queued (its Future is cancelled). That used to kill the batcher's thread for good.
    model = slow_onnx(tmp_path / "slow.onnx", 3e6)
    s = Server("--model", str(model), "--timeout", "0.3", "--max-batch", "1", "--max-delay-us", "0")
    try:
        with ThreadPoolExecutor(2) as pool:
            long = pool.submit(s.predict, npy(BRIGHT))
            time.sleep(0.1)
            queued = pool.submit(s.predict, npy(DARK))
            assert long.result(30)[0] == 504 and queued.result(30)[0] == 504
        code, body, _ = s.request("GET", "/healthz")  # the long call is still running
        assert code == 503 and "one inference call has run for" in json.loads(body)["reason"]
        deadline = time.monotonic() + 30
        while s.request("GET", "/healthz")[0] != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.05)
        assert [s.predict(npy(DARK))[0] for _ in range(3)] == [200] * 3
    finally:
        code, stderr = stop_and_stderr(s)
    assert code == 0 and "Traceback" not in stderr


def test_sigterm_with_a_stuck_model_and_a_full_queue_ends(tmp_path):
    model = slow_onnx(tmp_path / "forever.onnx", 1e15)
    s = Server("--model", str(model), "--timeout", "1", "--max-queue", "2", "--max-batch", "1")
    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(s.predict, npy(BRIGHT)) for _ in range(4)]
        time.sleep(0.5)  # one call stuck, two queued, one refused
        s.process.send_signal(signal.SIGTERM)
        codes = sorted(a.result(30)[0] for a in answers)
    assert s.process.wait(timeout=30) == 0
    # Each got an answer: the queue's bound refused at least one (which ones depends on when the
    # batcher took the first off the queue), and the stuck and queued ones were told 504.
    assert len(codes) == 4 and set(codes) == {503, 504}, codes


def test_requests_waiting_in_the_backlog_at_sigterm_are_answered_not_reset(tiny_model):
    # 16 clients connect and post as fast as they can; SIGTERM comes mid-way. A connection
    # refused after the stop is fine; one accepted by the kernel and then reset is not.
    s = Server("--model", str(tiny_model))
    request = raw_request(DIGIT.read_bytes())
    outcomes, lock = [], threading.Lock()
    stop_at = [time.monotonic() + 20]  # until 0.7 s after SIGTERM

    def client():
        while time.monotonic() < stop_at[0]:
            try:
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            except ConnectionRefusedError:
                time.sleep(0.01)
                continue
            try:
                sock.sendall(request)
                outcome = status_of(read_all(sock, 10))
            except (ConnectionResetError, BrokenPipeError):
                outcome = "reset"
            finally:
                sock.close()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    while len(outcomes) < 40 and time.monotonic() < stop_at[0] - 10:  # a busy machine is slow
        time.sleep(0.05)
    s.process.send_signal(signal.SIGTERM)
    stop_at[0] = time.monotonic() + 0.7
    for t in threads:
        t.join(30)
    assert s.process.wait(timeout=30) == 0
    assert len(outcomes) >= 40 and set(outcomes) == {"200"}, {
        o: outcomes.count(o) for o in outcomes
    }


# --- connections, slow clients, memory -------------------------------------------------------


def test_idle_connections_are_capped_and_closed_when_no_request_comes(tiny_model):
    s = Server("--model", str(tiny_model), "--max-connections", "20", "--header-timeout", "1")
    before = open_descriptors(s.process.pid)
    socks = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(40)]
    try:
        time.sleep(0.3)
        held = open_descriptors(s.process.pid)
        answers = [status_of(read_all(sock, 5)) for sock in socks]
        after = s.request("GET", "/healthz")[0]
    finally:
        for sock in socks:
            sock.close()
        code, stderr = stop_and_stderr(s)
    assert answers.count("503") == 20 and answers.count("408") == 20  # over the cap; too slow
    assert held - before <= 20 + 2  # what is over the cap is closed at once
    assert after == 200 and code == 0 and "Traceback" not in stderr


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(tiny_model):
    # A byte every 0.1 s would take 6 s for this head; the server ends it after about 1 s.
    s = Server("--model", str(tiny_model), "--header-timeout", "1")
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    start, answer, closed_after = time.monotonic(), b"", None
    try:
        for byte in b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 20:
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
                answer += sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue  # nothing from the server yet
            except (BrokenPipeError, ConnectionResetError):
                pass
            closed_after = time.monotonic() - start
            break
    finally:
        sock.close()
        s.stop()
    assert closed_after is not None and closed_after < 3
    assert answer == b"" or status_of(answer) == "408"


def test_stalled_uploads_hold_no_more_than_the_inflight_budget(tiny_model):
    # Ten clients declare 4 MB bodies, send 3 MB and stall. 8 MiB in flight admits two; the
    # others' bytes are read and dropped (so that a client still sending would hear its 503).
    # Unbounded, the 30 MB sent were held; after --timeout, all get 408 and memory is free.
    s = Server("--model", str(tiny_model), "--max-inflight", str(8 << 20), "--timeout", "3")
    rss_before = rss_kib(s.process.pid)
    socks = []
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            sock.sendall(raw_request(b"\0" * (3 << 20), content_length=4 << 20))
            socks.append(sock)
        time.sleep(0.5)
        rss_during = rss_kib(s.process.pid)
        answers = [status_of(read_all(sock, 8)) for sock in socks]
        later = s.predict(npy(DARK))[0]
    finally:
        for sock in socks:
            sock.close()
        code, stderr = stop_and_stderr(s)
    assert answers == ["408"] * 10
    assert rss_during - rss_before < 16 * 1024, f"RSS grew {rss_during - rss_before} KiB"
    assert later == 200 and code == 0 and "Traceback" not in stderr


def test_a_request_over_the_budget_hears_its_503(tiny_model):
    # Refused from its Content-Length while it was still sending, a client used to get a
    # reset (a socket closed with unread data) instead of the answer.
    s = Server("--model", str(tiny_model), "--max-inflight", str(1 << 20))
    body = npy(np.resize(DARK, (4096, 28, 28)))  # 3.2 MB, over the 1 MiB at once
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            request = raw_request(body)
            for start in range(0, len(request), 1 << 16):
                sock.sendall(request[start : start + (1 << 16)])
                time.sleep(0.001)
            answer = read_all(sock, 10)
    finally:
        s.stop()
    assert status_of(answer) == "503" and b"for requests in progress is taken" in answer


def test_many_large_requests_keep_peak_memory_near_the_inflight_budget(tiny_model):
    # 24 clients at once, each with 4,096 images (3.2 MB). Unbounded, every body and array is
    # held at once (about 150 MB); with 16 MiB in flight the excess is refused with 503.
    s = Server("--model", str(tiny_model), "--max-inflight", str(16 << 20))
    body = npy(np.resize(DARK, (4096, 28, 28)))
    peak_before = rss_kib(s.process.pid, "VmHWM")
    try:
        with ThreadPoolExecutor(24) as pool:
            codes = list(pool.map(lambda _: s.predict(body)[0], range(24)))
        peak = rss_kib(s.process.pid, "VmHWM")
    finally:
        s.stop()
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes
    assert peak - peak_before < 64 * 1024, f"peak RSS grew {peak - peak_before} KiB"


def big_png(side: int) -> bytes:
    """A digit on a side x side RGBA page: a few KB of PNG that decodes to 4 bytes a pixel."""
    img = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    ring = (side // 3, side // 4, 2 * side // 3, 3 * side // 4)
    ImageDraw.Draw(img).ellipse(ring, outline=(0, 0, 0, 255), width=side // 20)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def test_an_image_over_the_pixel_cap_is_refused_from_its_header(tiny_model):
    s = Server("--model", str(tiny_model))
    try:
        status, answer, _ = s.predict(big_png(4100))  # 16.8 MP, a PNG of about 80 KB
    finally:
        s.stop()
    assert status == 413 and "at most 16,000,000 pixels, found 4100x4100" in answer["error"]


def test_a_large_image_is_decoded_off_the_event_loop(tiny_model):
    # A 14 MP PNG takes a few hundred ms to decode, a /healthz round trip about 1 ms: asked
    # back to back meanwhile, /healthz answers many times while the upload is being decoded.
    # Decoded on the event loop, it answered at most once or twice, after the decode.
    s = Server("--model", str(tiny_model))
    body = big_png(3800)
    done = threading.Event()
    health = []

    def ask_health():
        while not done.is_set():
            health.append((time.monotonic(), s.request("GET", "/healthz")[0]))

    try:
        asker = threading.Thread(target=ask_health)
        asker.start()
        time.sleep(0.05)
        sent = time.monotonic()
        status = s.predict(body)[0]
        answered = time.monotonic()
        done.set()
        asker.join(30)
    finally:
        s.stop()
    during = [code for at, code in health if sent < at < answered]
    assert status == 200 and len(during) >= 10 and set(during) == {200}, len(during)


# --- bodies that lie, clients that leave -----------------------------------------------------


def npy_header_only(shape: tuple) -> bytes:
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (npy_header_only((10**9, 28, 28)) + b"\0" * 100, 400, "found 100 bytes of data"),
        (npy_header_only((10**15, 784)) + b"\0" * 784, 400, "found 784 bytes of data"),
        (npy_header_only((5000, 28, 28)) + b"\0" * 5000 * 784, 400, "at most 4096 images"),
        (b"\x93NUMPY\x03\x00" + b"\0" * 100, 400, "cannot read .npy array"),
    ],
    ids=["huge-shape", "absurd-shape", "too-many-images", "format-3"],
)
def test_npy_bodies_that_lie_about_their_size_are_400s(tiny_model, body, code, fragment):
    s = Server("--model", str(tiny_model))
    try:
        status, answer, _ = s.predict(body)
    finally:
        stop_code, stderr = stop_and_stderr(s)
    assert status == code and fragment in answer["error"]
    assert stop_code == 0 and "Traceback" not in stderr and "MemoryError" not in stderr


def test_a_client_that_leaves_mid_body_leaves_no_traceback(tiny_model):
    s = Server("--model", str(tiny_model))
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(raw_request(b"\0" * 1000, content_length=100_000))
        time.sleep(0.1)
        sock.close()
    time.sleep(0.3)
    assert s.predict(DIGIT.read_bytes())[0] == 200
    code, stderr = stop_and_stderr(s)
    assert code == 0 and stderr == ""


# --- tokens, what /healthz tells -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--token", ""], {}, "--token: expected a token, found an empty one"),
        (["--token", " s3cret"], {}, "found ' ' at position 1"),
        (["--token", "s3cret\n"], {}, "found '\\n' at position 7"),
        (["--token", "pässword"], {}, "found 'ä' at position 2"),
        ([], {"MNIST_EDGE_TOKEN": ""}, "MNIST_EDGE_TOKEN: expected a token, found an empty one"),
        ([], {"MNIST_EDGE_TOKEN": "two words"}, "MNIST_EDGE_TOKEN: expected visible ASCII"),
    ],
    ids=["empty", "leading-space", "newline", "non-ascii", "empty-env", "space-in-env"],
)
def test_a_token_no_client_could_send_is_refused_at_start(tiny_model, args, env, fragment):
    result = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), *args], env=env)
    assert result.exit_code == 2 and fragment in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_healthz_tells_no_paths(tiny_model):
    s = Server("--model", str(tiny_model), env={"MNIST_EDGE_TOKEN": "s3cret"})
    try:
        code, body, _ = s.request("GET", "/healthz")
    finally:
        s.stop()
    assert code == 200 and json.loads(body) == {"status": "ready"}
