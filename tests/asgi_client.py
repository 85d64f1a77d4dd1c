"""An httpx client on an ASGI application, inside its lifespan, as a server would run it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx


@contextlib.asynccontextmanager
async def serving(app: Any, base_url: str = "http://service") -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app``'s lifespan, yield a client on it, and stop the lifespan afterwards.

    An exception in a route becomes a 500 answer, as a server would send, not an
    exception in the test.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
