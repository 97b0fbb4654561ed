"""A small client for endpoints: invoke one image or a folder of them, concurrently.

Standard library only (http.client with one keep-alive connection per thread), so the
workflow functions and `sconeflow invoke` need no HTTP package. Errors come back as
EndpointError carrying the server's JSON message.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sconeflow.errors import EndpointError

IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True)
class Invocation:
    """One image's answer: probabilities in label order, or the error."""

    path: str
    probabilities: list[float] | None
    error: str | None = None


class EndpointClient:
    """POSTs images to `<url>/invocations` (or a full .../invocations URL)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointError(f"endpoint URL {url!r} is invalid; e.g. http://127.0.0.1:8080")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        path = parts.path.rstrip("/")
        self.path = path if path.endswith("/invocations") else f"{path}/invocations"
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def post(
        self, body: bytes, headers: Mapping[str, str], path: str | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """POST `body` on this thread's kept-alive connection: (status, headers, body).
        OSError when the endpoint cannot be reached on a fresh connection either."""
        try:
            return self._post_once(body, headers, path)
        except OSError:
            # A kept-alive connection the server has since closed: once more, afresh.
            return self._post_once(body, headers, path)

    def _post_once(
        self, body: bytes, headers: Mapping[str, str], path: str | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = self._connection()
        try:
            conn.request("POST", path or self.path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            self._local.conn = None
            if isinstance(err, OSError):
                raise
            raise ConnectionError(f"{type(err).__name__}: {err}") from err

    def invoke(
        self, body: bytes, content_type: str = "image/png", accept: str = "application/json"
    ) -> list[float]:
        """Probabilities for one image; EndpointError with the server's message otherwise."""
        try:
            status, _, data = self.post(body, {"Content-Type": content_type, "Accept": accept})
        except OSError as err:
            raise EndpointError(f"cannot reach {self.host}:{self.port}: {err}") from err
        if status != 200:
            try:
                message = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                message = data[:200].decode("utf-8", "replace")
            raise EndpointError(f"HTTP {status}: {message}")
        parsed = json.loads(data)
        return list(parsed["prediction"] if isinstance(parsed, dict) else parsed)


def image_files(target: Path) -> list[Path]:
    """The file itself, or the PNG/JPEG files of a folder (sorted)."""
    if target.is_file():
        return [target]
    if target.is_dir():
        return sorted(
            p for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    raise EndpointError(f"{target} is neither an image file nor a folder")


def invoke_files(
    client: EndpointClient, paths: Sequence[Path], concurrency: int = 1
) -> list[Invocation]:
    """Invoke every file, `concurrency` at a time; results in the order of `paths`."""

    def one(path: Path) -> Invocation:
        try:
            content_type = IMAGE_SUFFIXES.get(path.suffix.lower(), "application/x-image")
            probs = client.invoke(path.read_bytes(), content_type)
            return Invocation(str(path), probs)
        except (EndpointError, OSError, ValueError) as err:
            return Invocation(str(path), None, str(err))

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, paths))
