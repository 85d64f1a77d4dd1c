"""The Redis text of a key follows the key rule: one text exactly for one memory key."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_keys import ARGUMENTS, spelled, twin

from buttress.caching._keys import KeyMaker
from buttress.caching._serial import encode_key


def make_key(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return (*args, kwargs)


KEYS = KeyMaker(make_key, "f", method=False).general


@settings(max_examples=400)
@given(data=st.data())
def test_two_calls_get_one_redis_text_exactly_when_they_get_one_memory_key(
    data: st.DataObject,
) -> None:
    first = data.draw(ARGUMENTS)
    second = data.draw(
        st.one_of(
            ARGUMENTS, st.builds(lambda: first), st.composite(lambda draw: twin(draw, first))()
        )
    )
    one, other = KEYS((first,), {"k": first}), KEYS((second,), {"k": second})
    same_key = one == other
    assert same_key == (spelled(first) == spelled(second))
    assert (encode_key(one[1:]) == encode_key(other[1:])) == same_key
