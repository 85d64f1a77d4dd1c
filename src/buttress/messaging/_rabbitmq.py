"""RabbitMQ: a transport that publishes the relay's messages, and a consumer that feeds a bus.

Both speak AMQP through aio-pika. The asyncio classes are the implementation;
the plain ones run them on an event loop of their own, in a thread, so a
sync relay and a sync bus use the same code (and publish with the same
pipelined confirms).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from buttress.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import uuid
    from collections.abc import Coroutine, Mapping, Sequence

    import aio_pika
    import aio_pika.abc

    from buttress.messaging._bus import MessageBus
    from buttress.messaging._bus_async import AsyncMessageBus
    from buttress.messaging._transport import Message

__all__ = [
    "AsyncRabbitMQConsumer",
    "AsyncRabbitMQTransport",
    "RabbitMQConsumer",
    "RabbitMQTransport",
]

T = TypeVar("T")
_log = logging.getLogger("buttress.messaging.rabbitmq")
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_EXCHANGE = "buttress.events"


def _aio_pika() -> Any:
    try:
        import aio_pika  # noqa: PLC0415 - an optional extra, loaded when used
    except ImportError as error:  # pragma: no cover - the test environment has it
        raise MissingDependencyError("aio_pika", "rabbitmq", "RabbitMQTransport") from error
    return aio_pika


class AsyncRabbitMQTransport:
    """Publishes the relay's messages to a RabbitMQ topic exchange, each confirmed by the broker.

    A message counts as delivered only when the broker confirmed it (publisher
    confirms): persistent (delivery mode 2), with its message id, its topic as
    routing key and type, the correlation id and the stream and attempt in the
    headers. The messages of a batch (each of another stream) are published at
    once and their confirms awaited together. With ``mandatory`` (the
    default) a message no queue is bound for is refused, not dropped: bind a
    queue (`AsyncRabbitMQConsumer` declares one) before the relay runs. A lost
    connection fails the batch; the next publish connects again.

    Args:
        url: The broker's AMQP URL.
        exchange: The topic exchange the messages go to (declared durable).
        mandatory: Refuse a message no queue receives, instead of dropping it.
        timeout: Seconds to wait for the broker (to connect, to confirm).

    Raises:
        MissingDependencyError: aio-pika is not installed (``buttress[rabbitmq]``).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        mandatory: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._aio_pika = _aio_pika()
        self._url = url
        self._exchange_name = exchange
        self._mandatory = mandatory
        self._timeout = timeout
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def publish(self, messages: Sequence[Message]) -> Mapping[uuid.UUID, BaseException]:
        """Publish ``messages`` and await their confirms; return the ones refused or lost."""
        if not messages:
            return {}
        exchange = await self._connected()
        publishing = asyncio.gather(
            *(
                exchange.publish(
                    self._amqp_message(message),
                    routing_key=message.topic,
                    mandatory=self._mandatory,
                    timeout=self._timeout,
                )
                for message in messages
            ),
            return_exceptions=True,
        )
        try:  # bounded here too: a publish on a link that died unnoticed waits for ever
            outcomes = await asyncio.wait_for(publishing, self._timeout)
        except TimeoutError as error:
            await self.close()
            return dict.fromkeys((message.message_id for message in messages), error)
        failures: dict[uuid.UUID, BaseException] = {}
        for message, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancelled or interrupted: stop here
                failures[message.message_id] = outcome
        if failures and not self._open():
            await self.close()  # reconnect at the next publish
        return failures

    async def close(self) -> None:
        """Close the connection (the next publish opens a new one)."""
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None and not connection.is_closed:  # closing a lost one can hang
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), self._timeout)

    def _open(self) -> bool:
        connection, channel = self._connection, self._channel
        return not (
            connection is None or connection.is_closed or channel is None or channel.is_closed
        )

    async def _connected(self) -> aio_pika.abc.AbstractExchange:
        async with self._lock:
            if self._exchange is not None and self._open():
                return self._exchange
            await self.close()
            aio_pika = self._aio_pika
            connection = await aio_pika.connect(self._url, timeout=self._timeout)
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            except BaseException:
                await connection.close()
                raise
            self._connection, self._channel, self._exchange = connection, channel, exchange
            return self._exchange

    def _amqp_message(self, message: Message) -> aio_pika.Message:
        headers: dict[str, Any] = dict(message.headers)
        headers["x-buttress-stream"] = message.stream
        headers["x-buttress-attempt"] = message.attempt
        return self._aio_pika.Message(  # type: ignore[no-any-return]
            message.payload.encode(),
            message_id=str(message.message_id),
            type=message.topic,
            content_type="application/json",
            delivery_mode=self._aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=message.headers.get("correlation_id"),
            timestamp=message.created_at,
            headers=headers,
        )


class AsyncRabbitMQConsumer:
    """Feeds a bus's durable handlers from a RabbitMQ queue, acknowledging after they commit.

    `run` declares a durable quorum queue bound to ``topics`` on the
    exchange, with a single active consumer (so the messages of a stream are
    handled in the order published) and a dead-letter exchange: for each
    message it calls `AsyncMessageBus.deliver` and acknowledges once that
    returned (the handlers' units have committed). A failed message is
    held for ``retry_delay`` seconds, then returned to the queue and delivered
    again (prefetch 1 keeps the stream's order); after ``delivery_limit`` returns
    deliveries the broker moves it to the dead-letter queue
    (``<queue>.dead``). A message that is not an event this process knows
    goes there at once. Delivery is at least once: handlers record what they
    handled with `Inbox`.

    Args:
        bus: The bus whose durable handlers receive the events.
        queue: The queue's name (one per consuming service).
        topics: The routing keys (event names, ``*`` and ``#`` wildcards) bound.
        url: The broker's AMQP URL.
        exchange: The topic exchange the relay publishes to.
        prefetch: Messages the broker sends ahead; above 1 a failed message
            can be handled after the next one of its stream.
        delivery_limit: Returns of a failing message to the queue before it is
            dead (it is delivered ``delivery_limit + 1`` times).
        retry_delay: Seconds a failed message is held before it is returned, so
            a short outage does not use up its deliveries at once.
        timeout: Seconds to wait for the broker.

    Raises:
        ConfigurationError: ``prefetch`` or ``delivery_limit`` is below 1.
        MissingDependencyError: aio-pika is not installed (``buttress[rabbitmq]``).
    """

    def __init__(
        self,
        bus: AsyncMessageBus,
        *,
        queue: str,
        topics: Sequence[str] = ("#",),
        url: str = DEFAULT_URL,
        exchange: str = DEFAULT_EXCHANGE,
        prefetch: int = 1,
        delivery_limit: int = 5,
        retry_delay: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        if prefetch < 1 or delivery_limit < 1:
            raise ConfigurationError(
                f"prefetch and delivery_limit must be at least 1, got {prefetch} and "
                f"{delivery_limit}"
            )
        if retry_delay < 0:
            raise ConfigurationError(f"retry_delay is seconds, not negative: {retry_delay}")
        self._retry_delay = retry_delay
        self._aio_pika = _aio_pika()
        self._deliver: Any = bus.deliver
        self._queue = queue
        self._topics = tuple(topics)
        self._url = url
        self._exchange = exchange
        self._prefetch = prefetch
        self._delivery_limit = delivery_limit
        self._timeout = timeout
        self.handled = 0
        """Messages handled and acknowledged."""
        self.returned = 0
        """Messages whose handlers failed, returned to the queue (or dead-lettered)."""

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set (or the task is cancelled); the queue is declared first.

        A message buffered when the consumer stops (or its connection drops) is
        returned to the queue, and RabbitMQ counts that return towards the
        delivery limit.

        Raises:
            ConnectionError: The connection or channel was lost while consuming
                (run it again to reconnect).
            ConfigurationError: A handler's dependency is not provided (the
                message is not returned as failed: it is delivered again later).
            Exception: The broker's error when it cannot be reached or refuses
                the declarations.
        """
        stop = stop if stop is not None else asyncio.Event()
        aio_pika = self._aio_pika
        connection = await aio_pika.connect(self._url, timeout=self._timeout)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await self.declare(channel)
            async with queue.iterator() as incoming:
                stopping = asyncio.ensure_future(stop.wait())
                try:
                    while not stop.is_set():
                        receiving = asyncio.ensure_future(incoming.__anext__())
                        done, _ = await asyncio.wait(
                            {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                        )
                        if receiving not in done:
                            receiving.cancel()
                            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                                await receiving
                            break
                        try:
                            incoming_message = receiving.result()
                        except StopAsyncIteration as ended:  # the channel closed under us
                            raise ConnectionError(
                                f"the consumer of {self._queue!r} lost its channel (the "
                                "connection dropped, or the broker closed it); run it again "
                                "to reconnect"
                            ) from ended
                        await self._handle(incoming_message)
                finally:
                    stopping.cancel()
        finally:
            await connection.close()

    async def declare(self, channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
        """Declare the exchange, the dead-letter exchange and queue, and the queue bound to topics.

        Returns:
            The queue.
        """
        aio_pika = self._aio_pika
        exchange = await channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dead_exchange = await channel.declare_exchange(
            f"{self._queue}.dead", aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await channel.declare_queue(
            f"{self._queue}.dead", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(dead_exchange)
        queue = await channel.declare_queue(
            self._queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-single-active-consumer": True,
                "x-dead-letter-exchange": f"{self._queue}.dead",
                "x-delivery-limit": self._delivery_limit,
            },
        )
        for topic in self._topics:
            await queue.bind(exchange, routing_key=topic)
        return queue

    async def _handle(self, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        from buttress.domain import DomainEvent  # noqa: PLC0415
        from buttress.errors import DecodeError  # noqa: PLC0415

        try:
            event = DomainEvent.from_json(incoming.body)
        except DecodeError:
            _log.exception("message %s is not an event this process knows", incoming.message_id)
            await incoming.reject(requeue=False)  # straight to the dead letters
            self.returned += 1
            return
        try:
            await self._call(event, incoming.correlation_id)
        except ConfigurationError:
            raise  # the wiring is wrong, not the message: stop (it is delivered again later)
        except Exception:  # noqa: BLE001 - returned to the queue: delivered again, then dead
            _log.exception("handling %s %s failed", event.event_name, event.event_id)
            await asyncio.sleep(self._retry_delay)  # held (prefetch 1: its stream waits too)
            await incoming.nack(requeue=True)
            self.returned += 1
            return
        await incoming.ack()
        self.handled += 1

    async def _call(self, event: Any, correlation_id: str | None) -> None:
        await self._deliver(event, correlation_id=correlation_id)


class _LoopThread:
    """An event loop of its own, in a daemon thread, that sync callers hand coroutines to."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


class RabbitMQTransport:
    """`AsyncRabbitMQTransport` for a plain `Relay`: the same publishing, on a loop of its own.

    Args:
        url: The broker's AMQP URL.
        exchange: The topic exchange the messages go to (declared durable).
        mandatory: Refuse a message no queue receives, instead of dropping it.
        timeout: Seconds to wait for the broker (to connect, to confirm).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        mandatory: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._timeout = timeout
        self._thread = _LoopThread("buttress-rabbitmq-transport")
        self._transport = self._thread.run(
            _make(
                AsyncRabbitMQTransport, url, exchange=exchange, mandatory=mandatory, timeout=timeout
            )
        )

    def publish(self, messages: Sequence[Message]) -> Mapping[uuid.UUID, BaseException]:
        """See `AsyncRabbitMQTransport.publish`."""
        # each publish is bounded by the timeout (to connect, then to confirm): twice it, at most
        return self._thread.run(self._transport.publish(messages), 2 * self._timeout + 1)

    def close(self) -> None:
        """Close the connection and stop the transport's loop."""
        if not self._thread.loop.is_closed():
            self._thread.run(self._transport.close())
            self._thread.close()


class RabbitMQConsumer(AsyncRabbitMQConsumer):
    """`AsyncRabbitMQConsumer` for a plain `MessageBus`: its handlers run in a worker thread.

    `run` blocks until ``stop`` (a `threading.Event`) is set.

    Args:
        bus: The bus whose durable handlers receive the events.
        queue: The queue's name (one per consuming service).
        topics: The routing keys bound.
        url: The broker's AMQP URL.
        exchange: The topic exchange the relay publishes to.
        prefetch: Messages the broker sends ahead.
        delivery_limit: Returns of a failing message to the queue before it is
            dead (it is delivered ``delivery_limit + 1`` times).
        retry_delay: Seconds a failed message is held before it is returned, so
            a short outage does not use up its deliveries at once.
        timeout: Seconds to wait for the broker.
    """

    def __init__(
        self,
        bus: MessageBus,
        *,
        queue: str,
        topics: Sequence[str] = ("#",),
        url: str = DEFAULT_URL,
        exchange: str = DEFAULT_EXCHANGE,
        prefetch: int = 1,
        delivery_limit: int = 5,
        retry_delay: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            bus,  # type: ignore[arg-type]  # its deliver is called in a worker thread
            queue=queue,
            topics=topics,
            url=url,
            exchange=exchange,
            prefetch=prefetch,
            delivery_limit=delivery_limit,
            retry_delay=retry_delay,
            timeout=timeout,
        )

    def run(self, stop: threading.Event | None = None) -> None:  # type: ignore[override]
        """Consume until ``stop`` is set; see `AsyncRabbitMQConsumer.run`."""
        stop = stop if stop is not None else threading.Event()
        asyncio.run(self._run_until(stop))

    async def _run_until(self, stop: threading.Event) -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        ended = threading.Event()

        def watch() -> None:  # passes the thread's stop on to the loop, until the run ends
            while not ended.is_set():
                if stop.wait(0.05):
                    loop.call_soon_threadsafe(stopped.set)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            await AsyncRabbitMQConsumer.run(self, stopped)
        finally:
            ended.set()

    async def _call(self, event: Any, correlation_id: str | None) -> None:
        await asyncio.to_thread(self._deliver, event, correlation_id=correlation_id)


async def _make(kind: type[T], *args: Any, **kwargs: Any) -> T:
    """``kind(*args, **kwargs)`` made on the running loop (its lock belongs to that loop)."""
    return kind(*args, **kwargs)
