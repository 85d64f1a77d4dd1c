"""The unit-of-work contract, run against every implementation Buttress ships."""

from __future__ import annotations

import pytest

from buttress.testing import AsyncUnitOfWorkContract, UnitOfWorkContract


class TestUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def make_uow(self, make_sync_uow):
        return make_sync_uow


class TestAsyncUnitOfWork(AsyncUnitOfWorkContract):
    @pytest.fixture
    def make_uow(self, make_async_uow):
        return make_async_uow
