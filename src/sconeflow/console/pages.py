"""The web console's pages (placeholder, filled below)."""

from __future__ import annotations

from typing import Any


class SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def routes() -> list[Any]:
    return []
