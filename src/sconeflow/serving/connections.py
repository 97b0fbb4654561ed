"""HTTP connections that a slow or greedy client cannot hold: uvicorn's httptools protocol
with deadlines for idle connections and request headers, and a limit on header size.

What uvicorn offers, and why it is not enough on its own:
- `timeout_keep_alive` is armed only when a response completes, and any byte that arrives
  cancels it. A new connection that sends nothing, or a request whose header lines come
  one a minute, is kept as long as the client likes: 1,000 such connections were held.
- `limit_concurrency` answers 503 to everyone once the limit is reached, slow clients and
  good ones alike.
- httptools has no limit on header size (h11's `h11_max_incomplete_event_size` applies to
  h11 only), and it buffers a header value until the line ends.

What this protocol adds (the deadlines are kept by `Deadlines`, one timer per worker, and
registered only while they matter, so a request that arrives whole costs nothing extra):
- an idle connection (new, or between requests) is closed `keep_alive_s` after it went
  idle, whatever bytes that are not a request it sends meanwhile;
- once a request's first byte is in, its headers must be complete within
  `read_timeout_s`, else the client is answered 408 and the connection closed;
- headers over MAX_HEADER_BYTES are answered 431 and the connection closed;
- a body the app answered without reading (413, 404, ...) is read and thrown away, as
  uvicorn does, for at most `read_timeout_s`; then the connection is closed. Closing at
  once would reset the connection under a client still sending, which then never sees
  the answer.

The body's deadline is the app's (app.py `_read_body`): it knows when it starts reading a
body, and a request waiting for room in the body budget is not the client's fault.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 << 10  # request line and headers; nginx's default is 8-32 KiB


class Deadlines:
    """Deadlines of one worker's connections and requests, checked by one timer.

    A timer per request costs the event loop 1-5 us to arm and cancel here (uvloop, this
    2-core VM), against ~16 us for the whole handler; registering a deadline here is a
    dict insert and a pop. The check runs every `tick` seconds while any deadline is
    registered, so one fires up to `tick` late.
    """

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._due: dict[Hashable, tuple[float, Callable[[Any], None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: Hashable, seconds: float, expire: Callable[[Any], None]) -> None:
        """Call `expire(key)` once `seconds` have passed, unless `discard(key)` comes first."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._due[key] = (loop.time() + seconds, expire)
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._check)

    def discard(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def _check(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        late = [(key, expire) for key, (due, expire) in self._due.items() if due <= now]
        for key, expire in late:
            del self._due[key]
            expire(key)
        self._timer = self._loop.call_later(self.tick, self._check) if self._due else None


def _answer(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"code": "ValidationError", "message": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"x-amzn-errortype: ValidationError\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with the deadlines of the module docstring. Subclassed per server
    by `guarded_protocol` with its settings as class attributes (uvicorn builds one
    protocol per connection from the class)."""

    read_timeout: float = 20.0
    deadlines: Deadlines
    on_timeout: Callable[[], None] = staticmethod(lambda: None)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since: float | None = None
        self._in_headers = False
        self._header_bytes = 0
        self._timed = False  # a header deadline is registered
        self._lingering = False  # a deadline for throwing away an unread body
        self._went_idle(self.loop.time())

    def data_received(self, data: bytes) -> None:
        idle_since = self._idle_since
        super().data_received(data)  # parses; cancels uvicorn's keep-alive timer
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(431, "Request Header Fields Too Large",
                             f"the request headers exceed {MAX_HEADER_BYTES} bytes")  # fmt: skip
            elif not self._timed:
                self._timed = True
                self.deadlines.add(self, self.read_timeout, _headers_too_slow)
        elif idle_since is not None and self._idle_since is not None and not self.pipeline:
            # Bytes that began no request (blank lines): the connection is as idle as before.
            self._went_idle(idle_since)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._idle_since = None

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._timed:
            self._timed = False
            self.deadlines.discard(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._lingering:
            self._lingering = False
            self.deadlines.discard(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer when idle
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.more_body:  # answered before the body ended
            self._lingering = True
            self.deadlines.add(self, self.read_timeout, _stop_lingering)
        elif not self.pipeline:
            self._idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timed or self._lingering:
            self._timed = self._lingering = False
            self.deadlines.discard(self)
        super().connection_lost(exc)

    def _went_idle(self, since: float) -> None:
        """(Re)arm the keep-alive timer for an idle period that began at `since`."""
        self._idle_since = since
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        left = max(0.0, since + self.timeout_keep_alive - self.loop.time())
        self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)

    def too_slow(self) -> None:
        """The header deadline passed: answer 408 and close."""
        self._timed = False
        self.on_timeout()
        self._refuse(408, "Request Timeout",
                     f"the request headers did not arrive within {self.read_timeout:g} s "
                     "(SCONEFLOW_READ_TIMEOUT); send the whole request at once")  # fmt: skip

    def _refuse(self, status: int, reason: str, message: str) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # not inside another answer
            self.transport.write(_answer(status, reason, message))
        self.transport.close()


def _headers_too_slow(protocol: GuardedProtocol) -> None:
    protocol.too_slow()


def _stop_lingering(protocol: GuardedProtocol) -> None:
    protocol._lingering = False
    protocol.transport.close()


def guarded_protocol(
    read_timeout: float, deadlines: Deadlines, on_timeout: Callable[[], None]
) -> type[Any]:
    """A GuardedProtocol class for one server: uvicorn.Config(http=...) takes a class."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {"read_timeout": read_timeout, "deadlines": deadlines,
         "on_timeout": staticmethod(on_timeout)},
    )  # fmt: skip
