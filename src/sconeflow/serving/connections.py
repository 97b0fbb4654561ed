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
  `read_timeout_s`, and then its body within `read_timeout_s` more, else the client is
  answered 408 and the connection closed. Time during which the worker itself stopped
  reading (uvicorn's flow control: a large body waiting for room in the body budget, a
  pipelined request waiting its turn) does not count against the client;
- headers over MAX_HEADER_BYTES are answered 431 and the connection closed;
- a body the app answered without reading (413, 404, 503) is read and thrown away, as
  uvicorn does, until its deadline; then the connection is closed. Closing at once would
  reset the connection under a client still sending, which then never sees the answer.
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

    # These methods run for every request, on top of uvicorn's, so two things are kept
    # cheap. Slots, not the instance dict: uvicorn's protocol has 28 instance
    # attributes and CPython 3.11 shares one key table per class for at most 30; five more
    # in the dict make every protocol's attributes a plain dict, and each `self.x` in
    # uvicorn's per-request code ~20 instructions slower. And the base class called by
    # name, not through super(), which builds a proxy object per call. Measured with
    # callgrind (tiny model, concurrency 64, instructions per request): uvicorn's own
    # protocol 643k, this class with dict state and super() 655k, as now 647k.
    __slots__ = ("_deadline", "_header_bytes", "_idle_since", "_in_body", "_in_headers")

    read_timeout: float = 20.0
    deadlines: Deadlines
    on_timeout: Callable[[], None] = staticmethod(lambda: None)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since: float | None = None
        self._in_headers = False  # between a request's first byte and its blank line
        self._in_body = False  # between its blank line and its last body byte
        self._deadline = False  # a read deadline is registered
        self._header_bytes = 0
        self._went_idle(self.loop.time())

    def data_received(self, data: bytes) -> None:
        idle_since = self._idle_since
        HttpToolsProtocol.data_received(self, data)  # parses; cancels uvicorn's keep-alive timer
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(431, "Request Header Fields Too Large",
                             f"the request headers exceed {MAX_HEADER_BYTES} bytes")  # fmt: skip
                return
        if self._in_headers or self._in_body:
            if not self._deadline:  # a request that arrived whole never gets here
                self._deadline = True
                self.deadlines.add(self, self.read_timeout, _expired)
        elif idle_since is not None and self._idle_since is not None and not self.pipeline:
            # Bytes that began no request (blank lines): the connection is as idle as before.
            self._went_idle(idle_since)

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._in_headers = True
        self._header_bytes = 0
        self._idle_since = None

    def on_headers_complete(self) -> None:
        self._in_headers, self._in_body = False, True
        if self._deadline:  # the body has a deadline of its own, from now
            self._stop_deadline()
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self._in_body = False
        if self._deadline:
            self._stop_deadline()

    def on_response_complete(self) -> None:
        HttpToolsProtocol.on_response_complete(self)  # arms uvicorn's keep-alive timer when idle
        if not self.transport.is_closing() and not self._in_body and not self.pipeline:
            self._idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def expired(self) -> None:
        """The read deadline passed: 408 and close (just close when an answer is under
        way, or was given to a body that is still coming)."""
        self._deadline = False
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if self._in_body and self.flow.read_paused and not (cycle and cycle.response_started):
            # The worker stopped reading (a body waiting for room in the body budget, or a
            # pipelined request waiting its turn): that time is not the client's.
            self._deadline = True
            self.deadlines.add(self, self.read_timeout, _expired)
            return
        if cycle is None or not cycle.response_started or self._in_headers:
            self.on_timeout()
            part = "headers" if self._in_headers else "body"
            self._refuse(408, "Request Timeout",
                         f"the request {part} did not arrive within {self.read_timeout:g} s "
                         "(SCONEFLOW_READ_TIMEOUT); send the whole request at once")  # fmt: skip
        self.transport.close()

    def _stop_deadline(self) -> None:
        if self._deadline:
            self._deadline = False
            self.deadlines.discard(self)

    def _went_idle(self, since: float) -> None:
        """(Re)arm the keep-alive timer for an idle period that began at `since`."""
        self._idle_since = since
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        left = max(0.0, since + self.timeout_keep_alive - self.loop.time())
        self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self.transport.write(_answer(status, reason, message))  # not inside an answer
        self.transport.close()


def _expired(protocol: GuardedProtocol) -> None:
    protocol.expired()


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
