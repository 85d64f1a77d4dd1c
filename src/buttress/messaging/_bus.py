# Generated from _bus_async.py by scripts/unasync.py: do not edit by hand.
# Change the source and run `uv run python scripts/unasync.py`.
"""`MessageBus`: runs a command's handler, then the handlers of the events it caused.

A thin driver over `Core` (``_dispatch.py``), which makes every decision; the
sync driver is generated from the one by ``scripts/unasync.py``.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Final

from buttress.domain import DomainEvent
from buttress.errors import ConfigurationError
from buttress.messaging._context import CAUSATION, CORRELATION
from buttress.messaging._dispatch import (
    Core,
    DispatchReport,
    HandlerFailure,
    awaitable,
    id_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from buttress.messaging._commands import Command
    from buttress.messaging._handlers import Handler, Handlers

__all__ = ["MessageBus"]

ASYNCHRONOUS: Final = False


class MessageBus:
    """Runs each command's handler, then the inline handlers of the events it caused.

    Every dispatch calls the providers of the dependencies its handler names,
    so a unit-of-work factory gives each its own unit; after the handler
    returns, the events of work its units committed are handled breadth-first
    (each handler in its own dispatch, events they cause queued after). A
    command handler's error reaches the caller (after the events of what it
    committed before failing are handled); an event handler's failure is
    isolated: logged under ``buttress.messaging``, passed to ``on_failure``,
    listed in the report, and the other handlers run on. A cancelled or
    interrupted dispatch stops at once.

    The bus for coroutines awaits whatever a handler, a provider or
    ``on_failure`` returns that is awaitable; the plain bus refuses it
    (`ConfigurationError`) rather than skip it. Concurrent dispatches each get
    their own dependencies.

    Args:
        handlers: The registered handlers.
        dependencies: A mapping of parameter names to providers (any callable:
            a dependency-injector provider, a class, a function), or a
            dependency-injector container, whose providers are used by name.
            Each is called at every dispatch of a handler that names it.
        on_failure: Called with each event handler's `HandlerFailure`.

    Raises:
        ConfigurationError: A dependency is not callable, or ``on_failure`` is
            ``def`` on the plain bus.
    """

    __slots__ = ("_core",)

    def __init__(
        self,
        handlers: Handlers,
        *,
        dependencies: Mapping[str, Any] | Any = None,
        on_failure: Callable[[HandlerFailure], object] | None = None,
    ) -> None:
        self._core = Core(handlers, dependencies, on_failure, asynchronous=ASYNCHRONOUS)

    def handle(self, message: Command | DomainEvent) -> DispatchReport:
        """Run the handler of a command (or the handlers of an event), then the events' handlers.

        Args:
            message: A command (its one handler runs) or an event (its inline
                handlers run, as if a handler's unit had committed it).

        Returns:
            The report: the command handler's result, every event handled,
            every event handler that failed.

        Raises:
            ConfigurationError: No handler is registered for the command, a
                dependency it names is not provided, its unit of work is in use
                by another dispatch, or (on the plain bus) it or a provider is
                asynchronous.
            Exception: Whatever the command's handler raised.
        """
        token = CORRELATION.set(id_of(message)) if CORRELATION.get() is None else None
        try:
            return self._handle(message)
        finally:
            if token is not None:
                CORRELATION.reset(token)

    def _handle(self, message: Command | DomainEvent) -> DispatchReport:
        core = self._core
        report = DispatchReport(message)
        if isinstance(message, DomainEvent):
            self._publish([message], report)
            return report
        handler = core.command_handler(message)
        events: list[DomainEvent] = []
        try:
            report.result = self._run(handler, message, events)
        except Exception:  # not on cancellation: a cancelled dispatch stops at once
            if events:  # what it committed before it failed happened: handle those events
                self._publish(events, report)
            raise
        if events:
            self._publish(events, report)
        return report

    def deliver(self, event: DomainEvent, *, correlation_id: object = None) -> DispatchReport:
        """Run the durable handlers of an event delivered from the outbox, then what they caused.

        What a transport calls for each message a relay hands it (see
        `InProcessTransport`), or a broker's consumer for each message it
        receives. Each durable handler runs in its own dispatch, all of them
        even when one fails; the events their units commit go to the inline
        handlers, as after `handle`.

        Args:
            event: The delivered event (``message.event()``).
            correlation_id: The correlation id the message carried (its
                ``headers["correlation_id"]``), kept for the work it causes;
                the event's id when it carried none.

        Returns:
            The report: every event handled, every inline handler that failed.

        Raises:
            DeliveryError: A durable handler failed (chained to the first
                error): the transport reports the message failed, and the relay
                delivers it again later.
            ConfigurationError: A durable handler's dependency is not provided
                (raised at once: the handlers after it do not run).
        """
        cause = correlation_id if correlation_id is not None else event.event_id
        token = CORRELATION.set(cause)
        try:
            core = self._core
            report = DispatchReport(event)
            failures: list[HandlerFailure] = []
            caused: list[DomainEvent] = []
            for handler in core.durable_handlers(type(event)):
                try:
                    self._run(handler, event, caused)
                except ConfigurationError:
                    raise
                except Exception as error:  # noqa: BLE001 - every durable handler runs
                    failures.append(HandlerFailure(handler.name, event, error))
            if caused:
                self._publish(caused, report)
        finally:
            CORRELATION.reset(token)
        if failures:
            raise core.undelivered(event, failures)
        return report

    def check(self) -> None:
        """Prove every registered handler can run on this bus.

        `buttress.di.check` calls it for every bus a container provides.

        Raises:
            ConfigurationError: Listing each handler with a parameter no
                dependency provides, and (on the plain bus) each ``def``
                handler and asynchronous provider.
        """
        self._core.check()

    def problems(self) -> list[str]:
        """What `check` would raise for, one line per problem (empty when every handler can run)."""
        return self._core.problems()

    def _run(self, handler: Handler, message: Any, events: list[DomainEvent]) -> Any:
        core = self._core
        values = {}
        for name, provider in core.plan(handler):
            value = provider()
            if awaitable(value):
                value = core.refuse(value, handler, name)
            values[name] = value
        units = core.claim(handler, values)
        cause = CAUSATION.set(id_of(message))
        try:
            result = handler.function(message, **values)
            if awaitable(result):  # an def, or anything returning an awaitable
                result = core.refuse(result, handler)
            return result
        finally:
            CAUSATION.reset(cause)
            if units:
                core.release(units, events)

    def _publish(self, events: list[DomainEvent], report: DispatchReport) -> None:
        core = self._core
        queue = collections.deque(events)
        while queue:
            event = queue.popleft()
            if core.full(report):
                self._tell(core.too_many(report, event))
                return
            report.events.append(event)
            for handler in core.event_handlers(type(event)):
                caused: list[DomainEvent] = []
                try:
                    self._run(handler, event, caused)
                except Exception as error:  # noqa: BLE001 - isolated, whatever it is
                    self._tell(core.failed(report, handler.name, event, error))
                queue.extend(caused)

    def _tell(self, failure: HandlerFailure) -> None:
        """Pass ``failure`` to ``on_failure``; a listener's own error is logged, not raised."""
        listener = self._core.on_failure
        if listener is None:
            return
        try:
            outcome: Any = listener(failure)
            if awaitable(outcome):
                self._core.discard(outcome)
        except Exception as error:  # noqa: BLE001 - the listener cannot fail the dispatch
            self._core.listener_failed(error)
