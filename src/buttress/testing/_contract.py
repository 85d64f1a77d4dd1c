# Generated from _contract_async.py by scripts/unasync.py: do not edit by hand.
# Change the source and run `uv run python scripts/unasync.py`.
"""The contract every unit of work and its repositories keep.

Subclass `UnitOfWorkContract` in a test module and override the
``make_uow`` fixture: it returns a function that makes a new unit of work over
one database whose contract tables (`contract_metadata`) start empty. Every
unit it makes must see the others' commits. On SQLite, turn foreign keys on
for every connection (``PRAGMA foreign_keys=ON``).
"""

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

    from buttress.persistence import UnitOfWork

    MakeUow: TypeAlias = Callable[[], UnitOfWork]

__all__ = ["UnitOfWorkContract"]


def _order(ref: str, total: int = 0, note: str | None = None) -> ContractOrder:
    return ContractOrder(ref=ref, total=total, note=note)


def _seed(make_uow: MakeUow, *totals: int) -> list[int]:
    """Store one order per total (refs ``o0``, ``o1`` ...) and return their keys."""
    uow = make_uow()
    with uow:
        orders = uow.repository(ContractOrder)
        added = orders.add_many(_order(f"o{i}", total) for i, total in enumerate(totals))
        uow.commit()
    return [order.id for order in added]


def _refs(make_uow: MakeUow, **find: Any) -> list[str]:
    """The refs of the stored orders ``find`` returns, in a unit of its own."""
    uow = make_uow()
    with uow:
        return [order.ref for order in uow.repository(ContractOrder).find(**find)]


_EVERYTHING = ("batches.allocations", "detail", "labels")
"""Every relationship path of `ContractProduct`: async units must load what they read."""


def _stock(make_uow: MakeUow) -> None:
    """Store product S1: batches b1 (10, with an allocation of 2 to o1) and b2 (5)."""
    with make_uow() as uow:
        uow.repository(ContractProduct).add(
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
        uow.commit()


class UnitOfWorkContract:
    """What every unit of work and its repositories do, as tests.

    Override the ``make_uow`` fixture; every test then runs against your
    implementation. The same tests run against Buttress's in-memory, SQLite
    and PostgreSQL implementations.
    """

    @pytest.fixture
    def make_uow(self) -> MakeUow:
        """Override: a function making units of work over one empty contract database."""
        pytest.fail("override the make_uow fixture to run the unit-of-work contract")

    # -- adding and getting -----------------------------------------------------------

    def test_add_assigns_the_key_defaults_and_first_version(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).add(ContractOrder(ref="a"))
            assert isinstance(order.id, int)
            assert (order.total, order.version) == (0, 1)
            uow.commit()

    def test_get_returns_the_same_object_within_a_unit(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 10)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            first = orders.get(key)
            assert orders.get(key) is first
            assert (orders.find())[0] is first

    def test_committed_work_is_seen_by_the_next_unit(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 10)
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).get(key)
            assert (order.ref, order.total, order.note) == ("o0", 10, None)

    def test_entities_keep_their_values_after_commit_and_exit(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).add(_order("a", 5))
            uow.commit()
        assert (order.ref, order.total, order.version) == ("a", 5, 1)

    def test_get_of_a_missing_key_raises_not_found(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(NotFoundError) as raised:
                orders.get(404)
            assert (raised.value.entity, raised.value.key) == ("ContractOrder", 404)
            assert orders.get_or_none(404) is None

    @pytest.mark.parametrize("key", ["1", 1.5, None, True])
    def test_a_key_of_another_type_is_refused(self, make_uow: MakeUow, key: object) -> None:
        uow = make_uow()
        with uow:
            with pytest.raises(QueryError):
                uow.repository(ContractOrder).get(key)

    def test_text_keys_chosen_by_the_caller(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            tags = uow.repository(ContractTag, str)
            tags.add(ContractTag(name="b", label="B"))
            tags.add(ContractTag(name="a"))
            uow.commit()
            assert [tag.name for tag in tags.find()] == ["a", "b"]
            assert (tags.get("b")).label == "B"

    def test_an_imperatively_mapped_plain_class(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            notes = uow.repository(ContractNote, int)
            note = notes.add(ContractNote(text="plain"))
            uow.commit()
        with uow:
            found = uow.repository(ContractNote).get(note.id)
            assert found == ContractNote(text="plain", id=note.id)

    def test_an_imperatively_mapped_aggregate_records_events(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            note = uow.repository(ContractNote).add(ContractNote(text="draft"))
            uow.commit()
        with uow:
            loaded = uow.repository(ContractNote).get(note.id)
            loaded.edit("final")
            uow.commit()
        assert [(e.note_id, e.text) for e in uow.collect_events()] == [(note.id, "final")]  # type: ignore[attr-defined]

    def test_add_many_assigns_keys_in_order(self, make_uow: MakeUow) -> None:
        keys = _seed(make_uow, 1, 2, 3)
        assert keys == sorted(keys)
        assert len(set(keys)) == 3

    # -- refusing bad writes ------------------------------------------------------------

    def test_a_duplicate_unique_value_conflicts_and_fails_the_unit(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            orders.add(_order("fresh"))
            with pytest.raises(ConflictError):
                orders.add(_order("o0"))
            with pytest.raises(ConflictError, match="roll it back"):
                orders.count()
            with pytest.raises(ConflictError):
                uow.commit()
        assert _refs(make_uow) == ["o0"]

    def test_a_duplicate_key_conflicts(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            uow.repository(ContractTag).add(ContractTag(name="t"))
            uow.commit()
        with uow:
            with pytest.raises(ConflictError):
                uow.repository(ContractTag).add(ContractTag(name="t"))

    def test_a_missing_required_value_conflicts(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            with pytest.raises(ConflictError):
                uow.repository(ContractNote).add(ContractNote(text=None))  # type: ignore[arg-type]

    def test_a_unit_works_again_after_rolling_back_a_failure(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(ConflictError):
                orders.add(_order("o0"))
            uow.rollback()
            orders.add(_order("o1"))
            uow.commit()
        assert _refs(make_uow) == ["o0", "o1"]

    def test_an_object_of_another_model_is_refused_and_nothing_written(
        self, make_uow: MakeUow
    ) -> None:
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(QueryError, match="ContractTag"):
                orders.add(ContractTag(name="x"))  # type: ignore[arg-type]
            with pytest.raises(QueryError):
                orders.add_many([_order("a"), ContractTag(name="x")])  # type: ignore[list-item]
            uow.commit()
        assert _refs(make_uow) == []

    def test_a_changed_unique_value_conflicts(self, make_uow: MakeUow) -> None:
        keys = _seed(make_uow, 1, 2)
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).get(keys[1])
            order.ref = "o0"
            with pytest.raises(ConflictError):
                uow.commit()
        assert _refs(make_uow) == ["o0", "o1"]

    def test_a_unique_value_given_up_in_the_unit_can_be_taken_in_it(
        self, make_uow: MakeUow
    ) -> None:
        """Checked at the end of the unit's writes, whatever their order (a row added first)."""
        keys = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            newer = orders.add(_order("new", 2))
            orders.remove(orders.get(keys[0]))  # gives up "o0"
            newer.ref = "o0"
            uow.commit()
        assert _refs(make_uow) == ["o0"]

    def test_a_reference_to_a_missing_row_conflicts(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            with pytest.raises(ConflictError):
                uow.repository(ContractLine).add(ContractLine(order_id=404, sku="x"))
        assert _refs(make_uow) == []

    def test_a_row_others_refer_to_cannot_be_removed(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            uow.repository(ContractLine).add(ContractLine(order_id=key, sku="x"))
            uow.commit()
            orders = uow.repository(ContractOrder)
            with pytest.raises(ConflictError):
                orders.remove(orders.get(key))
        with uow:
            lines = uow.repository(ContractLine)
            lines.remove((lines.find())[0])
            orders = uow.repository(ContractOrder)
            orders.remove(orders.get(key))
            uow.commit()
        assert _refs(make_uow) == []

    # -- transactions ---------------------------------------------------------------------

    def test_work_not_committed_is_rolled_back_on_exit(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            uow.repository(ContractOrder).add(_order("a"))
        assert _refs(make_uow) == []

    def test_an_exception_mid_unit_persists_nothing(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with pytest.raises(RuntimeError, match="boom"):
            with uow:
                orders = uow.repository(ContractOrder)
                (orders.get(key)).total = 99
                orders.add(_order("a"))
                raise RuntimeError("boom")
        assert _refs(make_uow, spec=F("total") == 1) == ["o0"]
        assert _refs(make_uow) == ["o0"]

    def test_rollback_undoes_the_work_since_the_last_commit(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            orders.add(_order("kept"))
            uow.commit()
            orders.add(_order("undone"))
            uow.rollback()
            assert [order.ref for order in orders.find()] == ["kept"]
            uow.commit()
        assert _refs(make_uow) == ["kept"]

    def test_a_unit_can_be_entered_again_but_not_twice_at_once(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        for ref in ("a", "b"):
            with uow:
                uow.repository(ContractOrder).add(_order(ref))
                uow.commit()
        with uow:
            with pytest.raises(ConfigurationError, match="already"):
                with uow:
                    pass  # pragma: no cover - never entered
        assert _refs(make_uow) == ["a", "b"]

    def test_a_repository_needs_an_entered_unit(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with pytest.raises(ConfigurationError, match="not in a transaction"):
            uow.repository(ContractOrder)
        with uow:
            kept = uow.repository(ContractOrder)
        with pytest.raises(ConfigurationError, match="not in a transaction"):
            kept.count()
        with pytest.raises(ConfigurationError, match="not in a transaction"):
            kept.add(_order("late"))
        assert _refs(make_uow) == []

    def test_entities_keep_their_values_when_a_block_ends_uncommitted(
        self, make_uow: MakeUow
    ) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).get(key)
            order.total = 99
        assert order.total == 99
        assert _refs(make_uow, spec=F("total") == 1) == ["o0"]

    def test_an_entity_of_another_unit_cannot_be_added(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            loaded = uow.repository(ContractOrder).get(key)
        loaded.total = 50
        with uow:
            with pytest.raises(QueryError, match="not new"):
                uow.repository(ContractOrder).add(loaded)
        assert _refs(make_uow, spec=F("total") == 1) == ["o0"]

    def test_a_refused_batch_leaves_its_entities_as_given(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1)
        fresh, taken = _order("fresh"), _order("o0")
        uow = make_uow()
        with uow:
            with pytest.raises(ConflictError):
                uow.repository(ContractOrder).add_many([fresh, taken])
        assert [vars(order).get("id") for order in (fresh, taken)] == [None, None]
        assert _refs(make_uow) == ["o0"]

    def test_a_savepoint_undoes_only_its_block(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            orders.add(_order("outer"))
            with pytest.raises(RuntimeError):
                with uow.savepoint():
                    orders.add(_order("inner"))
                    raise RuntimeError
            with uow.savepoint():
                orders.add(_order("kept"))
            uow.commit()
        assert _refs(make_uow) == ["outer", "kept"]

    def test_a_conflict_inside_a_savepoint_leaves_the_unit_usable(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            orders.add(_order("before"))
            with pytest.raises(ConflictError):
                with uow.savepoint():
                    orders.add(_order("o0"))
            orders.add(_order("after"))
            uow.commit()
        assert _refs(make_uow) == ["o0", "before", "after"]

    def test_entities_loaded_in_an_undone_savepoint_stay_in_the_unit(
        self, make_uow: MakeUow
    ) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(RuntimeError):
                with uow.savepoint():
                    loaded = orders.get(key)
                    raise RuntimeError
            assert orders.get(key) is loaded
            loaded.total = 9
            uow.commit()
        assert _refs(make_uow, spec=F("total") == 9) == ["o0"]

    def test_a_failure_caught_inside_a_savepoint_still_undoes_it(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(ConflictError):
                with uow.savepoint():
                    orders.add(_order("inside"))
                    with contextlib.suppress(ConflictError):  # caught: the block still fails
                        orders.add(_order("o0"))
            orders.add(_order("after"))
            uow.commit()
        assert _refs(make_uow) == ["o0", "after"]

    def test_commit_and_rollback_wait_for_the_savepoint_block(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            with uow.savepoint():
                uow.repository(ContractOrder).add(_order("a"))
                with pytest.raises(ConfigurationError, match="savepoint"):
                    uow.commit()
                with pytest.raises(ConfigurationError, match="savepoint"):
                    uow.rollback()
            uow.commit()
        assert _refs(make_uow) == ["a"]

    def test_a_savepoint_rollback_restores_changed_values(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            with pytest.raises(RuntimeError):
                with uow.savepoint():
                    (orders.get(key)).total = 50
                    assert orders.count(F("total") == 50) == 1
                    raise RuntimeError
            assert orders.count(F("total") == 50) == 0
            uow.commit()
        assert _refs(make_uow, spec=F("total") == 1) == ["o0"]

    # -- optimistic locking -------------------------------------------------------------

    def test_a_change_commits_and_bumps_the_version(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).get(key)
            order.total = 2
            uow.commit()
            assert order.version == 2
        with uow:
            stored = uow.repository(ContractOrder).get(key)
            assert (stored.total, stored.version) == (2, 2)

    def test_get_by_finds_exactly_one(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 5, 5, 7)
        with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            assert (orders.get_by(F("ref") == "o2")).total == 7
            with pytest.raises(NotFoundError) as missing:
                orders.get_by(F("ref") == "nope")
            assert missing.value.entity == "ContractOrder"
            with pytest.raises(QueryError, match="several"):
                orders.get_by(F("total") == 5)

    def test_find_and_count_counts_past_the_window(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1, 2, 3, 4, 5)
        with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            items, total = orders.find_and_count(
                F("total") >= 2, order_by="-total", limit=2, offset=1
            )
            assert [order.total for order in items] == [4, 3]
            assert total == 4

    def test_remove_many_removes_what_matches_and_counts_it(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1, 2, 3)
        with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            assert orders.remove_many(F("total") >= 2) == 2
            assert orders.count() == 1  # this unit sees its removals
            assert orders.remove_many(F("total") >= 2) == 0
            uow.commit()
        assert _refs(make_uow) == ["o0"]
        with make_uow() as uow:
            with pytest.raises(QueryError, match="remove_many takes a Specification"):
                uow.repository(ContractOrder).remove_many(None)  # type: ignore[arg-type]

    # -- upsert -------------------------------------------------------------------------

    def test_upsert_inserts_when_the_key_is_not_stored(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            settings = uow.repository(ContractSetting, str)
            given = ContractSetting(name="theme", value="dark")
            stored = settings.upsert(given)
            assert (stored.name, stored.value, stored.priority, stored.changed) == (
                "theme",
                "dark",
                5,
                False,
            )
            assert settings.get("theme") is stored
            assert settings.count() == 1
            uow.commit()
        with make_uow() as uow:
            found = uow.repository(ContractSetting).get("theme")
            assert (found.value, found.priority, found.changed) == ("dark", 5, False)

    def test_upsert_updates_the_stored_row_for_other_units(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            settings.add(ContractSetting(name="theme", value="dark", code="T", priority=1))
            uow.commit()
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            stored = settings.upsert(ContractSetting(name="theme", value="light", code="T"))
            # every non-key field is written: a field left None takes its default, and
            # onupdate applies, as an UPDATE does
            assert (stored.value, stored.code, stored.priority, stored.changed) == (
                "light",
                "T",
                5,
                True,
            )
            assert settings.count() == 1
            uow.commit()
        with make_uow() as uow:
            found = uow.repository(ContractSetting).get("theme")
            assert (found.value, found.code, found.priority, found.changed) == (
                "light",
                "T",
                5,
                True,
            )

    def test_upsert_writes_none_over_a_field_without_a_default(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            settings.add(ContractSetting(name="a", value="v", code="A"))
            stored = settings.upsert(ContractSetting(name="a", priority=9, changed=False))
            assert (stored.value, stored.code, stored.priority, stored.changed) == (
                None,
                None,
                9,
                False,
            )
            uow.commit()
        with make_uow() as uow:
            found = uow.repository(ContractSetting).get("a")
            assert (found.value, found.code, found.priority, found.changed) == (
                None,
                None,
                9,
                False,
            )

    def test_upsert_refreshes_the_entity_the_unit_has_loaded(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            uow.repository(ContractSetting).add(ContractSetting(name="a", value="old"))
            uow.commit()
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            loaded = settings.get("a")
            given = ContractSetting(name="a", value="new")
            assert settings.upsert(given) is loaded
            assert (loaded.value, loaded.changed) == ("new", True)
            assert vars(given).get("priority") is None  # the object passed is left as it was
            assert (settings.find(F("value") == "new")) == [loaded]
            loaded.code = "C"  # still tracked: a later change is written
            uow.commit()
        with make_uow() as uow:
            found = uow.repository(ContractSetting).get("a")
            assert (found.value, found.code) == ("new", "C")

    def test_upsert_writes_over_pending_changes_of_the_loaded_entity(
        self, make_uow: MakeUow
    ) -> None:
        with make_uow() as uow:
            uow.repository(ContractSetting).add(ContractSetting(name="a", value="old"))
            uow.commit()
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            loaded = settings.get("a")
            loaded.value, loaded.code = "pending", "P"
            assert settings.upsert(loaded) is loaded  # flushed, then written again
            assert (loaded.value, loaded.code, loaded.changed) == ("pending", "P", True)
            uow.commit()
        with make_uow() as uow:
            assert (uow.repository(ContractSetting).get("a")).code == "P"

    def test_upsert_carries_the_events_of_the_aggregate_passed(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            notes = uow.repository(ContractNote, int)
            notes.add(ContractNote(text="draft", id=1))
            uow.commit()
            loaded = notes.get(1)
            written = ContractNote(text="", id=1)
            written.edit("first")
            fresh = ContractNote(text="", id=2)
            fresh.edit("second")
            assert notes.upsert(written) is loaded
            stored = notes.upsert(fresh)
            assert stored is not fresh
            assert stored.text == "second"
            assert (written.pending_events, fresh.pending_events) == ((), ())
            uow.commit()
        events = list(uow.collect_events())
        assert all(isinstance(event, NoteEdited) for event in events)
        assert [(e.note_id, e.text) for e in events] == [(1, "first"), (2, "second")]  # type: ignore[attr-defined]
        assert list(uow.collect_events()) == []

    def test_upsert_refuses_a_versioned_model(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        with make_uow() as uow:
            orders = uow.repository(ContractOrder)
            for order in (ContractOrder(id=key, ref="o0", total=9), _order("new")):
                with pytest.raises(QueryError, match=r"version column.*get_or_none"):
                    orders.upsert(order)
            uow.commit()
        assert _refs(make_uow, spec=F("total") == 1) == ["o0"]

    def test_upsert_refuses_an_entity_without_its_key(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            with pytest.raises(QueryError, match=r"key \(id\) is missing.*add\(\)"):
                uow.repository(ContractNote).upsert(ContractNote(text="keyless"))
            with pytest.raises(QueryError, match=r"key \(name\) is missing"):
                uow.repository(ContractSetting).upsert(ContractSetting(value="v"))
            with pytest.raises(QueryError, match="ContractTag"):
                uow.repository(ContractSetting).upsert(ContractTag(name="t"))  # type: ignore[arg-type]
            with pytest.raises(QueryError, match="str"):
                uow.repository(ContractSetting).upsert(ContractSetting(name=5))
            assert uow.repository(ContractSetting).count() == 0  # the unit goes on

    def test_upsert_of_a_taken_unique_value_conflicts(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            settings.add_many(
                [ContractSetting(name="a", code="A"), ContractSetting(name="b", code="B")]
            )
            uow.commit()
            for taken in (ContractSetting(name="c", code="A"), ContractSetting(name="b", code="A")):
                with pytest.raises(ConflictError):
                    settings.upsert(taken)
                with pytest.raises(ConflictError, match="roll it back"):
                    settings.count()
                uow.rollback()
            assert (settings.upsert(ContractSetting(name="c", code="C"))).code == "C"
            uow.commit()
        with make_uow() as uow:
            found = uow.repository(ContractSetting).find()
            assert [(s.name, s.code) for s in found] == [("a", "A"), ("b", "B"), ("c", "C")]

    def test_a_conflicting_upsert_in_a_savepoint_undoes_only_the_block(
        self, make_uow: MakeUow
    ) -> None:
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            settings.add(ContractSetting(name="a", code="A", value="before"))
            with pytest.raises(ConflictError):
                with uow.savepoint():
                    settings.upsert(ContractSetting(name="a", code="A", value="inside"))
                    settings.upsert(ContractSetting(name="b", code="B"))
                    settings.upsert(ContractSetting(name="c", code="A"))
            assert (settings.get("a")).value == "before"
            settings.upsert(ContractSetting(name="d", code="B"))
            uow.commit()
        with make_uow() as uow:
            found = uow.repository(ContractSetting).find()
            assert [(s.name, s.value, s.changed) for s in found] == [
                ("a", "before", False),
                ("d", None, False),
            ]

    def test_upsert_of_a_missing_required_value_conflicts(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            notes = uow.repository(ContractNote)
            notes.add(ContractNote(text="kept", id=1))
            uow.commit()
            for note in (ContractNote(text=None, id=1), ContractNote(text=None, id=2)):  # type: ignore[arg-type]
                with pytest.raises(ConflictError):
                    notes.upsert(note)
                uow.rollback()
            assert [(n.id, n.text) for n in notes.find()] == [(1, "kept")]

    def test_upsert_of_a_reference_to_a_missing_row_conflicts(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            with pytest.raises(ConflictError):
                uow.repository(ContractLine).upsert(ContractLine(id=1, order_id=404, sku="x"))

    def test_an_upsert_rolled_back_is_undone(self, make_uow: MakeUow) -> None:
        with make_uow() as uow:
            settings = uow.repository(ContractSetting)
            settings.add(ContractSetting(name="kept", value="old"))
            uow.commit()
            settings.upsert(ContractSetting(name="kept", value="new"))
            settings.upsert(ContractSetting(name="undone"))
            uow.rollback()
            assert settings.get_or_none("undone") is None
            assert (settings.get("kept")).value == "old"
            uow.commit()
        with make_uow() as uow:
            found = uow.repository(ContractSetting).find()
            assert [(s.name, s.value) for s in found] == [("kept", "old")]

    def test_work_left_without_commit_is_reported_at_debug(
        self, make_uow: MakeUow, caplog: pytest.LogCaptureFixture
    ) -> None:
        kept, gone = _seed(make_uow, 1, 2)
        with caplog.at_level(logging.DEBUG, logger="buttress.persistence"):
            with make_uow() as uow:  # forgot commit()
                orders = uow.repository(ContractOrder)
                orders.add(ContractOrder(ref="forgotten"))
                (orders.get(kept)).total = 99
                orders.remove(orders.get(gone))
            with make_uow() as uow:  # committed: nothing discarded
                (uow.repository(ContractOrder).get(kept)).total = 7
                uow.commit()
            with make_uow() as uow:  # read only
                uow.repository(ContractOrder).count()
        reports = [r.getMessage() for r in caplog.records if "without commit()" in r.getMessage()]
        assert len(reports) == 1, reports
        assert "discarded 1 new, 1 changed and 1 removed entities" in reports[0]
        assert _refs(make_uow) == ["o0", "o1"]

    def test_a_lost_update_is_refused(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        first, second = make_uow(), make_uow()
        with first, second:
            mine = first.repository(ContractOrder).get(key)
            theirs = second.repository(ContractOrder).get(key)
            mine.total = 10
            first.commit()
            theirs.total = 20
            with pytest.raises(ConcurrencyError) as caught:
                second.commit()
        assert (caught.value.entity, caught.value.key) == ("ContractOrder", key)
        assert _refs(make_uow, spec=F("total") == 10) == ["o0"]

    def test_changing_an_entity_someone_removed_is_refused(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        first, second = make_uow(), make_uow()
        with first, second:
            mine = first.repository(ContractOrder).get(key)
            theirs = second.repository(ContractOrder).get(key)
            first.repository(ContractOrder).remove(mine)
            first.commit()
            theirs.total = 20
            with pytest.raises(ConcurrencyError) as caught:
                second.commit()
        assert (caught.value.entity, caught.value.key) == ("ContractOrder", key)
        assert _refs(make_uow) == []

    def test_removing_a_stale_entity_is_refused(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        first, second = make_uow(), make_uow()
        with first, second:
            mine = first.repository(ContractOrder).get(key)
            theirs = second.repository(ContractOrder).get(key)
            mine.total = 10
            first.commit()
            with pytest.raises(ConcurrencyError) as caught:
                second.repository(ContractOrder).remove(theirs)
        assert (caught.value.entity, caught.value.key) == ("ContractOrder", key)
        assert _refs(make_uow) == ["o0"]

    def test_without_a_version_each_unit_writes_only_what_it_changed(
        self, make_uow: MakeUow
    ) -> None:
        uow = make_uow()
        with uow:
            uow.repository(ContractTag).add(ContractTag(name="t", label="a"))
            uow.commit()
        first, second = make_uow(), make_uow()
        with first, second:
            mine = first.repository(ContractTag).get("t")
            theirs = second.repository(ContractTag).get("t")
            theirs.label = "theirs"
            second.commit()
            mine.color = "red"
            first.commit()
        with uow:
            stored = uow.repository(ContractTag).get("t")
            assert (stored.label, stored.color) == ("theirs", "red")

    # -- removing -----------------------------------------------------------------------

    def test_remove_deletes_at_commit(self, make_uow: MakeUow) -> None:
        keys = _seed(make_uow, 1, 2)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            orders.remove(orders.get(keys[0]))
            assert orders.get_or_none(keys[0]) is None
            assert orders.count() == 1
            uow.commit()
        assert _refs(make_uow) == ["o1"]

    def test_a_removed_entity_cannot_be_added_again(self, make_uow: MakeUow) -> None:
        keys = _seed(make_uow, 1, 2)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            first, second = orders.get(keys[0]), orders.get(keys[1])
            orders.remove(first)
            with pytest.raises(QueryError, match="removed"):
                orders.add(first)
            uow.commit()
            with pytest.raises(QueryError, match="removed"):
                orders.add(first)
            orders.remove(second)
            uow.rollback()
            assert orders.get(keys[1]) is second
        assert _refs(make_uow) == ["o1"]

    def test_remove_needs_an_entity_of_this_unit(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            loaded = uow.repository(ContractOrder).get(key)
        with uow:
            with pytest.raises(QueryError, match="get"):
                uow.repository(ContractOrder).remove(loaded)
            with pytest.raises(QueryError):
                uow.repository(ContractOrder).remove(_order("never-added"))

    # -- querying -----------------------------------------------------------------------

    def test_find_filters_orders_and_windows(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 30, 10, 20, 10, 40)
        assert _refs(make_uow) == ["o0", "o1", "o2", "o3", "o4"]
        assert _refs(make_uow, spec=F("total") >= 20, order_by="-total") == [
            "o4",
            "o0",
            "o2",
        ]
        assert _refs(make_uow, order_by=["total", "-ref"]) == [
            "o3",
            "o1",
            "o2",
            "o0",
            "o4",
        ]
        assert _refs(make_uow, order_by="total", limit=2, offset=1) == ["o3", "o2"]
        assert _refs(make_uow, limit=0) == []
        spec = (F("total") == 10) | F("ref").in_(["o4"])
        assert _refs(make_uow, spec=spec) == ["o1", "o3", "o4"]
        assert _refs(make_uow, spec=~spec & F("note").is_none()) == ["o0", "o2"]

    def test_text_matching_is_case_sensitive_and_literal(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            for ref, note in [("a", "50% Off"), ("b", "50_ off"), ("c", None)]:
                orders.add(_order(ref, note=note))
            uow.commit()
        assert _refs(make_uow, spec=F("note").contains("% O")) == ["a"]
        assert _refs(make_uow, spec=F("note").startswith("50_")) == ["b"]
        assert _refs(make_uow, spec=F("note").contains("off")) == ["b"]

    def test_first_count_and_exists(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 3, 1, 2)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            assert (orders.first(order_by="total")).ref == "o1"  # type: ignore[union-attr]
            assert orders.first(F("total") > 5) is None
            assert orders.count() == 3
            assert orders.count(F("total") < 3) == 2
            assert orders.exists(F("ref") == "o2")
            assert not orders.exists(F("ref") == "zz")

    def test_queries_see_changes_not_yet_committed(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            (orders.get(key)).total = 7
            orders.add(_order("new", 7))
            assert [o.ref for o in orders.find(F("total") == 7)] == ["o0", "new"]

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
    def test_bad_queries_are_refused(self, make_uow: MakeUow, find: dict[str, Any]) -> None:
        uow = make_uow()
        with uow:
            with pytest.raises(QueryError):
                uow.repository(ContractOrder).find(**find)

    def test_an_unknown_field_is_named_with_the_valid_ones(self, make_uow: MakeUow) -> None:
        uow = make_uow()
        with uow:
            with pytest.raises(QueryError, match=r"'totl'.*id, note, ref, total, version"):
                uow.repository(ContractOrder).count(F("totl") > 1)

    # -- keyset pages -------------------------------------------------------------------

    def test_pages_walk_every_entity_once_in_order(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 5, 3, 5, 1, 3, 5, 2)
        expected = _refs(make_uow, order_by="-total")
        uow = make_uow()
        seen: list[str] = []
        with uow:
            orders = uow.repository(ContractOrder)
            cursor = None
            for _ in range(10):
                page = orders.page(order_by="-total", size=3, after=cursor)
                seen += [order.ref for order in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
        assert seen == expected

    def test_a_page_neither_skips_nor_repeats_after_writes(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1, 2, 3, 4)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            first = orders.page(F("total") > 1, order_by="total", size=2)
            assert [o.ref for o in first.items] == ["o1", "o2"]
            orders.add(_order("early", 2))  # sorts before the cursor: not repeated
            orders.add(_order("late", 9))
            rest = orders.page(F("total") > 1, order_by="total", size=5, after=first.next_cursor)
            assert [o.ref for o in rest.items] == ["o3", "late"]
            assert rest.next_cursor is None

    def test_a_full_last_page_has_no_cursor(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1, 2)
        uow = make_uow()
        with uow:
            page = uow.repository(ContractOrder).page(size=2)
            assert (len(page.items), page.next_cursor) == (2, None)

    def test_bad_cursors_are_refused(self, make_uow: MakeUow) -> None:
        _seed(make_uow, 1, 2, 3)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            cursor = (orders.page(order_by="total", size=1)).next_cursor
            assert cursor is not None
            tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
            with pytest.raises(DecodeError):
                orders.page(order_by="total", size=1, after=tampered)
            with pytest.raises(DecodeError):
                orders.page(order_by="total", size=1, after="not a cursor")
            with pytest.raises(QueryError, match="order_by"):
                orders.page(order_by="-total", size=1, after=cursor)
            for size in (0, -1, 1.5):
                with pytest.raises(QueryError):
                    orders.page(size=size)  # type: ignore[arg-type]

    # -- domain events ------------------------------------------------------------------

    def test_events_are_collected_once_after_commit_in_order(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 5)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            added = orders.add(_order("new", 7))
            (orders.find(F("ref") == "o0"))[0].pay()
            added.pay()
            assert list(uow.collect_events()) == []  # nothing before the commit
            uow.commit()
        events = list(uow.collect_events())
        assert all(isinstance(event, OrderPaid) for event in events)
        assert [(e.order_id, e.total) for e in events] == [(key, 5), (added.id, 7)]  # type: ignore[attr-defined]
        assert list(uow.collect_events()) == []

    def test_events_of_several_commits_queue_in_recording_order(self, make_uow: MakeUow) -> None:
        keys = _seed(make_uow, 1, 2, 3)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            for order in orders.find(order_by="-total"):
                order.pay()
            uow.commit()
            (orders.get(keys[0])).pay()
            uow.commit()
        order_ids = [e.order_id for e in uow.collect_events()]  # type: ignore[attr-defined]
        assert order_ids == [keys[2], keys[1], keys[0], keys[0]]

    def test_no_events_after_a_rollback(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            orders = uow.repository(ContractOrder)
            (orders.get(key)).pay()
            uow.rollback()
            orders.get(key)  # seen again (SQL: the same object, expired)
            uow.commit()
        with uow:
            (uow.repository(ContractOrder).get(key)).pay()
        assert list(uow.collect_events()) == []

    def test_an_aggregate_held_across_commits_still_has_its_events_collected(
        self, make_uow: MakeUow
    ) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).get(key)
            uow.commit()
            order.pay()  # not fetched again: the unit still knows it
            uow.commit()
            with pytest.raises(RuntimeError):
                with uow.savepoint():
                    order.pay()
                    raise RuntimeError
            uow.commit()
        assert [e.order_id for e in uow.collect_events()] == [key]  # type: ignore[attr-defined]

    def test_a_change_after_an_undone_savepoint_is_checked_against_what_was_read(
        self, make_uow: MakeUow
    ) -> None:
        [key] = _seed(make_uow, 1)
        mine, theirs = make_uow(), make_uow()
        with mine, theirs:
            orders = mine.repository(ContractOrder)
            order = orders.get(key)  # read at version 1
            with contextlib.suppress(RuntimeError):
                with mine.savepoint():
                    order.total = 50  # undone with the block: SQL expires the order
                    raise RuntimeError
            other = theirs.repository(ContractOrder).get(key)
            other.total = 99
            theirs.commit()
            order.ref = "after"  # based on what this unit read before: stale now
            with pytest.raises(ConcurrencyError):
                mine.commit()
        with make_uow() as uow:
            stored = uow.repository(ContractOrder).get(key)
            assert (stored.total, stored.ref) == (99, "o0")

    def test_events_of_an_undone_savepoint_are_dropped(self, make_uow: MakeUow) -> None:
        [key] = _seed(make_uow, 1)
        uow = make_uow()
        with uow:
            order = uow.repository(ContractOrder).get(key)
            order.pay()
            with pytest.raises(RuntimeError):
                with uow.savepoint():
                    order.pay()
                    raise RuntimeError
            uow.commit()
        assert len(list(uow.collect_events())) == 1

    # -- aggregates with parts ----------------------------------------------------------

    def test_an_aggregate_is_saved_and_loaded_with_its_parts(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert product.version == 1
            assert [b.reference for b in product.batches] == ["b1", "b2"]  # order_by reference
            assert [b.product_sku for b in product.batches] == ["S1", "S1"]
            assert [(a.orderid, a.qty) for a in product.batches[0].allocations] == [("o1", 2)]
            assert product.batches[1].allocations == []
            assert product.detail is not None
            assert product.detail.text == "red chair"
            assert sorted(label.name for label in product.labels) == ["blue", "red"]
            assert uow.repository(ContractAllocation).count() == 1
            assert uow.repository(ContractLabel).count() == 2

    def test_loaded_parts_stay_readable_after_the_unit(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        with make_uow() as uow:
            [product] = uow.repository(ContractProduct).find(load=("batches.allocations",))
        assert [len(batch.allocations) for batch in product.batches] == [1, 0]

    def test_parts_added_to_a_loaded_aggregate_are_saved(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        uow = make_uow()
        with uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert product.allocate("o2", 5) == "b1"
            product.batches.append(ContractBatch(reference="b0", qty=1))
            uow.commit()
            assert product.version == 2  # one flush, one bump
        events = list(uow.collect_events())
        assert [(e.orderid, e.reference) for e in events] == [("o2", "b1")]  # type: ignore[attr-defined]
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b0", "b1", "b2"]
            assert [a.orderid for a in product.batches[1].allocations] == ["o1", "o2"]
            assert product.batches[0].product_sku == "S1"

    def test_parts_removed_from_their_parent_are_deleted(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches.remove(product.batches[0])  # with its allocation: delete-orphan
            product.detail = None
            product.labels = {label for label in product.labels if label.name == "red"}
            uow.commit()
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b2"]
            assert product.detail is None
            assert [label.name for label in product.labels] == ["red"]
            assert product.version == 2
            assert uow.repository(ContractAllocation).count() == 0
            assert uow.repository(ContractDetail).count() == 0
            assert uow.repository(ContractLabel).count() == 2  # shared: kept

    def test_removing_the_root_removes_its_parts_not_what_it_shares(
        self, make_uow: MakeUow
    ) -> None:
        _stock(make_uow)
        with make_uow() as uow:
            products = uow.repository(ContractProduct)
            products.remove(products.get("S1", load=_EVERYTHING))
            uow.commit()
        with make_uow() as uow:
            assert uow.repository(ContractBatch).count() == 0
            assert uow.repository(ContractAllocation).count() == 0
            assert uow.repository(ContractDetail).count() == 0
            labels = uow.repository(ContractLabel)
            assert labels.count() == 2
            labels.remove(labels.get("red"))  # no pair refers to it any more
            uow.commit()

    def test_a_shared_entity_still_paired_cannot_be_removed(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        with make_uow() as uow:
            labels = uow.repository(ContractLabel)
            with pytest.raises(ConflictError):
                labels.remove(labels.get("red"))
                uow.commit()

    def test_a_change_to_a_part_bumps_the_root_once_per_flush(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        uow = make_uow()
        with uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches[0].allocations[0].qty = 3
            product.batches[1].qty = 50
            assert product.detail is not None
            product.detail.text = "blue chair"
            uow.commit()
            assert product.version == 2
        with uow:  # nothing changed: no bump
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            uow.commit()
            assert product.version == 2
        with uow:  # a change to the root itself: SQL's own bump, once
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches[1].qty = 60
            product.labels.add(ContractLabel(name="green"))
            uow.commit()
            assert product.version == 3
        with uow:
            stored = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert (stored.version, stored.batches[1].qty) == (3, 60)
            assert sorted(label.name for label in stored.labels) == ["blue", "green", "red"]

    def test_an_event_alone_bumps_the_version(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        uow = make_uow()
        with uow:
            product = uow.repository(ContractProduct).get("S1")
            product.record_event(Allocated(sku="S1", orderid="o9", reference="b1"))
            uow.commit()
            assert product.version == 2
        assert [e.orderid for e in uow.collect_events()] == ["o9"]  # type: ignore[attr-defined]

    def test_units_changing_different_parts_of_one_aggregate_conflict(
        self, make_uow: MakeUow
    ) -> None:
        _stock(make_uow)
        first, second = make_uow(), make_uow()
        with first, second:
            mine = first.repository(ContractProduct).get("S1", load=_EVERYTHING)
            theirs = second.repository(ContractProduct).get("S1", load=_EVERYTHING)
            mine.batches[0].qty = 11
            first.commit()
            theirs.batches[1].qty = 6
            with pytest.raises(ConcurrencyError) as caught:
                second.commit()
            assert caught.value.entity == "ContractProduct"
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.qty for b in product.batches] == [11, 5]
            assert product.version == 2

    def test_units_adding_parts_to_one_aggregate_conflict(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        first, second = make_uow(), make_uow()
        with first, second:
            mine = first.repository(ContractProduct).get("S1", load=_EVERYTHING)
            theirs = second.repository(ContractProduct).get("S1", load=_EVERYTHING)
            # a part of a part, and no event recorded: the boundary still holds
            mine.batches[0].allocations.append(ContractAllocation(orderid="o2", qty=5))
            first.commit()
            theirs.batches[1].allocations.append(ContractAllocation(orderid="o3", qty=5))
            with pytest.raises(ConcurrencyError):
                second.commit()
        with make_uow() as uow:
            orders = [a.orderid for a in uow.repository(ContractAllocation).find()]
            assert sorted(orders) == ["o1", "o2"]

    def test_a_part_moved_to_another_aggregate_bumps_both(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        with make_uow() as uow:
            uow.repository(ContractProduct).add(ContractProduct(sku="S2"))
            uow.commit()
        with make_uow() as uow:
            products = uow.repository(ContractProduct)
            one = products.get("S1", load=_EVERYTHING)
            two = products.get("S2", load=_EVERYTHING)
            batch = one.batches[1]
            two.batches.append(batch)  # the backref takes it out of one.batches
            assert batch.product is two
            uow.commit()
            assert (one.version, two.version) == (2, 2)
        with make_uow() as uow:
            moved = uow.repository(ContractBatch).get_by(F("reference") == "b2")
            assert moved.product_sku == "S2"

    def test_rollback_restores_the_aggregate(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        uow = make_uow()
        with uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.batches.remove(product.batches[0])
            product.batches.append(ContractBatch(reference="b9", qty=1))
            uow.repository(ContractBatch).count()  # flushed
            uow.rollback()
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b1", "b2"]
            assert [len(b.allocations) for b in product.batches] == [1, 0]
            assert product.version == 1

    def test_a_savepoint_restores_the_aggregate(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        uow = make_uow()
        with uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            product.allocate("o2", 1)
            with pytest.raises(RuntimeError):
                with uow.savepoint():
                    product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
                    product.batches.remove(product.batches[1])
                    uow.repository(ContractBatch).count()
                    raise RuntimeError
            uow.commit()
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [b.reference for b in product.batches] == ["b1", "b2"]
            assert [a.orderid for a in product.batches[0].allocations] == ["o1", "o2"]

    def test_a_path_filters_by_some_part(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        with make_uow() as uow:
            uow.repository(ContractProduct).add(ContractProduct(sku="S2"))
            products = uow.repository(ContractProduct)

            def skus(spec: Any) -> list[str]:
                return [p.sku for p in products.find(spec, order_by="sku")]

            assert skus(F("batches.reference") == "b2") == ["S1"]
            assert skus(F("batches.allocations.orderid") == "o1") == ["S1"]
            assert skus(~(F("batches.reference") == "b2")) == ["S2"]
            assert skus(F("batches.qty") > 100) == []
            assert skus(F("labels.name").in_(["red", "green"])) == ["S1"]
            assert skus(F("detail.text").startswith("red")) == ["S1"]
            assert products.count(F("batches.allocations.qty") >= 2) == 1
            batches = uow.repository(ContractBatch)
            found = batches.find(F("product.sku") == "S1", order_by="reference")
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
    def test_an_unknown_relationship_path_is_refused(
        self, make_uow: MakeUow, call: dict[str, Any], message: str
    ) -> None:
        with make_uow() as uow:
            with pytest.raises(QueryError, match=message):
                uow.repository(ContractProduct).find(**call)
            if "load" in call:
                with pytest.raises(QueryError, match=message):
                    uow.repository(ContractProduct).get("S1", load=call["load"])

    def test_a_part_replaced_under_its_key_is_written_over(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        uow = make_uow()
        with uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            old = product.detail
            product.detail = ContractDetail(text="green chair")  # the same key: S1
            uow.commit()
            assert product.version == 2
        with uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert product.detail is not None
            assert product.detail.text == "green chair"
            assert uow.repository(ContractDetail).count() == 1
            product.detail = ContractDetail(text="undone")
            uow.repository(ContractProduct).count()  # flushed
            uow.rollback()
            again = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert again.detail is not None
            assert again.detail.text == "green chair"
        assert old is not None
        assert old.text == "red chair"

    def test_a_part_added_by_its_key_or_its_owner_bumps_the_root(self, make_uow: MakeUow) -> None:
        _stock(make_uow)
        with make_uow() as uow:  # by the foreign key alone: the root is not loaded
            uow.repository(ContractBatch).add(
                ContractBatch(reference="b3", qty=1, product_sku="S1")
            )
            uow.commit()
        with make_uow() as uow:  # by the many-to-one, the root's batches not loaded
            product = uow.repository(ContractProduct).get("S1")
            uow.repository(ContractBatch).add(ContractBatch(reference="b4", qty=1, product=product))
            uow.commit()
            assert product.version == 3
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load="batches")
            assert [b.reference for b in product.batches] == ["b1", "b2", "b3", "b4"]
            assert product.version == 3

    def test_a_part_removed_through_its_own_repository_bumps_the_root(
        self, make_uow: MakeUow
    ) -> None:
        _stock(make_uow)
        with make_uow() as uow:  # the root not loaded
            batches = uow.repository(ContractBatch)
            batches.remove(batches.get_by(F("reference") == "b2"))
            uow.commit()
        with make_uow() as uow:  # a part of a part, by a specification
            count = uow.repository(ContractAllocation).remove_many(F("orderid") == "o1")
            uow.commit()
            assert count == 1
        with make_uow() as uow:
            product = uow.repository(ContractProduct).get("S1", load=_EVERYTHING)
            assert [(b.reference, len(b.allocations)) for b in product.batches] == [("b1", 0)]
            assert product.version == 3

    def test_events_recorded_before_the_aggregate_was_added_are_collected(
        self, make_uow: MakeUow
    ) -> None:
        early = ContractProduct(sku="E1")
        early.record_event(Allocated(sku="E1", orderid="before", reference="-"))
        uow = make_uow()
        with uow:
            uow.repository(ContractProduct).add(ContractProduct(sku="E0"))
            uow.commit()  # a commit with nothing to collect comes first
            uow.repository(ContractProduct).add(early)
            uow.commit()
        assert [e.orderid for e in uow.collect_events()] == ["before"]  # type: ignore[attr-defined]
