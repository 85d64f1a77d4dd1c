"""The outbox and inbox tables the messaging tests write, and a backend's units over them.

Imported by name (``from messaging_backends import ...``), not from ``conftest``:
another directory's ``conftest`` module may be the one ``import conftest`` finds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from buttress.messaging import Inbox, Outbox
from buttress.persistence import InMemoryStore

MESSAGING_METADATA = sa.MetaData()
OUTBOX = Outbox(MESSAGING_METADATA, table_name="buttress_test_outbox")
INBOX = Inbox(MESSAGING_METADATA, table_name="buttress_test_inbox")


@dataclasses.dataclass
class Backend:
    """Units of work over one database, and what its outbox holds."""

    name: str
    make: Callable[..., Any]
    engine: sa.Engine | None = None  # the sync engine (of an async one too); None in memory
    store: InMemoryStore | None = None

    def uow(self, *, outbox: bool = False) -> Any:
        return self.make(outbox=OUTBOX) if outbox else self.make()

    def outbox_rows(self) -> list[dict[str, Any]]:
        if self.store is not None:
            return self.store.outbox_rows(OUTBOX.table.name)
        assert self.engine is not None
        with self.engine.connect() as connection:
            statement = sa.select(OUTBOX.table).order_by(OUTBOX.table.c.id)
            return [dict(row._mapping) for row in connection.execute(statement)]
