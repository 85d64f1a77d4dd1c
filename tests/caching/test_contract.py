"""One contract for `cached` over every cache, for def and async def.

Each test runs six times: `MemoryCache`, `RedisCache` and `TieredCache` (the last
two against a real Redis), each for a ``def`` and an ``async def``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from typing import Any

import pydantic
import pytest
from caching_flavours import Flavour

from buttress.caching import CacheStats, cached


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Order(pydantic.BaseModel):
    id: uuid.UUID
    total: float
    placed: dt.datetime
    lines: list[str]


class Calls:
    """Counts calls of a body, per arguments."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.seen)


def test_one_entry_however_the_arguments_are_spelled(cache: Any, flavour: Flavour) -> None:
    calls = Calls()

    def area(width: int, height: int = 2, *, unit: str = "m") -> str:
        calls.seen.append((width, height, unit))
        return f"{width * height}{unit}"

    cached_area = cached(cache=cache)(flavour.twin(area))
    spellings = [
        ((3,), {}),
        ((), {"width": 3}),
        ((3, 2), {}),
        ((3,), {"height": 2}),
        ((3,), {"unit": "m"}),
        ((), {"unit": "m", "height": 2, "width": 3}),
    ]
    for args, kwargs in spellings:
        assert flavour.call(cached_area, *args, **kwargs) == "6m"
    assert calls.seen == [(3, 2, "m")]
    assert flavour.call(cached_area, 3, 3) == "9m"
    assert len(calls) == 2


def test_types_stay_part_of_the_key(cache: Any, flavour: Flavour) -> None:
    def describe(value: Any) -> str:
        return f"{type(value).__name__}:{value}"

    cached_describe = cached(cache=cache)(flavour.twin(describe))
    for value in [1, "1", 1.0, True]:
        assert flavour.call(cached_describe, value) == describe(value)


def test_exceptions_are_not_cached(cache: Any, flavour: Flavour) -> None:
    outcomes: list[Any] = [LookupError("not yet"), "found"]

    def lookup(key: str) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    cached_lookup = cached(cache=cache)(flavour.twin(lookup))
    with pytest.raises(LookupError, match="not yet"):
        flavour.call(cached_lookup, "a")
    assert flavour.call(cached_lookup, "a") == "found"
    assert flavour.call(cached_lookup, "a") == "found"
    assert outcomes == []


def test_entries_expire_after_their_ttl(cache: Any, flavour: Flavour) -> None:
    calls = Calls()

    def now(tick: int) -> int:
        calls.seen.append((tick,))
        return len(calls)

    cached_now = cached(ttl=0.3, cache=cache)(flavour.twin(now))
    assert flavour.call(cached_now, 1) == 1
    assert flavour.call(cached_now, 1) == 1
    time.sleep(0.45)
    assert flavour.call(cached_now, 1) == 2


def test_invalidate_takes_the_call_spelling_and_drops_only_that_entry(
    cache: Any, flavour: Flavour
) -> None:
    calls = Calls()

    def square(x: int, power: int = 2) -> int:
        calls.seen.append((x, power))
        return int(x**power)

    cached_square = cached(cache=cache)(flavour.twin(square))
    flavour.call(cached_square, 3)
    flavour.call(cached_square, 4)
    invalidate = cached_square.ainvalidate if flavour.is_async else cached_square.invalidate
    flavour.run(invalidate(x=3, power=2))
    flavour.call(cached_square, 3)
    flavour.call(cached_square, 4)
    assert calls.seen == [(3, 2), (4, 2), (3, 2)]


def test_clear_drops_one_function_and_tags_cut_across_functions(
    cache: Any, flavour: Flavour
) -> None:
    calls = Calls()

    def user(user_id: int) -> str:
        calls.seen.append(("user", user_id))
        return f"user {user_id}"

    def avatar(user_id: int) -> str:
        calls.seen.append(("avatar", user_id))
        return f"avatar {user_id}"

    cached_user = cached(cache=cache, tags=lambda user_id: [f"user:{user_id}"])(flavour.twin(user))
    cached_avatar = cached(cache=cache, tags=lambda user_id: [f"user:{user_id}"])(
        flavour.twin(avatar)
    )
    for fn in (cached_user, cached_avatar):
        flavour.call(fn, 1)
        flavour.call(fn, 2)
    assert len(calls) == 4

    flavour.run(cached_user.aclear() if flavour.is_async else cached_user.clear())
    flavour.call(cached_user, 1)
    flavour.call(cached_avatar, 1)  # another function's entries stay
    assert len(calls) == 5

    drop = cached_user.ainvalidate_tags if flavour.is_async else cached_user.invalidate_tags
    flavour.run(drop("user:1"))
    for fn in (cached_user, cached_avatar):
        flavour.call(fn, 1)
        flavour.call(fn, 2)
    # user 2 was cleared with its function; the tag dropped user 1 and avatar 1
    assert calls.seen[5:] == [("user", 1), ("user", 2), ("avatar", 1)]


def test_stats_count_hits_and_misses(cache: Any, flavour: Flavour) -> None:
    cached_double = cached(cache=cache)(flavour.twin(lambda x: x * 2))
    for x in [1, 1, 2, 1, 2, 3]:
        flavour.call(cached_double, x)
    stats = cached_double.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.hits, stats.misses) == (3, 3)
    if stats.size is not None:
        assert stats.size >= 3


@pytest.mark.parametrize(
    ("cache_none", "expected_calls"), [(True, 1), (False, 3)], ids=["cached", "not-cached"]
)
def test_none_results_follow_cache_none(
    cache: Any, flavour: Flavour, cache_none: bool, expected_calls: int
) -> None:
    calls = Calls()

    def find(name: str) -> str | None:
        calls.seen.append((name,))
        return None

    cached_find = cached(cache=cache, cache_none=cache_none)(flavour.twin(find))
    for _ in range(3):
        assert flavour.call(cached_find, "nobody") is None
    assert len(calls) == expected_calls


def test_none_results_live_for_negative_ttl(cache: Any, flavour: Flavour) -> None:
    calls = Calls()

    def find(name: str) -> str | None:
        calls.seen.append((name,))
        return None if name == "ghost" else name

    cached_find = cached(cache=cache, negative_ttl=0.2)(flavour.twin(find))
    flavour.call(cached_find, "ghost")
    flavour.call(cached_find, "alice")
    time.sleep(0.35)
    flavour.call(cached_find, "ghost")
    flavour.call(cached_find, "alice")
    assert calls.seen == [("ghost",), ("alice",), ("ghost",)]


def test_values_come_back_as_the_annotated_types(cache: Any, flavour: Flavour) -> None:
    placed = dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.UTC)

    def order(number: int) -> Order:
        return Order(id=uuid.UUID(int=number), total=9.5, placed=placed, lines=["a", "b"])

    def point(number: int) -> Point:
        return Point(number, -number)

    def moment(number: int) -> dt.datetime:
        return placed + dt.timedelta(days=number)

    for body in (order, point, moment):
        fn = cached(cache=cache)(flavour.twin(body))
        first = flavour.call(fn, 7)
        again = flavour.call(fn, 7)
        assert again == first == body(7)
        assert type(again) is type(first)
        assert fn.stats().hits == 1


def test_methods_cache_per_instance(cache: Any, flavour: Flavour) -> None:
    calls = Calls()
    shared = cache_is_shared(cache)

    class Account:
        def __init__(self, number: int) -> None:
            self.number = number

        def balance(self, currency: str) -> str:
            calls.seen.append((self.number, currency))
            return f"{self.number} {currency}"

    key = (lambda account, currency: (account.number, currency)) if shared else None
    Account.balance = cached(cache=cache, key=key)(flavour.twin(Account.balance))  # type: ignore[method-assign]

    first, second = Account(1), Account(2)
    for account in (first, second, first, second):
        assert flavour.call(account.balance, "EUR") == f"{account.number} EUR"
    assert calls.seen == [(1, "EUR"), (2, "EUR")]


def cache_is_shared(cache: Any) -> bool:
    return type(cache).__name__ != "MemoryCache"
