"""Small helpers for the wording of messages, shared by every block."""

from __future__ import annotations

__all__ = ["a"]


def a(noun: str) -> str:
    """``noun`` with its indefinite article: ``a("int")`` is ``"an int"``, ``a("str")`` ``"a str"``.

    By the first letter, which suits the type and class names messages quote.
    """
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
