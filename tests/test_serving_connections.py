"""Slow and greedy clients against a real server: idle connections, headers and bodies that
come too slowly, headers that are too large, bodies the server does not read. Timeouts are
a fraction of a second here; the assertions wait generously and never time the server."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from test_serving_support import ServerProcess, png_bytes, post, write_model_dir

pytestmark = pytest.mark.slow
FAST = {"SCONEFLOW_READ_TIMEOUT": "0.5", "SCONEFLOW_KEEP_ALIVE_TIMEOUT": "0.5"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("conn")
    srv = ServerProcess(home, write_model_dir(home / "m"), "--workers", "1", env=FAST)
    yield srv
    assert srv.stop() == 0


def _connect(srv: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=15)


def _until_closed(sock: socket.socket, trickle: bytes = b"", every: float = 0.1) -> bytes:
    """Everything the server sends until it closes the connection (within 15 s), sending
    `trickle` every `every` seconds meanwhile."""
    got = b""
    deadline = time.monotonic() + 15
    sock.settimeout(every)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:
                    return got
            continue
        except ConnectionResetError:
            return got
        if not data:
            return got
        got += data
    raise AssertionError(f"the server kept the connection open; it sent {got[:200]!r}")


def test_a_new_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with _connect(server) as sock:
        assert _until_closed(sock) == b""


def test_blank_lines_do_not_keep_an_idle_connection(server: ServerProcess) -> None:
    with _connect(server) as sock:
        assert _until_closed(sock, trickle=b"\r\n") == b""


def test_headers_trickled_slowly_get_408(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        answer = _until_closed(sock, trickle=b"X-Slow: 1\r\n")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"SCONEFLOW_READ_TIMEOUT" in answer


@pytest.mark.parametrize("length", [1000, 6_000_000], ids=["small-body", "large-body"])
def test_a_body_trickled_slowly_gets_408(server: ServerProcess, length: int) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\n\r\n\x89PNG" % length
        )
        answer = _until_closed(sock, trickle=b"\0")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head
    assert "did not arrive within 0.5 s" in json.loads(body)["message"]


def test_headers_over_the_limit_get_431(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(40):  # 40 x 4 KiB, well within the deadline
            try:
                sock.sendall(b"a" * 4096)
            except OSError:
                break
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_an_unread_body_is_answered_then_thrown_away(server: ServerProcess) -> None:
    # A body over the limit is answered 413 while the client is still sending it; the
    # client must see the answer (not a reset), and the connection stays usable.
    status, _, body = post(server.url, b"\0" * (6_291_456 + 1))
    assert status == 413 and b"6291456" in body
    with _connect(server) as sock:  # a 404 whose body never ends: closed after the timeout
        sock.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        answer = _until_closed(sock, trickle=b"\0" * 100)
    assert answer.startswith(b"HTTP/1.1 404 ")


def test_good_requests_on_a_kept_alive_connection_are_unaffected(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    for i in range(20):  # well within the keep-alive timeout of each other
        conn.request("POST", "/invocations", png_bytes(i), {"Content-Type": "image/png"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    conn.close()
    with urllib.request.urlopen(f"{server.url}/metrics") as resp:
        text = resp.read().decode()
    assert "RequestReadTimeouts_total" in text
    assert "Invocation5XXErrors_total{" in text and not any(
        line.startswith("Invocation5XXErrors_total{") and not line.endswith(" 0.0")
        for line in text.splitlines()
    )


def test_settings_are_validated() -> None:
    from sconeflow.config import serving_settings
    from sconeflow.errors import ConfigError

    s = serving_settings({"SCONEFLOW_READ_TIMEOUT": "3", "SCONEFLOW_CAPTURE_BUFFER_MB": "1"})
    assert s.read_timeout_s == 3 and s.capture_buffer_bytes == 1 << 20
    assert s.body_buffer_bytes == 4 * s.max_payload_bytes
    with pytest.raises(ConfigError, match="SCONEFLOW_BODY_BUFFER_MB"):
        serving_settings({"SCONEFLOW_BODY_BUFFER_MB": "1"})
    with pytest.raises(ConfigError, match="SCONEFLOW_READ_TIMEOUT"):
        serving_settings({"SCONEFLOW_READ_TIMEOUT": "soon"})


def test_the_guarded_protocol_keeps_its_state_out_of_the_instance_dict() -> None:
    # CPython 3.11 shares one attribute key table per class for at most 30 names; uvicorn's
    # protocol already has 28. State of ours in the instance dict turns every protocol's
    # attributes into a plain dict and each `self.x` in uvicorn's per-request code slower
    # (connections.py, GuardedProtocol.__slots__).
    import asyncio

    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from sconeflow.serving.connections import Deadlines, guarded_protocol

    async def app(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def serve_one(cls: type) -> set[str]:
        config = uvicorn.Config(app, http=cls, lifespan="off", log_level="warning")
        config.load()
        proto = cls(config=config, server_state=ServerState(), app_state={})
        ours, theirs = socket.socketpair()
        with theirs:
            loop = asyncio.get_running_loop()
            await loop.connect_accepted_socket(lambda: proto, ours)
            theirs.setblocking(False)
            await loop.sock_sendall(theirs, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await asyncio.wait_for(loop.sock_recv(theirs, 4096), 15)
            assert answer.startswith(b"HTTP/1.1 204 ")
            names = set(vars(proto))
            proto.transport.close()
            await asyncio.sleep(0)
        return names

    guarded = guarded_protocol(20.0, Deadlines(1.0), lambda: None)
    plain = asyncio.run(serve_one(HttpToolsProtocol))
    assert asyncio.run(serve_one(guarded)) == plain
    assert len(plain) <= 30, f"uvicorn's protocol now has {len(plain)} attributes"
