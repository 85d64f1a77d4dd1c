"""Testing helpers: the contract suites Buttress proves its implementations with, and fixtures.

The ``provider_overrides`` fixture swaps container providers for fakes during a
test, and ``fresh_breakers`` gives a test circuit breakers no earlier test has
opened; enable them with ``pytest_plugins = ["buttress.testing"]`` in your root
``conftest.py`` (or import them into a test module).

Run the unit-of-work contract against your own implementation by subclassing
`UnitOfWorkContract` (or `AsyncUnitOfWorkContract`, which needs pytest-asyncio)
and overriding its ``make_uow`` fixture; create the tables of
`contract_metadata` in the database first:

```python
import pytest
from buttress.persistence import InMemoryStore, InMemoryUnitOfWork
from buttress.testing import UnitOfWorkContract


class TestInMemory(UnitOfWorkContract):
    @pytest.fixture
    def make_uow(self):
        store = InMemoryStore()
        return lambda: InMemoryUnitOfWork(store=store)
```
"""

from buttress.testing._contract import UnitOfWorkContract
from buttress.testing._contract_async import AsyncUnitOfWorkContract
from buttress.testing._contract_transport import TransportContract
from buttress.testing._fixtures import fresh_breakers, provider_overrides
from buttress.testing._models import (
    Allocated,
    ContractAllocation,
    ContractBatch,
    ContractDetail,
    ContractLabel,
    ContractLine,
    ContractNote,
    ContractOrder,
    ContractProduct,
    ContractSetting,
    ContractTag,
    NoteEdited,
    OrderPaid,
    contract_metadata,
)
from buttress.testing._transports import AsyncRecordingTransport, RecordingTransport

__all__ = [
    "Allocated",
    "AsyncRecordingTransport",
    "AsyncUnitOfWorkContract",
    "ContractAllocation",
    "ContractBatch",
    "ContractDetail",
    "ContractLabel",
    "ContractLine",
    "ContractNote",
    "ContractOrder",
    "ContractProduct",
    "ContractSetting",
    "ContractTag",
    "NoteEdited",
    "OrderPaid",
    "RecordingTransport",
    "TransportContract",
    "UnitOfWorkContract",
    "contract_metadata",
    "fresh_breakers",
    "provider_overrides",
]
