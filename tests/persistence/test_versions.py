"""The twin stores exactly the versions SQL stores, application-assigned ones included.

The allocation domain bumps its product's version itself (cosmicpython's model);
SQLAlchemy writes a version the application set as it is, and the generated one
otherwise. With ``version_id_generator=False`` the application sets every version
and it is still checked. Memory, SQLite and PostgreSQL must store the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from persistence_backends import BACKENDS, own_units
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from buttress.errors import ConcurrencyError, ConflictError


class Base(DeclarativeBase):
    pass


class Product(Base):
    """A generated version (SQLAlchemy's counter) the domain may also bump."""

    __tablename__ = "versions_product"
    sku: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    stock: Mapped[int]
    version: Mapped[int] = mapped_column(nullable=False)
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012

    def allocate(self, quantity: int) -> None:
        self.stock -= quantity
        self.version += 1  # the book's consistency boundary, by hand


class Assigned(Base):
    """version_id_generator=False: the application sets every version."""

    __tablename__ = "versions_assigned"
    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column(nullable=False)
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012


@pytest.fixture(params=BACKENDS)
def make_uow(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[[], Any]]:
    for units, _engine in own_units(request, tmp_path, Base.metadata):
        yield units


def stored(make_uow: Callable[[], Any], model: type[Any], key: Any) -> Any:
    with make_uow() as uow:
        return uow.repository(model).get(key).version


def test_a_version_the_domain_bumps_is_stored_as_it_set_it(make_uow):
    with make_uow() as uow:
        uow.repository(Product).add(Product(sku="LAMP", stock=10))
        uow.commit()
    assert stored(make_uow, Product, "LAMP") == 1
    with make_uow() as uow:
        product = uow.repository(Product).get("LAMP")
        product.allocate(1)
        product.allocate(2)  # two allocations in one unit
        uow.commit()
    assert stored(make_uow, Product, "LAMP") == 3  # what the domain set, as SQL stores it
    with make_uow() as uow:
        uow.repository(Product).get("LAMP").stock = 0  # a change without a bump
        uow.commit()
    assert stored(make_uow, Product, "LAMP") == 4  # the generator's next


def test_application_assigned_versions_are_stored_and_checked(make_uow):
    with make_uow() as uow:
        uow.repository(Assigned).add(Assigned(id=1, note="a", version=10))
        uow.commit()
    assert stored(make_uow, Assigned, 1) == 10
    with make_uow() as uow:
        row = uow.repository(Assigned).get(1)
        row.note, row.version = "b", 11
        uow.commit()
    assert stored(make_uow, Assigned, 1) == 11
    with make_uow() as uow:
        uow.repository(Assigned).get(1).note = "c"  # no new version given: it stays
        uow.commit()
    assert stored(make_uow, Assigned, 1) == 11
    first, second = make_uow(), make_uow()
    with first, second:
        mine, theirs = first.repository(Assigned).get(1), second.repository(Assigned).get(1)
        mine.note, mine.version = "mine", 12
        first.commit()
        theirs.note, theirs.version = "theirs", 12
        with pytest.raises(ConcurrencyError):
            second.commit()  # still checked against the version it read
    with make_uow() as uow:
        assert uow.repository(Assigned).get(1).note == "mine"


def test_an_assigned_version_must_be_given(make_uow):
    with make_uow() as uow, pytest.raises(ConflictError):
        uow.repository(Assigned).add(Assigned(id=2, note="no version"))  # refused as written
