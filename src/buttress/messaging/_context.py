"""The ids of the message being handled, for the rows its handler's units write.

The bus sets them for each dispatch (``CORRELATION``: the first message's id, kept
by dispatches inside it) and each handler call (``CAUSATION``: the message
handled); an outbox reads them as it makes its rows. They hold the ids as they
are (UUIDs): text is made only for a row.
"""

from __future__ import annotations

import contextvars

__all__ = ["CAUSATION", "CORRELATION", "dispatch_ids"]

CORRELATION: contextvars.ContextVar[object] = contextvars.ContextVar(
    "buttress_correlation_id", default=None
)
CAUSATION: contextvars.ContextVar[object] = contextvars.ContextVar(
    "buttress_causation_id", default=None
)


def dispatch_ids() -> dict[str, str]:
    """``correlation_id`` and ``causation_id`` of the message being handled (none outside)."""
    ids = {}
    correlation, cause = CORRELATION.get(), CAUSATION.get()
    if correlation is not None:
        ids["correlation_id"] = str(correlation)
    if cause is not None:
        ids["causation_id"] = str(cause)
    return ids
