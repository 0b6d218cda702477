"""The socket side of `mnist-edge serve`: uvicorn, with the limits a device server needs and
uvicorn lacks.

- At most `max_connections` open at once: one more gets a 503 and is closed at once, so idle
  or half-open connections cannot use up the process's file descriptors.
- A request's head must arrive within `header_timeout_s` of the connection opening (or of the
  previous answer on a kept-alive one); otherwise a 408 and the connection is closed. The body
  has its own deadline in the app (`ServerConfig.timeout_s`).
- On SIGTERM, connections already waiting in the listen backlog are accepted and answered
  before the listening socket closes (closing it resets them).
"""

from __future__ import annotations

import asyncio
import json
import resource
import select
import socket
import time
import warnings

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from runtime.errors import InputWarning
from runtime.server import ServerConfig

BACKLOG_DRAIN_S = 2.0  # at most this long accepting what was already waiting, at a stop
_FD_MARGIN = 64  # descriptors the process needs besides its connections (model, logs, pipes)


def _raw_answer(status: str, message: str) -> bytes:
    """A whole HTTP answer, written before any request was read; the connection closes after."""
    body = json.dumps({"error": message}).encode()
    retry = "retry-after: 1\r\n" if status.startswith("503") else ""
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{retry}connection: close\r\n\r\n"
    )
    return head.encode() + body


class _GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a connection cap and a deadline for each request head."""

    max_connections = 256
    header_timeout_s = 5.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= self.max_connections:
            self.transport = transport  # connection_lost closes it
            transport.write(_raw_answer("503 Service Unavailable", "busy: too many connections"))
            transport.close()
            return
        super().connection_made(transport)
        self._start_head_timer()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's head is complete
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        self._start_head_timer()  # for the next request on this connection
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle and not self.cycle.response_complete):
            return
        message = f"expected a request within {self.header_timeout_s:g} s"
        self.transport.write(_raw_answer("408 Request Timeout", message))
        self.transport.close()


class _DrainingServer(uvicorn.Server):
    """Accepts the connections already in the backlog before the listening socket closes."""

    async def shutdown(self, sockets=None) -> None:
        listening = [s for server in self.servers for s in (server.sockets or ())]
        deadline = time.monotonic() + BACKLOG_DRAIN_S
        while time.monotonic() < deadline and _pending(listening):
            await asyncio.sleep(0.01)  # asyncio's accept loop takes them meanwhile
        for server in self.servers:  # at once after the check: nothing new can wait unseen
            server.close()
        await asyncio.sleep(0.1)  # the last ones accepted read their requests: in flight now
        await super().shutdown(sockets)


def _pending(sockets) -> bool:
    """Whether a listening socket has connections waiting to be accepted."""
    try:
        return bool(select.select([s.fileno() for s in sockets], [], [], 0)[0])
    except (OSError, ValueError):  # closed meanwhile
        return False


def make_server(app, sock: socket.socket, config: ServerConfig) -> uvicorn.Server:
    """A uvicorn server for `app` on the bound socket `sock`, with `config`'s connection limits;
    `sock` listens when this returns."""
    _allow_descriptors(config.max_connections + _FD_MARGIN)
    protocol = type(
        "GuardedH11",
        (_GuardedH11,),
        {
            "max_connections": config.max_connections,
            "header_timeout_s": config.header_timeout_s,
        },
    )
    settings = uvicorn.Config(
        app,
        http=protocol,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=config.timeout_s + 5,
    )
    # Listening now, before the caller says it serves: a client that starts on that line waits
    # in the backlog until the server accepts instead of being refused.
    sock.listen(settings.backlog)
    return _DrainingServer(settings)


def _allow_descriptors(needed: int) -> None:
    """Raise the soft file-descriptor limit to `needed` where the hard one allows; else warn."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    warnings.warn(
        f"--max-connections: the process may open {hard} files, fewer than the {needed} "
        "the connections need: lower --max-connections or raise `ulimit -n`",
        InputWarning,
        stacklevel=2,
    )
