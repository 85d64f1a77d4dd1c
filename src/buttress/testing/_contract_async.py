"""The contract every asyncio unit of work and its repositories keep.

Subclass `AsyncUnitOfWorkContract` in a test module and override the
``make_uow`` fixture: it returns a function that makes a new unit of work over
one database whose contract tables (`contract_metadata`) start empty. Every
unit it makes must see the others' commits. On SQLite, turn foreign keys on
for every connection (``PRAGMA foreign_keys=ON``).
"""

# The source of _contract.py (scripts/unasync.py writes it).  # unasync: drop

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import pytest

from buttress.domain import F
from buttress.errors import (
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    DecodeError,
    NotFoundError,
    QueryError,
)
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
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    from buttress.persistence import AsyncUnitOfWork

    MakeUow: TypeAlias = Callable[[], AsyncUnitOfWork]

__all__ = ["AsyncUnitOfWorkContract"]


def _order(ref: str, total: int = 0, note: str | None = None) -> ContractOrder:
    return ContractOrder(ref=ref, total=total, note=note)


async def _seed(make_uow: MakeUow, *totals: int) -> list[int]:
    """Store one order per total (refs ``o0``, ``o1`` ...) and return their keys."""
    uow = make_uow()
    async with uow:
        orders = uow.repository(ContractOrder)
        added = await orders.add_many(_order(f"o{i}", total) for i, total in enumerate(totals))
        await uow.commit()
    return [order.id for order in added]


async def _refs(make_uow: MakeUow, **find: Any) -> list[str]:
    """The refs of the stored orders ``find`` returns, in a unit of its own."""
    uow = make_uow()
    async with uow:
        return [order.ref for order in await uow.repository(ContractOrder).find(**find)]


_EVERYTHING = ("batches.allocations", "detail", "labels")
"""Every relationship path of `ContractProduct`: async units must load what they read."""


async def _stock(make_uow: MakeUow) -> None:
    """Store product S1: batches b1 (10, with an allocation of 2 to o1) and b2 (5)."""
    async with make_uow() as uow:
        await uow.repository(ContractProduct).add(
            ContractProduct(
                sku="S1",
                batches=[
                    ContractBatch(reference="b2", qty=5),
                    ContractBatch(
                        reference="b1",
                        qty=10,
                        allocations=[ContractAllocation(orderid="o1", qty=2)],
                    ),
                ],
                detail=ContractDetail(text="red chair"),
                labels={ContractLabel(name="red"), ContractLabel(name="blue")},
            )
        )
        await uow.commit()


class AsyncUnitOfWorkContract:
    """What every asyncio unit of work and its repositories do, as tests.

    Override the ``make_uow`` fixture; every test then runs against your
    implementation. The same tests run against Buttress's in-memory, SQLite
    and PostgreSQL implementations.
    """

    pytestmark = pytest.mark.asyncio  # unasync: drop

    @pytest.fixture
    def make_uow(self) -> MakeUow:
        """Override: a function making units of work over one empty contract database."""
        pytest.fail("override the make_uow fixture to run the unit-of-work contract")

    # -- adding and getting -----------------------------------------------------------

    async def test_add_assigns_the_key_defaults_and_first_version(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).add(ContractOrder(ref="a"))
            assert isinstance(order.id, int)
            assert (order.total, order.version) == (0, 1)
            await uow.commit()

    async def test_get_returns_the_same_object_within_a_unit(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 10)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            first = await orders.get(key)
            assert await orders.get(key) is first
            assert (await orders.find())[0] is first

    async def test_committed_work_is_seen_by_the_next_unit(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 10)
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).get(key)
            assert (order.ref, order.total, order.note) == ("o0", 10, None)

    async def test_entities_keep_their_values_after_commit_and_exit(
        self, make_uow: MakeUow
    ) -> None:
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).add(_order("a", 5))
            await uow.commit()
        assert (order.ref, order.total, order.version) == ("a", 5, 1)

    async def test_get_of_a_missing_key_raises_not_found(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(NotFoundError) as raised:
                await orders.get(404)
            assert (raised.value.entity, raised.value.key) == ("ContractOrder", 404)
            assert await orders.get_or_none(404) is None

    @pytest.mark.parametrize("key", ["1", 1.5, None, True])
    async def test_a_key_of_another_type_is_refused(self, make_uow: MakeUow, key: object) -> None:
        uow = make_uow()
        async with uow:
            with pytest.raises(QueryError):
                await uow.repository(ContractOrder).get(key)

    async def test_text_keys_chosen_by_the_caller(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            tags = uow.repository(ContractTag, str)
            await tags.add(ContractTag(name="b", label="B"))
            await tags.add(ContractTag(name="a"))
            await uow.commit()
            assert [tag.name for tag in await tags.find()] == ["a", "b"]
            assert (await tags.get("b")).label == "B"

    async def test_an_imperatively_mapped_plain_class(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            notes = uow.repository(ContractNote, int)
            note = await notes.add(ContractNote(text="plain"))
            await uow.commit()
        async with uow:
            found = await uow.repository(ContractNote).get(note.id)
            assert found == ContractNote(text="plain", id=note.id)

    async def test_an_imperatively_mapped_aggregate_records_events(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            note = await uow.repository(ContractNote).add(ContractNote(text="draft"))
            await uow.commit()
        async with uow:
            loaded = await uow.repository(ContractNote).get(note.id)
            loaded.edit("final")
            await uow.commit()
        assert [(e.note_id, e.text) for e in uow.collect_events()] == [(note.id, "final")]  # type: ignore[attr-defined]

    async def test_add_many_assigns_keys_in_order(self, make_uow: MakeUow) -> None:
        keys = await _seed(make_uow, 1, 2, 3)
        assert keys == sorted(keys)
        assert len(set(keys)) == 3

    # -- refusing bad writes ------------------------------------------------------------

    async def test_a_duplicate_unique_value_conflicts_and_fails_the_unit(
        self, make_uow: MakeUow
    ) -> None:
        await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            await orders.add(_order("fresh"))
            with pytest.raises(ConflictError):
                await orders.add(_order("o0"))
            with pytest.raises(ConflictError, match="roll it back"):
                await orders.count()
            with pytest.raises(ConflictError):
                await uow.commit()
        assert await _refs(make_uow) == ["o0"]

    async def test_a_duplicate_key_conflicts(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            await uow.repository(ContractTag).add(ContractTag(name="t"))
            await uow.commit()
        async with uow:
            with pytest.raises(ConflictError):
                await uow.repository(ContractTag).add(ContractTag(name="t"))

    async def test_a_missing_required_value_conflicts(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            with pytest.raises(ConflictError):
                await uow.repository(ContractNote).add(ContractNote(text=None))  # type: ignore[arg-type]

    async def test_a_unit_works_again_after_rolling_back_a_failure(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(ConflictError):
                await orders.add(_order("o0"))
            await uow.rollback()
            await orders.add(_order("o1"))
            await uow.commit()
        assert await _refs(make_uow) == ["o0", "o1"]

    async def test_an_object_of_another_model_is_refused_and_nothing_written(
        self, make_uow: MakeUow
    ) -> None:
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(QueryError, match="ContractTag"):
                await orders.add(ContractTag(name="x"))  # type: ignore[arg-type]
            with pytest.raises(QueryError):
                await orders.add_many([_order("a"), ContractTag(name="x")])  # type: ignore[list-item]
            await uow.commit()
        assert await _refs(make_uow) == []

    async def test_a_changed_unique_value_conflicts(self, make_uow: MakeUow) -> None:
        keys = await _seed(make_uow, 1, 2)
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).get(keys[1])
            order.ref = "o0"
            with pytest.raises(ConflictError):
                await uow.commit()
        assert await _refs(make_uow) == ["o0", "o1"]

    async def test_a_unique_value_given_up_in_the_unit_can_be_taken_in_it(
        self, make_uow: MakeUow
    ) -> None:
        """Checked at the end of the unit's writes, whatever their order (a row added first)."""
        keys = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            newer = await orders.add(_order("new", 2))
            await orders.remove(await orders.get(keys[0]))  # gives up "o0"
            newer.ref = "o0"
            await uow.commit()
        assert await _refs(make_uow) == ["o0"]

    async def test_a_reference_to_a_missing_row_conflicts(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            with pytest.raises(ConflictError):
                await uow.repository(ContractLine).add(ContractLine(order_id=404, sku="x"))
        assert await _refs(make_uow) == []

    async def test_a_row_others_refer_to_cannot_be_removed(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            await uow.repository(ContractLine).add(ContractLine(order_id=key, sku="x"))
            await uow.commit()
            orders = uow.repository(ContractOrder)
            with pytest.raises(ConflictError):
                await orders.remove(await orders.get(key))
        async with uow:
            lines = uow.repository(ContractLine)
            await lines.remove((await lines.find())[0])
            orders = uow.repository(ContractOrder)
            await orders.remove(await orders.get(key))
            await uow.commit()
        assert await _refs(make_uow) == []

    # -- transactions ---------------------------------------------------------------------

    async def test_work_not_committed_is_rolled_back_on_exit(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            await uow.repository(ContractOrder).add(_order("a"))
        assert await _refs(make_uow) == []

    async def test_an_exception_mid_unit_persists_nothing(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        with pytest.raises(RuntimeError, match="boom"):
            async with uow:
                orders = uow.repository(ContractOrder)
                (await orders.get(key)).total = 99
                await orders.add(_order("a"))
                raise RuntimeError("boom")
        assert await _refs(make_uow, spec=F("total") == 1) == ["o0"]
        assert await _refs(make_uow) == ["o0"]

    async def test_rollback_undoes_the_work_since_the_last_commit(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            await orders.add(_order("kept"))
            await uow.commit()
            await orders.add(_order("undone"))
            await uow.rollback()
            assert [order.ref for order in await orders.find()] == ["kept"]
            await uow.commit()
        assert await _refs(make_uow) == ["kept"]

    async def test_a_unit_can_be_entered_again_but_not_twice_at_once(
        self, make_uow: MakeUow
    ) -> None:
        uow = make_uow()
        for ref in ("a", "b"):
            async with uow:
                await uow.repository(ContractOrder).add(_order(ref))
                await uow.commit()
        async with uow:
            with pytest.raises(ConfigurationError, match="already"):
                async with uow:
                    pass  # pragma: no cover - never entered
        assert await _refs(make_uow) == ["a", "b"]

    async def test_a_repository_needs_an_entered_unit(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with pytest.raises(ConfigurationError, match="not in a transaction"):
            uow.repository(ContractOrder)
        async with uow:
            kept = uow.repository(ContractOrder)
        with pytest.raises(ConfigurationError, match="not in a transaction"):
            await kept.count()
        with pytest.raises(ConfigurationError, match="not in a transaction"):
            await kept.add(_order("late"))
        assert await _refs(make_uow) == []

    async def test_entities_keep_their_values_when_a_block_ends_uncommitted(
        self, make_uow: MakeUow
    ) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).get(key)
            order.total = 99
        assert order.total == 99
        assert await _refs(make_uow, spec=F("total") == 1) == ["o0"]

    async def test_an_entity_of_another_unit_cannot_be_added(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            loaded = await uow.repository(ContractOrder).get(key)
        loaded.total = 50
        async with uow:
            with pytest.raises(QueryError, match="not new"):
                await uow.repository(ContractOrder).add(loaded)
        assert await _refs(make_uow, spec=F("total") == 1) == ["o0"]

    async def test_a_refused_batch_leaves_its_entities_as_given(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 1)
        fresh, taken = _order("fresh"), _order("o0")
        uow = make_uow()
        async with uow:
            with pytest.raises(ConflictError):
                await uow.repository(ContractOrder).add_many([fresh, taken])
        assert [vars(order).get("id") for order in (fresh, taken)] == [None, None]
        assert await _refs(make_uow) == ["o0"]

    async def test_a_savepoint_undoes_only_its_block(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            await orders.add(_order("outer"))
            with pytest.raises(RuntimeError):
                async with uow.savepoint():
                    await orders.add(_order("inner"))
                    raise RuntimeError
            async with uow.savepoint():
                await orders.add(_order("kept"))
            await uow.commit()
        assert await _refs(make_uow) == ["outer", "kept"]

    async def test_a_conflict_inside_a_savepoint_leaves_the_unit_usable(
        self, make_uow: MakeUow
    ) -> None:
        await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            await orders.add(_order("before"))
            with pytest.raises(ConflictError):
                async with uow.savepoint():
                    await orders.add(_order("o0"))
            await orders.add(_order("after"))
            await uow.commit()
        assert await _refs(make_uow) == ["o0", "before", "after"]

    async def test_entities_loaded_in_an_undone_savepoint_stay_in_the_unit(
        self, make_uow: MakeUow
    ) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(RuntimeError):
                async with uow.savepoint():
                    loaded = await orders.get(key)
                    raise RuntimeError
            assert await orders.get(key) is loaded
            loaded.total = 9
            await uow.commit()
        assert await _refs(make_uow, spec=F("total") == 9) == ["o0"]

    async def test_a_failure_caught_inside_a_savepoint_still_undoes_it(
        self, make_uow: MakeUow
    ) -> None:
        await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(ConflictError):
                async with uow.savepoint():
                    await orders.add(_order("inside"))
                    with contextlib.suppress(ConflictError):  # caught: the block still fails
                        await orders.add(_order("o0"))
            await orders.add(_order("after"))
            await uow.commit()
        assert await _refs(make_uow) == ["o0", "after"]

    async def test_commit_and_rollback_wait_for_the_savepoint_block(
        self, make_uow: MakeUow
    ) -> None:
        uow = make_uow()
        async with uow:
            async with uow.savepoint():
                await uow.repository(ContractOrder).add(_order("a"))
                with pytest.raises(ConfigurationError, match="savepoint"):
                    await uow.commit()
                with pytest.raises(ConfigurationError, match="savepoint"):
                    await uow.rollback()
            await uow.commit()
        assert await _refs(make_uow) == ["a"]

    async def test_a_savepoint_rollback_restores_changed_values(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(RuntimeError):
                async with uow.savepoint():
                    (await orders.get(key)).total = 50
                    assert await orders.count(F("total") == 50) == 1
                    raise RuntimeError
            assert await orders.count(F("total") == 50) == 0
            await uow.commit()
        assert await _refs(make_uow, spec=F("total") == 1) == ["o0"]

    # -- optimistic locking -------------------------------------------------------------

    async def test_a_change_commits_and_bumps_the_version(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).get(key)
            order.total = 2
            await uow.commit()
            assert order.version == 2
        async with uow:
            stored = await uow.repository(ContractOrder).get(key)
            assert (stored.total, stored.version) == (2, 2)

    async def test_get_by_finds_exactly_one(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 5, 5, 7)
        async with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            assert (await orders.get_by(F("ref") == "o2")).total == 7
            with pytest.raises(NotFoundError) as missing:
                await orders.get_by(F("ref") == "nope")
            assert missing.value.entity == "ContractOrder"
            with pytest.raises(QueryError, match="several"):
                await orders.get_by(F("total") == 5)

    async def test_find_and_count_counts_past_the_window(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 1, 2, 3, 4, 5)
        async with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            items, total = await orders.find_and_count(
                F("total") >= 2, order_by="-total", limit=2, offset=1
            )
            assert [order.total for order in items] == [4, 3]
            assert total == 4

    async def test_remove_many_removes_what_matches_and_counts_it(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 1, 2, 3)
        async with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            assert await orders.remove_many(F("total") >= 2) == 2
            assert await orders.count() == 1  # this unit sees its removals
            assert await orders.remove_many(F("total") >= 2) == 0
            await uow.commit()
        assert await _refs(make_uow) == ["o0"]
        async with make_uow() as uow:
            with pytest.raises(QueryError, match="remove_many takes a Specification"):
                await uow.repository(ContractOrder).remove_many(None)  # type: ignore[arg-type]

    # -- upsert -------------------------------------------------------------------------

    async def test_upsert_inserts_when_the_key_is_not_stored(self, make_uow: MakeUow) -> None:
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting, str)
            given = ContractSetting(name="theme", value="dark")
            stored = await settings.upsert(given)
            assert (stored.name, stored.value, stored.priority, stored.changed) == (
                "theme",
                "dark",
                5,
                False,
            )
            assert await settings.get("theme") is stored
            assert await settings.count() == 1
            await uow.commit()
        async with make_uow() as uow:
            found = await uow.repository(ContractSetting).get("theme")
            assert (found.value, found.priority, found.changed) == ("dark", 5, False)

    async def test_upsert_updates_the_stored_row_for_other_units(self, make_uow: MakeUow) -> None:
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            await settings.add(ContractSetting(name="theme", value="dark", code="T", priority=1))
            await uow.commit()
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            stored = await settings.upsert(ContractSetting(name="theme", value="light", code="T"))
            # every non-key field is written: a field left None takes its default, and
            # onupdate applies, as an UPDATE does
            assert (stored.value, stored.code, stored.priority, stored.changed) == (
                "light",
                "T",
                5,
                True,
            )
            assert await settings.count() == 1
            await uow.commit()
        async with make_uow() as uow:
            found = await uow.repository(ContractSetting).get("theme")
            assert (found.value, found.code, found.priority, found.changed) == (
                "light",
                "T",
                5,
                True,
            )

    async def test_upsert_writes_none_over_a_field_without_a_default(
        self, make_uow: MakeUow
    ) -> None:
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            await settings.add(ContractSetting(name="a", value="v", code="A"))
            stored = await settings.upsert(ContractSetting(name="a", priority=9, changed=False))
            assert (stored.value, stored.code, stored.priority, stored.changed) == (
                None,
                None,
                9,
                False,
            )
            await uow.commit()
        async with make_uow() as uow:
            found = await uow.repository(ContractSetting).get("a")
            assert (found.value, found.code, found.priority, found.changed) == (
                None,
                None,
                9,
                False,
            )

    async def test_upsert_refreshes_the_entity_the_unit_has_loaded(self, make_uow: MakeUow) -> None:
        async with make_uow() as uow:
            await uow.repository(ContractSetting).add(ContractSetting(name="a", value="old"))
            await uow.commit()
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            loaded = await settings.get("a")
            given = ContractSetting(name="a", value="new")
            assert await settings.upsert(given) is loaded
            assert (loaded.value, loaded.changed) == ("new", True)
            assert vars(given).get("priority") is None  # the object passed is left as it was
            assert (await settings.find(F("value") == "new")) == [loaded]
            loaded.code = "C"  # still tracked: a later change is written
            await uow.commit()
        async with make_uow() as uow:
            found = await uow.repository(ContractSetting).get("a")
            assert (found.value, found.code) == ("new", "C")

    async def test_upsert_writes_over_pending_changes_of_the_loaded_entity(
        self, make_uow: MakeUow
    ) -> None:
        async with make_uow() as uow:
            await uow.repository(ContractSetting).add(ContractSetting(name="a", value="old"))
            await uow.commit()
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            loaded = await settings.get("a")
            loaded.value, loaded.code = "pending", "P"
            assert await settings.upsert(loaded) is loaded  # flushed, then written again
            assert (loaded.value, loaded.code, loaded.changed) == ("pending", "P", True)
            await uow.commit()
        async with make_uow() as uow:
            assert (await uow.repository(ContractSetting).get("a")).code == "P"

    async def test_upsert_carries_the_events_of_the_aggregate_passed(
        self, make_uow: MakeUow
    ) -> None:
        async with make_uow() as uow:
            notes = uow.repository(ContractNote, int)
            await notes.add(ContractNote(text="draft", id=1))
            await uow.commit()
            loaded = await notes.get(1)
            written = ContractNote(text="", id=1)
            written.edit("first")
            fresh = ContractNote(text="", id=2)
            fresh.edit("second")
            assert await notes.upsert(written) is loaded
            stored = await notes.upsert(fresh)
            assert stored is not fresh
            assert stored.text == "second"
            assert (written.pending_events, fresh.pending_events) == ((), ())
            await uow.commit()
        events = list(uow.collect_events())
        assert all(isinstance(event, NoteEdited) for event in events)
        assert [(e.note_id, e.text) for e in events] == [(1, "first"), (2, "second")]  # type: ignore[attr-defined]
        assert list(uow.collect_events()) == []

    async def test_upsert_refuses_a_versioned_model(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        async with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            for order in (ContractOrder(id=key, ref="o0", total=9), _order("new")):
                with pytest.raises(QueryError, match=r"version column.*get_or_none"):
                    await orders.upsert(order)
            await uow.commit()
        assert await _refs(make_uow, spec=F("total") == 1) == ["o0"]

    async def test_upsert_refuses_an_entity_without_its_key(self, make_uow: MakeUow) -> None:
        async with make_uow() as uow:
            with pytest.raises(QueryError, match=r"key \(id\) is missing.*add\(\)"):
                await uow.repository(ContractNote).upsert(ContractNote(text="keyless"))
            with pytest.raises(QueryError, match=r"key \(name\) is missing"):
                await uow.repository(ContractSetting).upsert(ContractSetting(value="v"))
            with pytest.raises(QueryError, match="ContractTag"):
                await uow.repository(ContractSetting).upsert(ContractTag(name="t"))  # type: ignore[arg-type]
            with pytest.raises(QueryError, match="str"):
                await uow.repository(ContractSetting).upsert(ContractSetting(name=5))
            assert await uow.repository(ContractSetting).count() == 0  # the unit goes on

    async def test_upsert_of_a_taken_unique_value_conflicts(self, make_uow: MakeUow) -> None:
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            await settings.add_many(
                [ContractSetting(name="a", code="A"), ContractSetting(name="b", code="B")]
            )
            await uow.commit()
            for taken in (ContractSetting(name="c", code="A"), ContractSetting(name="b", code="A")):
                with pytest.raises(ConflictError):
                    await settings.upsert(taken)
                with pytest.raises(ConflictError, match="roll it back"):
                    await settings.count()
                await uow.rollback()
            assert (await settings.upsert(ContractSetting(name="c", code="C"))).code == "C"
            await uow.commit()
        async with make_uow() as uow:
            found = await uow.repository(ContractSetting).find()
            assert [(s.name, s.code) for s in found] == [("a", "A"), ("b", "B"), ("c", "C")]

    async def test_a_conflicting_upsert_in_a_savepoint_undoes_only_the_block(
        self, make_uow: MakeUow
    ) -> None:
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            await settings.add(ContractSetting(name="a", code="A", value="before"))
            with pytest.raises(ConflictError):
                async with uow.savepoint():
                    await settings.upsert(ContractSetting(name="a", code="A", value="inside"))
                    await settings.upsert(ContractSetting(name="b", code="B"))
                    await settings.upsert(ContractSetting(name="c", code="A"))
            assert (await settings.get("a")).value == "before"
            await settings.upsert(ContractSetting(name="d", code="B"))
            await uow.commit()
        async with make_uow() as uow:
            found = await uow.repository(ContractSetting).find()
            assert [(s.name, s.value, s.changed) for s in found] == [
                ("a", "before", False),
                ("d", None, False),
            ]

    async def test_upsert_of_a_missing_required_value_conflicts(self, make_uow: MakeUow) -> None:
        async with make_uow() as uow:
            notes = uow.repository(ContractNote)
            await notes.add(ContractNote(text="kept", id=1))
            await uow.commit()
            for note in (ContractNote(text=None, id=1), ContractNote(text=None, id=2)):  # type: ignore[arg-type]
                with pytest.raises(ConflictError):
                    await notes.upsert(note)
                await uow.rollback()
            assert [(n.id, n.text) for n in await notes.find()] == [(1, "kept")]

    async def test_upsert_of_a_reference_to_a_missing_row_conflicts(
        self, make_uow: MakeUow
    ) -> None:
        async with make_uow() as uow:
            with pytest.raises(ConflictError):
                await uow.repository(ContractLine).upsert(ContractLine(id=1, order_id=404, sku="x"))

    async def test_an_upsert_rolled_back_is_undone(self, make_uow: MakeUow) -> None:
        async with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            await settings.add(ContractSetting(name="kept", value="old"))
            await uow.commit()
            await settings.upsert(ContractSetting(name="kept", value="new"))
            await settings.upsert(ContractSetting(name="undone"))
            await uow.rollback()
            assert await settings.get_or_none("undone") is None
            assert (await settings.get("kept")).value == "old"
            await uow.commit()
        async with make_uow() as uow:
            found = await uow.repository(ContractSetting).find()
            assert [(s.name, s.value) for s in found] == [("kept", "old")]

    async def test_work_left_without_commit_is_reported_at_debug(
        self, make_uow: MakeUow, caplog: pytest.LogCaptureFixture
    ) -> None:
        kept, gone = await _seed(make_uow, 1, 2)
        with caplog.at_level(logging.DEBUG, logger="buttress.persistence"):
            async with make_uow() as uow:  # forgot commit()
                orders = uow.repository(ContractOrder)
                await orders.add(ContractOrder(ref="forgotten"))
                (await orders.get(kept)).total = 99
                await orders.remove(await orders.get(gone))
            async with make_uow() as uow:  # committed: nothing discarded
                (await uow.repository(ContractOrder).get(kept)).total = 7
                await uow.commit()
            async with make_uow() as uow:  # read only
                await uow.repository(ContractOrder).count()
        reports = [r.getMessage() for r in caplog.records if "without commit()" in r.getMessage()]
        assert len(reports) == 1, reports
        assert "discarded 1 new, 1 changed and 1 removed entities" in reports[0]
        assert await _refs(make_uow) == ["o0", "o1"]

    async def test_a_lost_update_is_refused(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        first, second = make_uow(), make_uow()
        async with first, second:
            mine = await first.repository(ContractOrder).get(key)
            theirs = await second.repository(ContractOrder).get(key)
            mine.total = 10
            await first.commit()
            theirs.total = 20
            with pytest.raises(ConcurrencyError) as caught:
                await second.commit()
        assert (caught.value.entity, caught.value.key) == ("ContractOrder", key)
        assert await _refs(make_uow, spec=F("total") == 10) == ["o0"]

    async def test_changing_an_entity_someone_removed_is_refused(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        first, second = make_uow(), make_uow()
        async with first, second:
            mine = await first.repository(ContractOrder).get(key)
            theirs = await second.repository(ContractOrder).get(key)
            await first.repository(ContractOrder).remove(mine)
            await first.commit()
            theirs.total = 20
            with pytest.raises(ConcurrencyError) as caught:
                await second.commit()
        assert (caught.value.entity, caught.value.key) == ("ContractOrder", key)
        assert await _refs(make_uow) == []

    async def test_removing_a_stale_entity_is_refused(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        first, second = make_uow(), make_uow()
        async with first, second:
            mine = await first.repository(ContractOrder).get(key)
            theirs = await second.repository(ContractOrder).get(key)
            mine.total = 10
            await first.commit()
            with pytest.raises(ConcurrencyError) as caught:
                await second.repository(ContractOrder).remove(theirs)
        assert (caught.value.entity, caught.value.key) == ("ContractOrder", key)
        assert await _refs(make_uow) == ["o0"]

    async def test_without_a_version_each_unit_writes_only_what_it_changed(
        self, make_uow: MakeUow
    ) -> None:
        uow = make_uow()
        async with uow:
            await uow.repository(ContractTag).add(ContractTag(name="t", label="a"))
            await uow.commit()
        first, second = make_uow(), make_uow()
        async with first, second:
            mine = await first.repository(ContractTag).get("t")
            theirs = await second.repository(ContractTag).get("t")
            theirs.label = "theirs"
            await second.commit()
            mine.color = "red"
            await first.commit()
        async with uow:
            stored = await uow.repository(ContractTag).get("t")
            assert (stored.label, stored.color) == ("theirs", "red")

    # -- removing -----------------------------------------------------------------------

    async def test_remove_deletes_at_commit(self, make_uow: MakeUow) -> None:
        keys = await _seed(make_uow, 1, 2)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            await orders.remove(await orders.get(keys[0]))
            assert await orders.get_or_none(keys[0]) is None
            assert await orders.count() == 1
            await uow.commit()
        assert await _refs(make_uow) == ["o1"]

    async def test_a_removed_entity_cannot_be_added_again(self, make_uow: MakeUow) -> None:
        keys = await _seed(make_uow, 1, 2)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            first, second = await orders.get(keys[0]), await orders.get(keys[1])
            await orders.remove(first)
            with pytest.raises(QueryError, match="removed"):
                await orders.add(first)
            await uow.commit()
            with pytest.raises(QueryError, match="removed"):
                await orders.add(first)
            await orders.remove(second)
            await uow.rollback()
            assert await orders.get(keys[1]) is second
        assert await _refs(make_uow) == ["o1"]

    async def test_remove_needs_an_entity_of_this_unit(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            loaded = await uow.repository(ContractOrder).get(key)
        async with uow:
            with pytest.raises(QueryError, match="get"):
                await uow.repository(ContractOrder).remove(loaded)
            with pytest.raises(QueryError):
                await uow.repository(ContractOrder).remove(_order("never-added"))

    # -- querying -----------------------------------------------------------------------

    async def test_find_filters_orders_and_windows(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 30, 10, 20, 10, 40)
        assert await _refs(make_uow) == ["o0", "o1", "o2", "o3", "o4"]
        assert await _refs(make_uow, spec=F("total") >= 20, order_by="-total") == [
            "o4",
            "o0",
            "o2",
        ]
        assert await _refs(make_uow, order_by=["total", "-ref"]) == [
            "o3",
            "o1",
            "o2",
            "o0",
            "o4",
        ]
        assert await _refs(make_uow, order_by="total", limit=2, offset=1) == ["o3", "o2"]
        assert await _refs(make_uow, limit=0) == []
        spec = (F("total") == 10) | F("ref").in_(["o4"])
        assert await _refs(make_uow, spec=spec) == ["o1", "o3", "o4"]
        assert await _refs(make_uow, spec=~spec & F("note").is_none()) == ["o0", "o2"]

    async def test_text_matching_is_case_sensitive_and_literal(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            for ref, note in [("a", "50% Off"), ("b", "50_ off"), ("c", None)]:
                await orders.add(_order(ref, note=note))
            await uow.commit()
        assert await _refs(make_uow, spec=F("note").contains("% O")) == ["a"]
        assert await _refs(make_uow, spec=F("note").startswith("50_")) == ["b"]
        assert await _refs(make_uow, spec=F("note").contains("off")) == ["b"]

    async def test_first_count_and_exists(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 3, 1, 2)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            assert (await orders.first(order_by="total")).ref == "o1"  # type: ignore[union-attr]
            assert await orders.first(F("total") > 5) is None
            assert await orders.count() == 3
            assert await orders.count(F("total") < 3) == 2
            assert await orders.exists(F("ref") == "o2")
            assert not await orders.exists(F("ref") == "zz")

    async def test_queries_see_changes_not_yet_committed(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            (await orders.get(key)).total = 7
            await orders.add(_order("new", 7))
            assert [o.ref for o in await orders.find(F("total") == 7)] == ["o0", "new"]

    @pytest.mark.parametrize(
        "find",
        [
            {"spec": F("nope") == 1},
            {"order_by": "nope"},
            {"order_by": ["-total", "total"]},
            {"order_by": "_sa_instance_state"},
            {"limit": -1},
            {"limit": 2**63},
            {"offset": -1},
            {"spec": F("total") == "ten"},
            {"spec": "total > 1"},
        ],
        ids=repr,
    )
    async def test_bad_queries_are_refused(self, make_uow: MakeUow, find: dict[str, Any]) -> None:
        uow = make_uow()
        async with uow:
            with pytest.raises(QueryError):
                await uow.repository(ContractOrder).find(**find)

    async def test_an_unknown_field_is_named_with_the_valid_ones(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        async with uow:
            with pytest.raises(QueryError, match=r"'totl'.*id, note, ref, total, version"):
                await uow.repository(ContractOrder).count(F("totl") > 1)

    # -- keyset pages -------------------------------------------------------------------

    async def test_pages_walk_every_entity_once_in_order(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 5, 3, 5, 1, 3, 5, 2)
        expected = await _refs(make_uow, order_by="-total")
        uow = make_uow()
        seen: list[str] = []
        async with uow:
            orders = uow.repository(ContractOrder)
            cursor = None
            for _ in range(10):
                page = await orders.page(order_by="-total", size=3, after=cursor)
                seen += [order.ref for order in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
        assert seen == expected

    async def test_a_page_neither_skips_nor_repeats_after_writes(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 1, 2, 3, 4)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            first = await orders.page(F("total") > 1, order_by="total", size=2)
            assert [o.ref for o in first.items] == ["o1", "o2"]
            await orders.add(_order("early", 2))  # sorts before the cursor: not repeated
            await orders.add(_order("late", 9))
            rest = await orders.page(
                F("total") > 1, order_by="total", size=5, after=first.next_cursor
            )
            assert [o.ref for o in rest.items] == ["o3", "late"]
            assert rest.next_cursor is None

    async def test_a_full_last_page_has_no_cursor(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 1, 2)
        uow = make_uow()
        async with uow:
            page = await uow.repository(ContractOrder).page(size=2)
            assert (len(page.items), page.next_cursor) == (2, None)

    async def test_bad_cursors_are_refused(self, make_uow: MakeUow) -> None:
        await _seed(make_uow, 1, 2, 3)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            cursor = (await orders.page(order_by="total", size=1)).next_cursor
            assert cursor is not None
            tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
            with pytest.raises(DecodeError):
                await orders.page(order_by="total", size=1, after=tampered)
            with pytest.raises(DecodeError):
                await orders.page(order_by="total", size=1, after="not a cursor")
            with pytest.raises(QueryError, match="order_by"):
                await orders.page(order_by="-total", size=1, after=cursor)
            for size in (0, -1, 1.5):
                with pytest.raises(QueryError):
                    await orders.page(size=size)  # type: ignore[arg-type]

    # -- domain events ------------------------------------------------------------------

    async def test_events_are_collected_once_after_commit_in_order(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 5)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            added = await orders.add(_order("new", 7))
            (await orders.find(F("ref") == "o0"))[0].pay()
            added.pay()
            assert list(uow.collect_events()) == []  # nothing before the commit
            await uow.commit()
        events = list(uow.collect_events())
        assert all(isinstance(event, OrderPaid) for event in events)
        assert [(e.order_id, e.total) for e in events] == [(key, 5), (added.id, 7)]  # type: ignore[attr-defined]
        assert list(uow.collect_events()) == []

    async def test_events_of_several_commits_queue_in_recording_order(
        self, make_uow: MakeUow
    ) -> None:
        keys = await _seed(make_uow, 1, 2, 3)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            for order in await orders.find(order_by="-total"):
                order.pay()
            await uow.commit()
            (await orders.get(keys[0])).pay()
            await uow.commit()
        order_ids = [e.order_id for e in uow.collect_events()]  # type: ignore[attr-defined]
        assert order_ids == [keys[2], keys[1], keys[0], keys[0]]

    async def test_no_events_after_a_rollback(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            orders = uow.repository(ContractOrder)
            (await orders.get(key)).pay()
            await uow.rollback()
            await orders.get(key)  # seen again (SQL: the same object, expired)
            await uow.commit()
        async with uow:
            (await uow.repository(ContractOrder).get(key)).pay()
        assert list(uow.collect_events()) == []

    async def test_an_aggregate_held_across_commits_still_has_its_events_collected(
        self, make_uow: MakeUow
    ) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).get(key)
            await uow.commit()
            order.pay()  # not fetched again: the unit still knows it
            await uow.commit()
            with pytest.raises(RuntimeError):
                async with uow.savepoint():
                    order.pay()
                    raise RuntimeError
            await uow.commit()
        assert [e.order_id for e in uow.collect_events()] == [key]  # type: ignore[attr-defined]

    async def test_a_change_after_an_undone_savepoint_is_checked_against_what_was_read(
        self, make_uow: MakeUow
    ) -> None:
        [key] = await _seed(make_uow, 1)
        mine, theirs = make_uow(), make_uow()
        async with mine, theirs:
            orders = mine.repository(ContractOrder)
            order = await orders.get(key)  # read at version 1
            with contextlib.suppress(RuntimeError):
                async with mine.savepoint():
                    order.total = 50  # undone with the block: SQL expires the order
                    raise RuntimeError
            other = await theirs.repository(ContractOrder).get(key)
            other.total = 99
            await theirs.commit()
            order.ref = "after"  # based on what this unit read before: stale now
            with pytest.raises(ConcurrencyError):
                await mine.commit()
        async with make_uow() as uow:
            stored = await uow.repository(ContractOrder).get(key)
            assert (stored.total, stored.ref) == (99, "o0")

    async def test_events_of_an_undone_savepoint_are_dropped(self, make_uow: MakeUow) -> None:
        [key] = await _seed(make_uow, 1)
        uow = make_uow()
        async with uow:
            order = await uow.repository(ContractOrder).get(key)
            order.pay()
            with pytest.raises(RuntimeError):
                async with uow.savepoint():
                    order.pay()
                    raise RuntimeError
            await uow.commit()
        assert len(list(uow.collect_events())) == 1

    # -- aggregates with parts ----------------------------------------------------------

    async def test_an_aggregate_is_saved_and_loaded_with_its_parts(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert product.version == 1
            assert [b.reference for b in product.batches] == ["b1", "b2"]  # order_by reference
            assert [b.product_sku for b in product.batches] == ["S1", "S1"]
            assert [(a.orderid, a.qty) for a in product.batches[0].allocations] == [("o1", 2)]
            assert product.batches[1].allocations == []
            assert product.detail is not None
            assert product.detail.text == "red chair"
            assert sorted(label.name for label in product.labels) == ["blue", "red"]
            assert await uow.repository(ContractAllocation).count() == 1
            assert await uow.repository(ContractLabel).count() == 2

    async def test_loaded_parts_stay_readable_after_the_unit(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:
            [product] = await uow.repository(ContractProduct).find(load=("batches.allocations",))
        assert [len(batch.allocations) for batch in product.batches] == [1, 0]

    async def test_parts_added_to_a_loaded_aggregate_are_saved(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        uow = make_uow()
        async with uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert product.allocate("o2", 5) == "b1"
            product.batches.append(ContractBatch(reference="b0", qty=1))
            await uow.commit()
            assert product.version == 2  # one flush, one bump
        events = list(uow.collect_events())
        assert [(e.orderid, e.reference) for e in events] == [("o2", "b1")]  # type: ignore[attr-defined]
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b0", "b1", "b2"]
            assert [a.orderid for a in product.batches[1].allocations] == ["o1", "o2"]
            assert product.batches[0].product_sku == "S1"

    async def test_parts_removed_from_their_parent_are_deleted(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches.remove(product.batches[0])  # with its allocation: delete-orphan
            product.detail = None
            product.labels = {label for label in product.labels if label.name == "red"}
            await uow.commit()
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b2"]
            assert product.detail is None
            assert [label.name for label in product.labels] == ["red"]
            assert product.version == 2
            assert await uow.repository(ContractAllocation).count() == 0
            assert await uow.repository(ContractDetail).count() == 0
            assert await uow.repository(ContractLabel).count() == 2  # shared: kept

    async def test_removing_the_root_removes_its_parts_not_what_it_shares(
        self, make_uow: MakeUow
    ) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:
            products = uow.repository(ContractProduct)
            await products.remove(await products.get("S1", load=_EVERYTHING))
            await uow.commit()
        async with make_uow() as uow:
            assert await uow.repository(ContractBatch).count() == 0
            assert await uow.repository(ContractAllocation).count() == 0
            assert await uow.repository(ContractDetail).count() == 0
            labels = uow.repository(ContractLabel)
            assert await labels.count() == 2
            await labels.remove(await labels.get("red"))  # no pair refers to it any more
            await uow.commit()

    async def test_a_shared_entity_still_paired_cannot_be_removed(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:
            labels = uow.repository(ContractLabel)
            with pytest.raises(ConflictError):
                await labels.remove(await labels.get("red"))
                await uow.commit()

    async def test_a_change_to_a_part_bumps_the_root_once_per_flush(
        self, make_uow: MakeUow
    ) -> None:
        await _stock(make_uow)
        uow = make_uow()
        async with uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches[0].allocations[0].qty = 3
            product.batches[1].qty = 50
            assert product.detail is not None
            product.detail.text = "blue chair"
            await uow.commit()
            assert product.version == 2
        async with uow:  # nothing changed: no bump
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            await uow.commit()
            assert product.version == 2
        async with uow:  # a change to the root itself: SQL's own bump, once
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches[1].qty = 60
            product.labels.add(ContractLabel(name="green"))
            await uow.commit()
            assert product.version == 3
        async with uow:
            stored = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert (stored.version, stored.batches[1].qty) == (3, 60)
            assert sorted(label.name for label in stored.labels) == ["blue", "green", "red"]

    async def test_an_event_alone_bumps_the_version(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        uow = make_uow()
        async with uow:
            product = await uow.repository(ContractProduct).get("S1")
            product.record_event(Allocated(sku="S1", orderid="o9", reference="b1"))
            await uow.commit()
            assert product.version == 2
        assert [e.orderid for e in uow.collect_events()] == ["o9"]  # type: ignore[attr-defined]

    async def test_units_changing_different_parts_of_one_aggregate_conflict(
        self, make_uow: MakeUow
    ) -> None:
        await _stock(make_uow)
        first, second = make_uow(), make_uow()
        async with first, second:
            mine = await first.repository(ContractProduct).get("S1", load=_EVERYTHING)
            theirs = await second.repository(ContractProduct).get("S1", load=_EVERYTHING)
            mine.batches[0].qty = 11
            await first.commit()
            theirs.batches[1].qty = 6
            with pytest.raises(ConcurrencyError) as caught:
                await second.commit()
            assert caught.value.entity == "ContractProduct"
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.qty for b in product.batches] == [11, 5]
            assert product.version == 2

    async def test_units_adding_parts_to_one_aggregate_conflict(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        first, second = make_uow(), make_uow()
        async with first, second:
            mine = await first.repository(ContractProduct).get("S1", load=_EVERYTHING)
            theirs = await second.repository(ContractProduct).get("S1", load=_EVERYTHING)
            # a part of a part, and no event recorded: the boundary still holds
            mine.batches[0].allocations.append(ContractAllocation(orderid="o2", qty=5))
            await first.commit()
            theirs.batches[1].allocations.append(ContractAllocation(orderid="o3", qty=5))
            with pytest.raises(ConcurrencyError):
                await second.commit()
        async with make_uow() as uow:
            orders = [a.orderid for a in await uow.repository(ContractAllocation).find()]
            assert sorted(orders) == ["o1", "o2"]

    async def test_a_part_moved_to_another_aggregate_bumps_both(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:
            await uow.repository(ContractProduct).add(ContractProduct(sku="S2"))
            await uow.commit()
        async with make_uow() as uow:
            products = uow.repository(ContractProduct)
            one = await products.get("S1", load=_EVERYTHING)
            two = await products.get("S2", load=_EVERYTHING)
            batch = one.batches[1]
            two.batches.append(batch)  # the backref takes it out of one.batches
            assert batch.product is two
            await uow.commit()
            assert (one.version, two.version) == (2, 2)
        async with make_uow() as uow:
            moved = await uow.repository(ContractBatch).get_by(F("reference") == "b2")
            assert moved.product_sku == "S2"

    async def test_rollback_restores_the_aggregate(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        uow = make_uow()
        async with uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches.remove(product.batches[0])
            product.batches.append(ContractBatch(reference="b9", qty=1))
            await uow.repository(ContractBatch).count()  # flushed
            await uow.rollback()
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b1", "b2"]
            assert [len(b.allocations) for b in product.batches] == [1, 0]
            assert product.version == 1

    async def test_a_savepoint_restores_the_aggregate(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        uow = make_uow()
        async with uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.allocate("o2", 1)
            with pytest.raises(RuntimeError):
                async with uow.savepoint():
                    product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
                    product.batches.remove(product.batches[1])
                    await uow.repository(ContractBatch).count()
                    raise RuntimeError
            await uow.commit()
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b1", "b2"]
            assert [a.orderid for a in product.batches[0].allocations] == ["o1", "o2"]

    async def test_a_path_filters_by_some_part(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:
            await uow.repository(ContractProduct).add(ContractProduct(sku="S2"))
            products = uow.repository(ContractProduct)

            async def skus(spec: Any) -> list[str]:
                return [p.sku for p in await products.find(spec, order_by="sku")]

            assert await skus(F("batches.reference") == "b2") == ["S1"]
            assert await skus(F("batches.allocations.orderid") == "o1") == ["S1"]
            assert await skus(~(F("batches.reference") == "b2")) == ["S2"]
            assert await skus(F("batches.qty") > 100) == []
            assert await skus(F("labels.name").in_(["red", "green"])) == ["S1"]
            assert await skus(F("detail.text").startswith("red")) == ["S1"]
            assert await products.count(F("batches.allocations.qty") >= 2) == 1
            batches = uow.repository(ContractBatch)
            found = await batches.find(F("product.sku") == "S1", order_by="reference")
            assert [b.reference for b in found] == ["b1", "b2"]

    @pytest.mark.parametrize(
        ("call", "message"),
        [
            ({"load": "nope"}, "ContractProduct has no relationship 'nope'"),
            ({"load": ("batches.nope",)}, "ContractBatch has no relationship 'nope'"),
            ({"load": 3}, "load= takes relationship paths"),
            ({"spec": F("nope.reference") == "x"}, "ContractProduct has no relationship 'nope'"),
            ({"spec": F("batches.nope") == "x"}, "ContractBatch has no field 'nope'"),
            ({"spec": F("batches.qty") == "x"}, "qty"),
        ],
    )
    async def test_an_unknown_relationship_path_is_refused(
        self, make_uow: MakeUow, call: dict[str, Any], message: str
    ) -> None:
        async with make_uow() as uow:
            with pytest.raises(QueryError, match=message):
                await uow.repository(ContractProduct).find(**call)
            if "load" in call:
                with pytest.raises(QueryError, match=message):
                    await uow.repository(ContractProduct).get("S1", load=call["load"])

    async def test_a_part_replaced_under_its_key_is_written_over(self, make_uow: MakeUow) -> None:
        await _stock(make_uow)
        uow = make_uow()
        async with uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            old = product.detail
            product.detail = ContractDetail(text="green chair")  # the same key: S1
            await uow.commit()
            assert product.version == 2
        async with uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert product.detail is not None
            assert product.detail.text == "green chair"
            assert await uow.repository(ContractDetail).count() == 1
            product.detail = ContractDetail(text="undone")
            await uow.repository(ContractProduct).count()  # flushed
            await uow.rollback()
            again = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert again.detail is not None
            assert again.detail.text == "green chair"
        assert old is not None
        assert old.text == "red chair"

    async def test_a_part_added_by_its_key_or_its_owner_bumps_the_root(
        self, make_uow: MakeUow
    ) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:  # by the foreign key alone: the root is not loaded
            await uow.repository(ContractBatch).add(
                ContractBatch(reference="b3", qty=1, product_sku="S1")
            )
            await uow.commit()
        async with make_uow() as uow:  # by the many-to-one, the root's batches not loaded
            product = await uow.repository(ContractProduct).get("S1")
            await uow.repository(ContractBatch).add(
                ContractBatch(reference="b4", qty=1, product=product)
            )
            await uow.commit()
            assert product.version == 3
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load="batches")
            assert [b.reference for b in product.batches] == ["b1", "b2", "b3", "b4"]
            assert product.version == 3

    async def test_a_part_removed_through_its_own_repository_bumps_the_root(
        self, make_uow: MakeUow
    ) -> None:
        await _stock(make_uow)
        async with make_uow() as uow:  # the root not loaded
            batches = uow.repository(ContractBatch)
            await batches.remove(await batches.get_by(F("reference") == "b2"))
            await uow.commit()
        async with make_uow() as uow:  # a part of a part, by a specification
            count = await uow.repository(ContractAllocation).remove_many(F("orderid") == "o1")
            await uow.commit()
            assert count == 1
        async with make_uow() as uow:
            product = await uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [(b.reference, len(b.allocations)) for b in product.batches] == [("b1", 0)]
            assert product.version == 3

    async def test_events_recorded_before_the_aggregate_was_added_are_collected(
        self, make_uow: MakeUow
    ) -> None:
        early = ContractProduct(sku="E1")
        early.record_event(Allocated(sku="E1", orderid="before", reference="-"))
        uow = make_uow()
        async with uow:
            await uow.repository(ContractProduct).add(ContractProduct(sku="E0"))
            await uow.commit()  # a commit with nothing to collect comes first
            await uow.repository(ContractProduct).add(early)
            await uow.commit()
        assert [e.orderid for e in uow.collect_events()] == ["before"]  # type: ignore[attr-defined]
