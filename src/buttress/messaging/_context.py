"""The ids of the message being handled, for the rows its handler's units write."""

from __future__ import annotations

import contextvars

__all__ = ["causation", "correlation", "dispatch_ids"]

_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "buttress_correlation_id", default=None
)
_CAUSATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "buttress_causation_id", default=None
)


class _Setting:
    """Sets a context variable for a block (unless ``only_unset`` and it is set already)."""

    __slots__ = ("_only_unset", "_token", "_value", "_var")

    def __init__(
        self, var: contextvars.ContextVar[str | None], value: object, *, only_unset: bool
    ) -> None:
        self._var = var
        self._value = None if value is None else str(value)
        self._only_unset = only_unset
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        if self._value is not None and not (self._only_unset and self._var.get() is not None):
            self._token = self._var.set(self._value)

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            self._var.reset(self._token)
            self._token = None


def correlation(message_id: object) -> _Setting:
    """Within the block, the dispatch of ``message_id`` is the one rows correlate with.

    A dispatch inside another (a handler calling the bus) keeps the outer one's.
    """
    return _Setting(_CORRELATION, message_id, only_unset=True)


def causation(message_id: object) -> _Setting:
    """Within the block, outbox rows name ``message_id`` (the message handled) as their cause."""
    return _Setting(_CAUSATION, message_id, only_unset=False)


def dispatch_ids() -> dict[str, str]:
    """``correlation_id`` and ``causation_id`` of the message being handled (none outside)."""
    ids = {}
    correlation, cause = _CORRELATION.get(), _CAUSATION.get()
    if correlation is not None:
        ids["correlation_id"] = correlation
    if cause is not None:
        ids["causation_id"] = cause
    return ids
