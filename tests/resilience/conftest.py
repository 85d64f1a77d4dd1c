"""One suite for def and async def: the `flavour` fixture builds and calls either."""

from __future__ import annotations

import pytest
from flavours import Flavour


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)
