"""Persistence: repositories and units of work over SQLAlchemy 2 and in memory.

`Repository` / `AsyncRepository` and `UnitOfWork` / `AsyncUnitOfWork` are the
protocols; `SqlAlchemyUnitOfWork` and `AsyncSqlAlchemyUnitOfWork` implement them
over SQLAlchemy sessions (SQLite, PostgreSQL), and `InMemoryUnitOfWork` /
`AsyncInMemoryUnitOfWork` in memory, proven to behave the same by the contract
suite in `buttress.testing`. Filters are `buttress.domain.F` specifications;
``order_by`` names mapped fields; `Page` is one page of keyset pagination.
"""

from buttress.persistence._memory import InMemoryRepository, InMemoryUnitOfWork
from buttress.persistence._memory_async import AsyncInMemoryRepository, AsyncInMemoryUnitOfWork
from buttress.persistence._memory_core import InMemoryStore
from buttress.persistence._protocols import (
    AsyncRepository,
    AsyncUnitOfWork,
    OutboxWriter,
    Page,
    Repository,
    UnitOfWork,
)
from buttress.persistence._sqlalchemy import SqlAlchemyRepository, SqlAlchemyUnitOfWork
from buttress.persistence._sqlalchemy_async import (
    AsyncSqlAlchemyRepository,
    AsyncSqlAlchemyUnitOfWork,
)

__all__ = [
    "AsyncInMemoryRepository",
    "AsyncInMemoryUnitOfWork",
    "AsyncRepository",
    "AsyncSqlAlchemyRepository",
    "AsyncSqlAlchemyUnitOfWork",
    "AsyncUnitOfWork",
    "InMemoryRepository",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "OutboxWriter",
    "Page",
    "Repository",
    "SqlAlchemyRepository",
    "SqlAlchemyUnitOfWork",
    "UnitOfWork",
]
