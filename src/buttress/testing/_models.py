"""The models the contract suites store, with their own metadata.

Create their tables (``contract_metadata.create_all(engine)``) in the database
your unit of work uses before running a contract suite against it. On SQLite,
turn foreign keys on for every connection (``PRAGMA foreign_keys=ON``), as
PostgreSQL always has them.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry, relationship

from buttress.domain import AggregateRoot, DomainEvent

__all__ = [
    "Allocated",
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
    "contract_metadata",
]


class _Base(DeclarativeBase):
    metadata = sa.MetaData()


contract_metadata = _Base.metadata
"""The tables of every contract model."""


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


class ContractSetting(_Base):
    """An unversioned entity with a key the caller chooses, for `upsert`.

    It has a unique value, a Python-side default and a Python-side onupdate.
    """

    __tablename__ = "buttress_contract_setting"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    value: Mapped[str | None] = mapped_column(sa.String(80))
    code: Mapped[str | None] = mapped_column(sa.String(20), unique=True)
    priority: Mapped[int] = mapped_column(default=5)
    changed: Mapped[bool] = mapped_column(default=False, onupdate=True)


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


class Allocated(DomainEvent, name="buttress.contract.allocated"):
    """`ContractProduct.allocate` records it."""

    sku: str
    orderid: str
    reference: str


_product_labels = sa.Table(
    "buttress_contract_product_label",
    contract_metadata,
    sa.Column("product_sku", sa.ForeignKey("buttress_contract_product.sku"), primary_key=True),
    sa.Column("label_name", sa.ForeignKey("buttress_contract_label.name"), primary_key=True),
)


class ContractLabel(_Base):
    """An entity products share through a many-to-many relationship."""

    __tablename__ = "buttress_contract_label"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)


class ContractProduct(AggregateRoot, _Base):
    """An aggregate root holding batches that hold allocations (two levels of parts).

    It also has a one-to-one detail (a part) and many-to-many labels (shared
    entities); its version guards the whole aggregate.
    """

    __tablename__ = "buttress_contract_product"

    sku: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    version: Mapped[int] = mapped_column(nullable=False)
    batches: Mapped[list[ContractBatch]] = relationship(
        back_populates="product",
        cascade="all, delete-orphan",
        order_by="ContractBatch.reference",
    )
    detail: Mapped[ContractDetail | None] = relationship(cascade="all, delete-orphan")
    labels: Mapped[set[ContractLabel]] = relationship(secondary=_product_labels)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's spelling

    def allocate(self, orderid: str, qty: int) -> str:
        """Allocate ``qty`` to the first batch (by reference) that has it; its reference."""
        for batch in self.batches:
            if batch.available >= qty:
                batch.allocations.append(ContractAllocation(orderid=orderid, qty=qty))
                self.record_event(
                    Allocated(sku=self.sku, orderid=orderid, reference=batch.reference)
                )
                return batch.reference
        raise ValueError(f"no batch of {self.sku} has {qty} left")


class ContractBatch(_Base):
    """A part of `ContractProduct`, holding allocations."""

    __tablename__ = "buttress_contract_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(sa.String(40), unique=True)
    product_sku: Mapped[str] = mapped_column(sa.ForeignKey(ContractProduct.sku))
    qty: Mapped[int]
    product: Mapped[ContractProduct] = relationship(back_populates="batches")
    allocations: Mapped[list[ContractAllocation]] = relationship(
        cascade="all, delete-orphan", order_by="ContractAllocation.id"
    )

    @property
    def available(self) -> int:
        """What is left to allocate."""
        return self.qty - sum(allocation.qty for allocation in self.allocations)


class ContractAllocation(_Base):
    """A part of a `ContractBatch`: the second level of a product's parts."""

    __tablename__ = "buttress_contract_allocation"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey(ContractBatch.id))
    orderid: Mapped[str] = mapped_column(sa.String(40))
    qty: Mapped[int]


class ContractDetail(_Base):
    """A one-to-one part of `ContractProduct`, keyed by the product's key."""

    __tablename__ = "buttress_contract_detail"

    product_sku: Mapped[str] = mapped_column(sa.ForeignKey(ContractProduct.sku), primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(200))
