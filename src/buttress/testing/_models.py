"""The models the contract suites store, with their own metadata.

Create their tables (``contract_metadata.create_all(engine)``) in the database
your unit of work uses before running a contract suite against it. On SQLite,
turn foreign keys on for every connection (``PRAGMA foreign_keys=ON``), as
PostgreSQL always has them.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

from buttress.domain import AggregateRoot, DomainEvent

__all__ = [
    "ContractLine",
    "ContractNote",
    "ContractOrder",
    "ContractTag",
    "NoteEdited",
    "OrderPaid",
    "contract_metadata",
]


class _Base(DeclarativeBase):
    metadata = sa.MetaData()


contract_metadata = _Base.metadata
"""The tables of `ContractOrder`, `ContractTag` and `ContractNote`."""


class OrderPaid(DomainEvent, name="buttress.contract.order-paid"):
    """`ContractOrder.pay` records it."""

    order_id: int
    total: int


class ContractOrder(AggregateRoot, _Base):
    """An aggregate with a generated key, a unique value, a default and a version column."""

    __tablename__ = "buttress_contract_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(sa.String(40), unique=True)
    total: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(sa.String(200))
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling

    def pay(self) -> None:
        """Record that the order was paid."""
        self.record_event(OrderPaid(order_id=self.id, total=self.total))


class ContractLine(_Base):
    """A row that refers to a `ContractOrder` by a foreign key."""

    __tablename__ = "buttress_contract_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey(ContractOrder.id))
    sku: Mapped[str] = mapped_column(sa.String(40))


class ContractTag(_Base):
    """An entity whose text key the caller chooses, without a version column."""

    __tablename__ = "buttress_contract_tag"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    label: Mapped[str | None] = mapped_column(sa.String(80))
    color: Mapped[str | None] = mapped_column(sa.String(20))


class NoteEdited(DomainEvent, name="buttress.contract.note-edited"):
    """`ContractNote.edit` records it."""

    note_id: int
    text: str


@dataclasses.dataclass(eq=False)
class ContractNote(AggregateRoot):
    """An aggregate written as a plain dataclass and mapped imperatively (cosmicpython style).

    The domain class imports nothing from SQLAlchemy; the mapping lives apart.
    """

    text: str
    id: int | None = None

    def edit(self, text: str) -> None:
        """Change the text and record it."""
        self.text = text
        self.record_event(NoteEdited(note_id=self.id or 0, text=text))


_notes = sa.Table(
    "buttress_contract_note",
    contract_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(200), nullable=False),
)
registry(metadata=contract_metadata).map_imperatively(ContractNote, _notes)
