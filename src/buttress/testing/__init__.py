"""Testing helpers: the contract suites Buttress proves its implementations with.

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
from buttress.testing._models import (
    ContractLine,
    ContractNote,
    ContractOrder,
    ContractTag,
    NoteEdited,
    OrderPaid,
    contract_metadata,
)

__all__ = [
    "AsyncUnitOfWorkContract",
    "ContractLine",
    "ContractNote",
    "ContractOrder",
    "ContractTag",
    "NoteEdited",
    "OrderPaid",
    "UnitOfWorkContract",
    "contract_metadata",
]
