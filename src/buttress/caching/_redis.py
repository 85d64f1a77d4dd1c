"""`RedisCache`: cached values shared by every process through Redis.

Each decorated function gets a view bound to its name and return type. Entries
live under ``{namespace}:{version}:{function}:{key text}`` (the key text comes
from `encode_key`), values are serialized per function (`JsonSerializer` by
default, or signed pickles), and concurrent misses across processes are
coordinated by a lease per key (``{key}:lease``), so one process computes while
the others wait for its value.

Redis trouble never reaches the caller. A read that fails is a miss, a write
that fails is skipped, a lease that cannot be taken is granted locally, and a
stored value that cannot be decoded is deleted and treated as a miss. One
warning is logged per incident (from the first failure after a success to the
next success) and, after a failure, Redis is left alone for
``retry_after_failure`` seconds, so a dead server costs callers nothing but the
first failed call; then a single caller probes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import re
import secrets
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, Literal

from buttress.caching._backend import FORK_AWARE, MISSING, CacheListener, logger
from buttress.caching._serial import (
    JsonSerializer,
    PickleSerializer,
    Serializer,
    encode_key,
)
from buttress.errors import ConfigurationError, DecodeError, MissingDependencyError

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        Awaitable,
        Callable,
        Iterable,
        Mapping,
        Sequence,
    )

    from pydantic import SecretStr
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from buttress.caching._backend import Key
    from buttress.settings import CacheSettings, RedisSettings

__all__ = ["RedisCache", "RedisView"]

_LoopClients = weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple["AsyncRedis", "AsyncGenerator[None, None]"]
]

_NAME: Final = re.compile(r"^[\w.-]+$")
_GLOB_SPECIAL: Final = re.compile(r"([\\*?\[\]])")
_URL_PASSWORD: Final = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_SCAN_BATCH: Final = 500
_FIRST_POLL: Final = 0.005
_LAST_POLL: Final = 0.05

LEASE_SUFFIX: Final = ":lease"
"""Appended to an entry's key to name its lease."""


class _Script:
    """A Lua script, run by its SHA1 and loaded again when Redis forgot it."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


_SET_TAGGED: Final = _Script("""
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
for i = 2, #KEYS do
  local fresh = redis.call('EXISTS', KEYS[i]) == 0
  redis.call('SADD', KEYS[i], KEYS[1])
  if ttl > 0 then
    local left = redis.call('PTTL', KEYS[i])
    if fresh or (left >= 0 and left < ttl) then
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  else
    redis.call('PERSIST', KEYS[i])
  end
end
return 1
""")
"""SET the value, add its key to each tag's set; a tag set lives as long as its longest entry."""

_INVALIDATE_TAGS: Final = _Script("""
local dropped = {}
for i = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for _, member in ipairs(members) do
    redis.call('UNLINK', member)
    dropped[#dropped + 1] = member
  end
  redis.call('UNLINK', KEYS[i])
end
return dropped
""")
"""Delete every key of the tag sets and the sets themselves, atomically; return the keys."""

_RELEASE: Final = _Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""")
"""Delete a lease only if it still holds the caller's token."""

_FETCH: Final = _Script("""
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
""")
"""A value and its remaining lifetime in milliseconds (-1: none, -2: gone)."""

_POLL: Final = _Script("""
return {redis.call('EXISTS', KEYS[2]), redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
""")
"""Whether the lease is still held, then the value and its remaining lifetime."""

_DELETE_AND_PUBLISH: Final = _Script("""
redis.call('UNLINK', KEYS[1])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
""")
"""Delete a key and announce it on the invalidation channel."""


class _Failed:
    """The type of `_FAILED`: a command skipped (Redis left alone) or failed (logged)."""

    __slots__ = ()


_FAILED: Final = _Failed()


class _Undecodable:
    """The type of `_BAD`: a stored value that could not be decoded."""

    __slots__ = ()


_BAD: Final = _Undecodable()


class _WrongType:
    """The type of `_WRONGTYPE`: the key holds another Redis type (a hash, a list...)."""

    __slots__ = ()


_WRONGTYPE: Final = _WrongType()

_KEY_WARNING_WINDOW: Final = 60.0
"""Seconds during which a bad entry under one key is warned about once."""

_KEYS_WARNED: Final = 1024
"""How many keys' warnings are remembered (oldest forgotten first)."""


def _redis_module() -> Any:
    """Import redis, or explain how to install it."""
    try:
        import redis  # noqa: PLC0415 - optional dependency, imported when first needed
        import redis.asyncio  # noqa: PLC0415
    except ImportError as error:
        raise MissingDependencyError("redis", "redis", "RedisCache") from error
    return redis


@functools.cache
def _pool_busy_error(redis: Any) -> type[BaseException]:
    """The error a waiting pool raises when no connection came free in time."""

    class PoolBusyError(redis.exceptions.ConnectionError):  # type: ignore[misc]
        """Every pooled connection stayed busy for the whole ``pool_timeout``."""

    return PoolBusyError


@functools.cache
def _waiting_pool(redis: Any, *, asynchronous: bool) -> Any:
    """redis-py's blocking pool, raising `_pool_busy_error` when its wait runs out.

    A full pool is back-pressure: callers wait up to ``pool_timeout`` for a
    connection. redis-py reports a wait that ran out as a plain
    ``ConnectionError``, which would look like Redis being down; this pool says
    what happened instead.
    """
    busy = _pool_busy_error(redis)
    if asynchronous:
        base = redis.asyncio.BlockingConnectionPool

        class AsyncWaitingPool(base):  # type: ignore[misc, valid-type]
            async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await super().get_connection(*args, **kwargs)
                except redis.exceptions.ConnectionError as error:
                    if isinstance(error.__cause__, asyncio.TimeoutError):
                        raise busy(f"no pooled connection came free in {self.timeout}s") from error
                    raise

        return AsyncWaitingPool

    class WaitingPool(redis.BlockingConnectionPool):  # type: ignore[misc]
        def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().get_connection(*args, **kwargs)
            except redis.exceptions.ConnectionError as error:
                if str(error) == "No connection available.":
                    raise busy(f"no pooled connection came free in {self.timeout}s") from error
                raise

    return WaitingPool


def _safe(error: BaseException) -> str:
    """The error's text with any URL password masked, fit for a log line."""
    return _URL_PASSWORD.sub(r"\1***@", str(error)) or type(error).__name__


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _remaining(pttl: Any) -> float | None:
    """Seconds an entry has left, from PTTL's answer; ``None`` when it never expires."""
    milliseconds = int(pttl)
    return milliseconds / 1000 if milliseconds >= 0 else None


class _Health:
    """Whether Redis is worth a round trip, and the one warning per incident.

    An incident starts at the first failure after a success and ends at the
    next success. During it, Redis is skipped for ``retry_after`` seconds after
    each failure; when the pause is over, one caller probes Redis while the
    others keep skipping it.
    """

    __slots__ = ("_down_until", "_incident", "_lock", "label", "retry_after")

    def __init__(self, label: str, retry_after: float) -> None:
        self.label = label
        self.retry_after = retry_after
        self._incident = False
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def incident(self) -> bool:
        """Whether Redis failed and has not answered since."""
        return self._incident

    def skip(self) -> bool:
        """Tell whether to skip Redis now (without a lock unless in an incident)."""
        if not self._incident:
            return False
        now = time.monotonic()
        if now < self._down_until:
            return True
        with self._lock:
            if now < self._down_until:
                return True
            self._down_until = now + self.retry_after  # this caller probes; others wait
            return False

    def failed(self, error: BaseException, doing: str) -> None:
        """Record a failed round trip: warn if it starts an incident, pause Redis."""
        with self._lock:
            starts = not self._incident
            self._incident = True
            self._down_until = time.monotonic() + self.retry_after
        if starts:
            logger.warning(
                "Redis cache %s failed %s (%s: %s); calls are served as cache misses, and "
                "Redis is tried again after %gs",
                self.label,
                doing,
                type(error).__name__,
                _safe(error),
                self.retry_after,
            )
        else:
            logger.debug(
                "Redis cache %s failed %s again (%s: %s)",
                self.label,
                doing,
                type(error).__name__,
                _safe(error),
            )

    def succeeded(self) -> None:
        """Record a successful round trip: end the incident, if any."""
        if not self._incident:
            return
        with self._lock:
            ended, self._incident = self._ended(), False
        if ended:
            logger.info("Redis cache %s is reachable again", self.label)

    def _ended(self) -> bool:
        return self._incident  # read again under the lock: another thread may have ended it

    def after_fork(self) -> None:
        """Replace the lock, which another thread may have held at the fork."""
        self._lock = threading.Lock()


def _objects(items: Iterable[object]) -> list[object]:
    return list(items)


def _check_settings(
    namespace: object,
    version: object,
    serializer: object,
    lease_ttl: object,
    retry_after_failure: object,
) -> list[str]:
    problems = [
        f"{label} must be non-empty and made of letters, digits, '_', '.' and '-' "
        f"(it is part of every key), got {value!r}"
        for label, value in (("namespace", namespace), ("version", version))
        if not isinstance(value, str) or not _NAME.fullmatch(value)
    ]
    if serializer not in ("json", "pickle"):
        problems.append(f"serializer must be 'json' or 'pickle', got {serializer!r}")
    for label, seconds, positive in (
        ("lease_ttl", lease_ttl, True),
        ("retry_after_failure", retry_after_failure, False),
    ):
        problem = _check_seconds(label, seconds, positive=positive)
        if problem:
            problems.append(problem)
    return problems


def _check_seconds(label: str, value: object, *, positive: bool) -> str | None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        kind = "a positive" if positive else "a non-negative"
        return f"{label} must be {kind} number of seconds, got {value!r}"
    return None


class RedisCache:
    """A cache in Redis, shared by every process that uses the same namespace.

    Values are stored as JSON of the function's return type (pydantic), or as
    signed pickles with ``serializer="pickle"``. Keys are
    ``{namespace}:{version}:{function}:{arguments}``, where the arguments are a
    stable text of the canonical call (hashed when long); tag sets are
    ``{namespace}:{version}:tag:{tag}``. Concurrent misses on one key are
    computed by one process: it holds a lease (``SET ... NX PX``) while the
    others poll for its value, for at most ``lease_ttl`` seconds.

    Redis trouble never reaches the caller: failed reads are misses, failed
    writes are skipped, and after a failure Redis is skipped for
    ``retry_after_failure`` seconds; one warning is logged per incident. A
    stored value that cannot be decoded (another version of the code wrote it,
    or its signature is wrong) is deleted and treated as a miss.

    Clients: give a ``url`` and the cache makes a sync client on first use and
    an asyncio client per event loop (an asyncio client must not be shared
    between loops), with short timeouts and a single immediate retry; or give
    ``client`` and/or ``async_client`` (made with ``decode_responses=False``)
    and the cache uses them as they are (and does not close them). Call
    `close` (or ``await`` `aclose` in each event loop that used the cache) at
    shutdown.

    Args:
        url: Redis URL (``redis://``, ``rediss://`` or ``unix://``), a str or
            a ``SecretStr``; it is never logged.
        client: A ``redis.Redis`` client, instead of ``url``.
        async_client: A ``redis.asyncio.Redis`` client, instead of ``url``.
        namespace: First part of every key (letters, digits, ``_``, ``.``, ``-``),
            so applications can share a server.
        version: Second part of every key; change it when cached types change,
            and entries written by older code are ignored.
        serializer: ``"json"`` (the default) or ``"pickle"`` (needs ``signing_key``).
        signing_key: Secret signing pickles, at least 32 characters, the same in
            every process.
        lease_ttl: Seconds a process may compute a missed value before the
            others stop waiting for it and compute it themselves.
        retry_after_failure: Seconds Redis is left alone after a failure.
        listeners: Cache listeners; Redis evicts on its own and does not report
            evictions, so they are kept for symmetry with `MemoryCache`.
        client_options: Extra keyword arguments for the clients made from
            ``url`` (``socket_timeout``, ``max_connections``, ``retry``...).

    Raises:
        ConfigurationError: An argument is invalid (each problem is listed).
        MissingDependencyError: The ``redis`` package is not installed.

    Example:
        ```python
        from buttress.caching import RedisCache, cached

        cache = RedisCache("redis://127.0.0.1:6379/0", namespace="shop")

        @cached(ttl=60, cache=cache)
        def price(sku: str) -> int:  # stored as JSON, read back as an int
            return 100

        cache.close()
        ```
    """

    def __init__(
        self,
        url: str | SecretStr | None = None,
        *,
        client: Redis | None = None,
        async_client: AsyncRedis | None = None,
        namespace: str = "buttress",
        version: str = "1",
        serializer: Literal["json", "pickle"] = "json",
        signing_key: str | SecretStr | None = None,
        lease_ttl: float = 5.0,
        retry_after_failure: float = 1.0,
        max_connections: int = 100,
        pool_timeout: float = 1.0,
        listeners: Sequence[CacheListener] = (),
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        redis = _redis_module()
        problems: list[str] = []
        raw_url = _check_clients(redis, url, client, async_client, problems)
        problems.extend(
            _check_settings(namespace, version, serializer, lease_ttl, retry_after_failure)
        )
        problem = _check_seconds("pool_timeout", pool_timeout, positive=True)
        if problem:
            problems.append(problem)
        limit: object = max_connections
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            problems.append(
                f"max_connections must be a positive integer (each client's pool size), "
                f"got {max_connections!r}"
            )
        if client_options and "max_connections" in client_options:
            problems.append(
                "give max_connections= to RedisCache itself, not in client_options: it sizes "
                "the pool the cache makes, which waits up to pool_timeout for a connection"
            )
        pickler: PickleSerializer | None = None
        if serializer == "pickle":
            try:
                pickler = PickleSerializer(signing_key)
            except ConfigurationError as error:
                problems.append(error.message)
        problems.extend(
            f"listeners must be CacheListener instances, got {listener!r}"
            for listener in _objects(listeners)
            if not isinstance(listener, CacheListener)
        )
        if problems:
            raise ConfigurationError.from_problems("invalid RedisCache", problems)

        self.namespace = namespace
        self.version = version
        self.serializer = serializer
        self.lease_ttl = float(lease_ttl)
        self.retry_after_failure = float(retry_after_failure)
        self.max_connections = max_connections
        self.pool_timeout = float(pool_timeout)
        self.listeners = tuple(listeners)
        self.prefix = f"{namespace}:{version}:"
        """What every key of this cache starts with."""
        self.errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        """What counts as Redis trouble (degraded to a miss, never raised)."""
        self.busy: tuple[type[BaseException], ...] = (
            redis.exceptions.MaxConnectionsError,
            _pool_busy_error(redis),
        )
        """A pool with no free connection: back-pressure, never an outage."""
        self._redis = redis
        self._url = raw_url
        self._options = dict(client_options or {})
        self._client = client
        self._own_client = client is None
        self._given_async = async_client
        self._async_clients: _LoopClients = weakref.WeakKeyDictionary()
        self._pickler = pickler
        self._lock = threading.Lock()
        self.health = _Health(f"{namespace}:{version}", self.retry_after_failure)
        self._warned: dict[str, float] = {}
        self.texts: dict[Key, str] = {}
        """Canonical key -> Redis key, for keys seen lately (encoding costs more than a hit).

        One table for every function of the cache: a canonical key starts with
        its function's identity, so functions never share an entry.
        """
        """The cache's trouble tracker (shared by every view and a tiered front)."""
        FORK_AWARE.add(self)

    @classmethod
    def from_settings(
        cls, redis: RedisSettings, cache: CacheSettings, *, client_name: str | None = None
    ) -> RedisCache:
        """Build a cache from the ``BUTTRESS_REDIS__*`` and ``BUTTRESS_CACHE__*`` settings.

        Args:
            redis: Where Redis is, its timeouts and its pool.
            cache: Namespace, version, serializer and signing key.
            client_name: The name the clients give themselves (seen in ``CLIENT LIST``).

        Returns:
            The cache (no connection is made until first use).
        """
        options: dict[str, Any] = {
            "socket_timeout": redis.socket_timeout,
            "socket_connect_timeout": redis.socket_connect_timeout,
            "health_check_interval": redis.health_check_interval,
        }
        if client_name is not None:
            options["client_name"] = client_name
        return cls(
            redis.url,
            namespace=cache.namespace,
            version=cache.version,
            serializer=cache.serializer,
            signing_key=cache.signing_key,
            max_connections=redis.max_connections,
            pool_timeout=redis.pool_timeout,
            client_options=options,
        )

    def __repr__(self) -> str:
        return (
            f"RedisCache(namespace={self.namespace!r}, version={self.version!r}, "
            f"serializer={self.serializer!r})"
        )

    # -- clients ---------------------------------------------------------------------

    def sync_client(self) -> Redis:
        """The sync client: the one given, or one made from the URL on first use.

        Returns:
            The client.

        Raises:
            ConfigurationError: The cache was given only an asyncio client.
        """
        client = self._client
        if client is not None:
            return client
        if self._url is None:
            raise ConfigurationError(
                "this RedisCache was given only async_client=, and a plain def (or a tiered "
                "cache's listener) needs a sync client: pass client=redis.Redis(...) too, "
                "or url="
            )
        with self._lock:
            if self._client is None:
                options = {
                    "socket_timeout": 1.0,
                    "socket_connect_timeout": 1.0,
                    "retry": self._redis.retry.Retry(self._redis.backoff.NoBackoff(), 1),
                    **self._options,
                }
                pool = _waiting_pool(self._redis, asynchronous=False).from_url(
                    self._url,
                    max_connections=self.max_connections,
                    timeout=self.pool_timeout,
                    **options,
                )
                self._client = self._redis.Redis.from_pool(pool)
            return self._client

    def async_client(self) -> AsyncRedis:
        """The asyncio client for the running event loop (made on first use in each loop).

        A client made here is closed when its loop shuts down (``asyncio.run``
        and ``asyncio.Runner`` close async generators as they finish, and the
        client is tied to one), or by `aclose`.

        Returns:
            The client.

        Raises:
            ConfigurationError: The cache was given only a sync client.
        """
        if self._given_async is not None:
            return self._given_async
        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(loop)
        if entry is not None:
            return entry[0]
        if self._url is None:
            raise ConfigurationError(
                "this RedisCache was given only client=, and an async def needs an asyncio "
                "client: pass async_client=redis.asyncio.Redis(...) too, or url="
            )
        with self._lock:
            entry = self._async_clients.get(loop)
            if entry is None:
                retry = self._redis.asyncio.retry.Retry(self._redis.backoff.NoBackoff(), 1)
                options = {
                    "socket_timeout": 1.0,
                    "socket_connect_timeout": 1.0,
                    "retry": retry,
                    **self._options,
                }
                pool = _waiting_pool(self._redis, asynchronous=True).from_url(
                    self._url,
                    max_connections=self.max_connections,
                    timeout=self.pool_timeout,
                    **options,
                )
                client: AsyncRedis = self._redis.asyncio.Redis.from_pool(pool)
                entry = (client, _closed_with_loop(client, loop, self._async_clients))
                self._async_clients[loop] = entry
            return entry[0]

    @property
    def can_listen(self) -> bool:
        """Whether the cache has (or can make) a sync client, which pub/sub listeners need."""
        return self._client is not None or self._url is not None

    def close(self) -> None:
        """Close the sync client this cache made (clients given to it are left open).

        Asyncio clients the cache made are closed when their event loop shuts
        down, or by ``await`` `aclose` in that loop. The cache stays usable:
        clients are made again on use.
        """
        with self._lock:
            client = self._client if self._own_client else None
            if self._own_client:
                self._client = None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the clients this cache made for the running event loop, and the sync one."""
        with self._lock:
            entry = self._async_clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()  # its cleanup closes the client
        self.close()

    def after_fork(self) -> None:
        """Forget locks and event-loop clients inherited by a child process."""
        self._lock = threading.Lock()
        self._async_clients = weakref.WeakKeyDictionary()
        self.health.after_fork()

    # -- trouble ---------------------------------------------------------------------

    def trouble(self, error: BaseException, doing: str) -> _Failed | _WrongType:
        """Sort a failed command out: a wrong-typed key, a busy pool, or Redis in trouble.

        Only the last starts (or continues) an incident. A key of the wrong type is
        that key's problem (`_WRONGTYPE`: the caller deletes or overwrites it); a
        pool whose connections all stayed busy for ``pool_timeout`` is
        back-pressure, logged at DEBUG: the call degrades to a miss, and Redis is
        not left alone for it.
        """
        if isinstance(error, self._redis.exceptions.ResponseError) and str(error).startswith(
            "WRONGTYPE"
        ):
            return _WRONGTYPE
        if isinstance(error, self.busy):
            logger.debug(
                "Redis cache %s: no pooled connection free while %s; served as a miss",
                self.health.label,
                doing,
            )
            return _FAILED
        self.health.failed(error, doing)
        return _FAILED

    def warn_key(self, key: str, problem: str) -> None:
        """Warn that the entry under ``key`` was bad: once per key per minute."""
        now = time.monotonic()
        warned = self._warned
        last = warned.get(key)
        if last is not None and now - last < _KEY_WARNING_WINDOW:
            logger.debug("Redis cache %s: %s again under %s", self.health.label, problem, key)
            return
        if len(warned) >= _KEYS_WARNED:
            warned.pop(next(iter(warned)))
        warned[key] = now
        logger.warning(
            "Redis cache %s: %s under %s; it is treated as a miss and replaced, and the "
            "rest of the cache is unaffected",
            self.health.label,
            problem,
            key,
        )

    # -- scripts ---------------------------------------------------------------------

    def run(self, script: _Script, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run a Lua script with the sync client (EVALSHA, then EVAL if not loaded)."""
        client = self.sync_client()
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except self._redis.exceptions.NoScriptError:
            return client.eval(script.text, len(keys), *keys, *args)

    async def arun(self, script: _Script, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """`run` with the asyncio client."""
        client = self.async_client()
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except self._redis.exceptions.NoScriptError:
            return await client.eval(script.text, len(keys), *keys, *args)

    # -- SharedCache -------------------------------------------------------------------

    def bind(self, name: str, returns: Any) -> RedisView:
        """Return the view a function named ``name`` uses; its values are of type ``returns``.

        Args:
            name: The function's stable name (part of its keys).
            returns: The function's return annotation (the JSON serializer's type).

        Returns:
            The view.

        Raises:
            ConfigurationError: ``name`` is empty, or JSON cannot hold ``returns``.
        """
        return RedisView(self, name, self.serializer_for(returns))

    def text_of(self, name: str) -> Callable[[Key], str]:
        """The Redis key of a canonical key of the function named ``name``.

        The identity (the canonical key's first item) is left out of the text;
        texts are remembered in `texts`, which is bounded by clearing it.

        Args:
            name: The function's stable name (part of its keys).

        Returns:
            A function from canonical key to Redis key; it raises
            `CacheKeyError` for an argument that has no stable text form.
        """
        prefix = f"{self.prefix}{name}:"
        texts = self.texts

        def text(key: Key) -> str:
            found = texts.get(key)
            if found is None:
                found = prefix + encode_key(key[1:])
                if len(texts) >= _TEXTS_KEPT:
                    texts.clear()  # bounded: hot keys come back at once
                texts[key] = found
            return found

        return text

    def serializer_for(self, returns: Any) -> Serializer:
        """The serializer of a function returning ``returns``."""
        if self._pickler is not None:
            return self._pickler
        return JsonSerializer(returns)

    def tag_key(self, tag: str) -> str:
        """The key of the Redis set holding the keys written with ``tag``."""
        return f"{self.prefix}tag:{tag}"

    def clear(self) -> None:
        """Delete every key of this namespace and version (entries, leases, tag sets)."""
        self.clear_matching(f"{self.prefix}*")

    async def aclear(self) -> None:
        """`clear` for async callers."""
        await self.aclear_matching(f"{self.prefix}*")

    def invalidate_tags(self, *tags: str) -> None:
        """Delete every entry written with any of ``tags`` (atomically), and the tag sets.

        Args:
            *tags: The tags.
        """
        self.drop_tags(tags)

    async def ainvalidate_tags(self, *tags: str) -> None:
        """`invalidate_tags` for async callers."""
        await self.adrop_tags(tags)

    def counts(self) -> tuple[int | None, int | None]:
        """Return ``(None, None)``: Redis cannot tell size and evictions of a namespace cheaply."""
        return None, None

    # -- whole-cache operations, shared with the tiered cache ------------------------------

    def clear_matching(self, pattern: str) -> bool:
        """Delete the keys matching a SCAN ``pattern``, in batches; tell whether it worked."""
        health = self.health
        if health.skip():
            return False
        try:
            client = self.sync_client()
            batch: list[Any] = []
            for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
                batch.append(key)
                if len(batch) >= _SCAN_BATCH:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)
        except self.errors as error:
            self.trouble(error, "clearing")
            return False
        health.succeeded()
        return True

    async def aclear_matching(self, pattern: str) -> bool:
        """`clear_matching` for async callers."""
        health = self.health
        if health.skip():
            return False
        try:
            client = self.async_client()
            batch: list[Any] = []
            async for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
                batch.append(key)
                if len(batch) >= _SCAN_BATCH:
                    await client.unlink(*batch)
                    batch = []
            if batch:
                await client.unlink(*batch)
        except self.errors as error:
            self.trouble(error, "clearing")
            return False
        health.succeeded()
        return True

    def drop_tags(self, tags: Iterable[str]) -> list[str] | None:
        """Invalidate ``tags``; return the keys deleted, or ``None`` when Redis failed."""
        keys = [self.tag_key(tag) for tag in tags]
        if not keys:
            return []
        health = self.health
        if health.skip():
            return None
        try:
            dropped = self.run(_INVALIDATE_TAGS, keys)
        except self.errors as error:
            self.trouble(error, "invalidating tags")
            return None
        health.succeeded()
        return _texts(dropped)

    async def adrop_tags(self, tags: Iterable[str]) -> list[str] | None:
        """`drop_tags` for async callers."""
        keys = [self.tag_key(tag) for tag in tags]
        if not keys:
            return []
        health = self.health
        if health.skip():
            return None
        try:
            dropped = await self.arun(_INVALIDATE_TAGS, keys)
        except self.errors as error:
            self.trouble(error, "invalidating tags")
            return None
        health.succeeded()
        return _texts(dropped)

    def publish(self, channel: str, messages: Iterable[bytes]) -> None:
        """Publish ``messages`` on ``channel`` (skipped when Redis is in trouble)."""
        health = self.health
        if health.skip():
            return
        try:
            client = self.sync_client()
            for message in messages:
                client.publish(channel, message)
        except self.errors as error:
            self.trouble(error, "publishing an invalidation")
            return
        health.succeeded()

    async def apublish(self, channel: str, messages: Iterable[bytes]) -> None:
        """`publish` for async callers."""
        health = self.health
        if health.skip():
            return
        try:
            client = self.async_client()
            for message in messages:
                await client.publish(channel, message)
        except self.errors as error:
            self.trouble(error, "publishing an invalidation")
            return
        health.succeeded()


def _closed_with_loop(
    client: AsyncRedis, loop: asyncio.AbstractEventLoop, clients: _LoopClients
) -> AsyncGenerator[None, None]:
    """An async generator, parked, that closes ``client`` when ``loop`` shuts down.

    Event loops close their async generators on shutdown (``asyncio.run``,
    ``asyncio.Runner.close``, ``loop.shutdown_asyncgens()``): this one then
    closes the client in its own loop, before the loop is gone, and forgets it.
    The loop holds async generators weakly, so the caller keeps it.
    """

    async def closer() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            entry = clients.get(loop)
            if entry is not None and entry[0] is client:
                del clients[loop]
            await client.aclose()

    generator = closer()
    step = generator.asend(None)  # registers it with the running loop...
    with contextlib.suppress(StopIteration):
        step.send(None)  # ... and runs it to its yield (no await before it)
    return generator


def _nonempty_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _texts(keys: Any) -> list[str]:
    return [key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key) for key in keys]


def _check_clients(
    redis: Any,
    url: object,
    client: object,
    async_client: object,
    problems: list[str],
) -> str | None:
    """Check the connection arguments; return the URL's text (never put in a message)."""
    raw: str | None = None
    if url is not None:
        secret = getattr(url, "get_secret_value", None)
        raw = secret() if callable(secret) else url  # type: ignore[assignment] # checked below
        if not isinstance(raw, str):
            problems.append(f"url must be a str or a SecretStr, got a {type(url).__qualname__}")
            raw = None
        else:
            try:
                redis.connection.parse_url(raw)
            except (ValueError, TypeError):
                # The URL is not echoed: it may carry a password.
                problems.append(
                    "url is not a Redis URL; expected redis://[[user]:password@]host[:port][/db], "
                    "rediss://... for TLS, or unix:///path/to/redis.sock"
                )
    if url is not None and (client is not None or async_client is not None):
        problems.append(
            "give either url= or client=/async_client=, not both: the cache makes its clients "
            "from the URL, or uses the ones given"
        )
    if url is None and client is None and async_client is None:
        problems.append(
            "tell the cache where Redis is: pass url='redis://host:6379/0', or client= "
            "(redis.Redis) and/or async_client= (redis.asyncio.Redis)"
        )
    for label, given, kind in (
        ("client", client, redis.Redis),
        ("async_client", async_client, redis.asyncio.Redis),
    ):
        if given is None:
            continue
        if not isinstance(given, kind):
            problems.append(
                f"{label} must be a {kind.__module__}.{kind.__qualname__}, "
                f"got {type(given).__qualname__}"
            )
        elif given.connection_pool.connection_kwargs.get("decode_responses"):
            problems.append(
                f"{label} was made with decode_responses=True; cached values are bytes: "
                "make the client with decode_responses=False (the default)"
            )
    return raw


_TEXTS_KEPT: Final = 8192
"""How many recent canonical keys a cache remembers the Redis key of."""


class RedisView:
    """One function's entries in a `RedisCache` (the `CacheView` its decorator uses).

    Args:
        cache: The cache.
        name: The function's name (part of its keys).
        serializer: How its values become bytes and back.
    """

    local: Final = False
    shared: Final = True

    def __init__(self, cache: RedisCache, name: str, serializer: Serializer) -> None:
        if not _nonempty_text(name):
            raise ConfigurationError(
                f"a function bound to a RedisCache needs a non-empty name, got {name!r}"
            )
        self.name = name
        self.cache = cache
        self.serializer = serializer
        self.prefix = f"{cache.prefix}{name}:"
        """What every key of this function starts with."""
        self.pattern = _glob_escape(self.prefix) + "[(#]*"
        """The SCAN pattern of this function's keys (and their leases), and no other's."""
        self.text: Callable[[Key], str] = cache.text_of(name)
        """The Redis key of a canonical key (see `RedisCache.text_of`)."""
        self._health = cache.health
        self._errors = cache.errors
        self._lease_ms = _milliseconds(cache.lease_ttl)
        self._unstorable = False

    def __repr__(self) -> str:
        return f"<RedisView {self.name} of {self.cache!r}>"

    # -- decisions shared by the sync and async drivers ----------------------------------

    def encode(self, value: Any) -> bytes | None:
        """The bytes of ``value``, or ``None`` (logged) when it cannot be stored."""
        try:
            return self.serializer.dumps(value)
        except ConfigurationError as error:
            if self._unstorable:
                logger.debug("%s: a value was not cached: %s", self.name, error)
            else:
                self._unstorable = True
                logger.warning("%s: a value was not cached in Redis: %s", self.name, error)
            return None

    def decode(self, raw: Any, text: str) -> Any:
        """The value of stored bytes: `MISSING` for none, `_BAD` (warned) if undecodable."""
        if raw is None:
            return MISSING
        try:
            return self.serializer.loads(raw)
        except DecodeError as error:
            self.cache.warn_key(text, f"a cached value cannot be decoded ({error})")
            return _BAD

    @staticmethod
    def ttl_ms(ttl: float | None) -> int:
        """PX for ``ttl`` seconds; 0 for no expiry."""
        return 0 if ttl is None else _milliseconds(ttl)

    def read(self, raw: Any, text: str) -> tuple[Any, bool]:
        """``(value, corrupt)`` of what a read of ``text`` returned.

        A read that was skipped or failed is a miss; a value that cannot be
        decoded, or a key holding another Redis type, is a miss the driver must
        delete.
        """
        if raw is _FAILED:
            return MISSING, False
        if raw is _WRONGTYPE:
            self.cache.warn_key(text, "a key of another Redis type")
            return MISSING, True
        value = self.decode(raw, text)
        if value is _BAD:
            return MISSING, True
        return value, False

    def set_command(
        self, text: str, data: bytes, ttl: float | None, tags: tuple[str, ...]
    ) -> tuple[_Script | None, list[str], list[Any]]:
        """What a write runs: the tagging script with its keys and arguments, or a plain SET."""
        if tags:
            keys = [text, *(self.cache.tag_key(tag) for tag in tags)]
            return _SET_TAGGED, keys, [data, self.ttl_ms(ttl)]
        return None, [text], [data, None if ttl is None else _milliseconds(ttl)]

    def lease_command(self, text: str) -> tuple[str, str]:
        """The lease key of ``text`` and a fresh token to take it with."""
        return text + LEASE_SUFFIX, secrets.token_hex(16)

    def polled(self, found: Any, text: str, deadline: float) -> tuple[Any, bool, bool]:
        """Decide after one poll of ``text``'s lease: ``(value, corrupt, done)``."""
        if isinstance(found, _Failed | _WrongType):
            value, corrupt = self.read(found, text)
            return value, corrupt, True
        held, raw, _ = found
        value, corrupt = self.read(raw, text)
        if corrupt or value is not MISSING:
            return value, corrupt, True
        return MISSING, False, not held or deadline <= time.monotonic()

    # -- sync driver, by Redis key text -----------------------------------------------

    def _call(self, doing: str, command: Callable[[], Any]) -> Any:
        """Run ``command`` unless Redis is being left alone; `_FAILED` when skipped or failed."""
        if self._health.skip():
            return _FAILED
        try:
            result = command()
        except self._errors as error:
            return self.cache.trouble(error, doing)
        self._health.succeeded()
        return result

    def get_text(self, text: str) -> Any:
        """`get` by Redis key."""
        value, corrupt = self.read(
            self._call("reading", lambda: self.cache.sync_client().get(text)), text
        )
        if corrupt:
            self.delete_text(text)
        return value

    def fetch_text(self, text: str) -> tuple[Any, float | None]:
        """The value under ``text`` and the seconds it has left (``None``: no expiry)."""
        found = self._call("reading", lambda: self.cache.run(_FETCH, [text]))
        if isinstance(found, _Failed | _WrongType):
            value, corrupt = self.read(found, text)
            if corrupt:
                self.delete_text(text)
            return MISSING, None
        value, corrupt = self.read(found[0], text)
        if corrupt:
            self.delete_text(text)
        return value, _remaining(found[1]) if value is not MISSING else None

    def set_text(self, text: str, value: Any, ttl: float | None, tags: tuple[str, ...]) -> None:
        """`set` by Redis key."""
        data = self.encode(value)
        if data is None:
            return
        script, keys, args = self.set_command(text, data, ttl, tags)
        if script is not None:
            self._call("writing", lambda: self.cache.run(script, keys, args))
        else:
            self._call("writing", lambda: self.cache.sync_client().set(text, data, px=args[1]))

    def delete_text(self, text: str, announce: tuple[str, bytes] | None = None) -> None:
        """`delete` by Redis key; with ``announce``, also PUBLISH ``(channel, message)``."""
        if announce is None:
            self._call("deleting", lambda: self.cache.sync_client().unlink(text))
        else:
            self._call("deleting", lambda: self.cache.run(_DELETE_AND_PUBLISH, [text], announce))

    def acquire_text(self, text: str) -> str | None:
        """`acquire` by Redis key: ``""`` (compute here, nothing to release) if Redis fails."""
        lease, token = self.lease_command(text)
        taken = self._call(
            "taking a lease",
            lambda: self.cache.sync_client().set(lease, token, nx=True, px=self._lease_ms),
        )
        if taken is _FAILED:
            return ""
        return token if taken else None

    def wait_text(self, text: str) -> tuple[Any, float | None]:
        """`wait` by Redis key; also the seconds the value has left (``None``: no expiry)."""
        deadline = time.monotonic() + self.cache.lease_ttl
        delay = _FIRST_POLL
        while True:
            found = self._call(
                "waiting for a value", lambda: self.cache.run(_POLL, [text, text + LEASE_SUFFIX])
            )
            value, corrupt, done = self.polled(found, text, deadline)
            if corrupt:
                self.delete_text(text)
            if done:
                return value, _remaining(found[2]) if value is not MISSING else None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _LAST_POLL)

    def release_text(self, text: str, token: str) -> None:
        """`release` by Redis key."""
        if token:
            self._call(
                "releasing a lease",
                lambda: self.cache.run(_RELEASE, [text + LEASE_SUFFIX], [token]),
            )

    # -- async driver, by Redis key text ----------------------------------------------

    async def _acall(self, doing: str, command: Callable[[], Awaitable[Any]]) -> Any:
        """`_call` for async callers."""
        if self._health.skip():
            return _FAILED
        try:
            result = await command()
        except self._errors as error:
            return self.cache.trouble(error, doing)
        self._health.succeeded()
        return result

    async def aget_text(self, text: str) -> Any:
        """`aget` by Redis key."""
        raw = await self._acall("reading", lambda: self.cache.async_client().get(text))
        value, corrupt = self.read(raw, text)
        if corrupt:
            await self.adelete_text(text)
        return value

    async def afetch_text(self, text: str) -> tuple[Any, float | None]:
        """`fetch_text` for async callers."""
        found = await self._acall("reading", lambda: self.cache.arun(_FETCH, [text]))
        if isinstance(found, _Failed | _WrongType):
            value, corrupt = self.read(found, text)
            if corrupt:
                await self.adelete_text(text)
            return MISSING, None
        value, corrupt = self.read(found[0], text)
        if corrupt:
            await self.adelete_text(text)
        return value, _remaining(found[1]) if value is not MISSING else None

    async def aset_text(
        self, text: str, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """`aset` by Redis key."""
        data = self.encode(value)
        if data is None:
            return
        script, keys, args = self.set_command(text, data, ttl, tags)
        if script is not None:
            await self._acall("writing", lambda: self.cache.arun(script, keys, args))
        else:
            await self._acall(
                "writing", lambda: self.cache.async_client().set(text, data, px=args[1])
            )

    async def adelete_text(self, text: str, announce: tuple[str, bytes] | None = None) -> None:
        """`adelete` by Redis key; with ``announce``, also PUBLISH ``(channel, message)``."""
        if announce is None:
            await self._acall("deleting", lambda: self.cache.async_client().unlink(text))
        else:
            await self._acall(
                "deleting", lambda: self.cache.arun(_DELETE_AND_PUBLISH, [text], announce)
            )

    async def aacquire_text(self, text: str) -> str | None:
        """`aacquire` by Redis key."""
        lease, token = self.lease_command(text)
        taken = await self._acall(
            "taking a lease",
            lambda: self.cache.async_client().set(lease, token, nx=True, px=self._lease_ms),
        )
        if taken is _FAILED:
            return ""
        return token if taken else None

    async def await_text(self, text: str) -> tuple[Any, float | None]:
        """`await_value` by Redis key; also the seconds the value has left."""
        deadline = time.monotonic() + self.cache.lease_ttl
        delay = _FIRST_POLL
        while True:
            found = await self._acall(
                "waiting for a value", lambda: self.cache.arun(_POLL, [text, text + LEASE_SUFFIX])
            )
            value, corrupt, done = self.polled(found, text, deadline)
            if corrupt:
                await self.adelete_text(text)
            if done:
                return value, _remaining(found[2]) if value is not MISSING else None
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _LAST_POLL)

    async def arelease_text(self, text: str, token: str) -> None:
        """`arelease` by Redis key."""
        if token:
            await self._acall(
                "releasing a lease",
                lambda: self.cache.arun(_RELEASE, [text + LEASE_SUFFIX], [token]),
            )

    # -- CacheView ----------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        """Return the value stored under ``key``, or `MISSING` (also when Redis fails).

        Raises:
            CacheKeyError: An argument has no stable text form.
        """
        return self.get_text(self.text(key))

    def peek(self, key: Key) -> Any:  # noqa: ARG002 - part of the protocol
        """Return `MISSING`: nothing is held in this process."""
        return MISSING

    def set(self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...] = ()) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``SET ... PX``), with ``tags``."""
        self.set_text(self.text(key), value, ttl, tags)

    def delete(self, key: Key) -> None:
        """Delete ``key``."""
        self.delete_text(self.text(key))

    def acquire(self, key: Key) -> str | None:
        """Take ``key``'s lease: a token, ``None`` if another process holds it.

        When Redis fails, an empty token is returned: compute locally.
        """
        return self.acquire_text(self.text(key))

    def wait(self, key: Key) -> Any:
        """Poll for the value of the lease holder; `MISSING` when its lease lapses."""
        return self.wait_text(self.text(key))[0]

    def release(self, key: Key, token: str) -> None:
        """Release ``key``'s lease if it still holds ``token``."""
        self.release_text(self.text(key), token)

    def clear(self) -> None:
        """Delete every entry of this function."""
        self.cache.clear_matching(self.pattern)

    async def aget(self, key: Key) -> Any:
        """`get` for async callers."""
        return await self.aget_text(self.text(key))

    async def aset(
        self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...] = ()
    ) -> None:
        """`set` for async callers."""
        await self.aset_text(self.text(key), value, ttl, tags)

    async def adelete(self, key: Key) -> None:
        """`delete` for async callers."""
        await self.adelete_text(self.text(key))

    async def aacquire(self, key: Key) -> str | None:
        """`acquire` for async callers."""
        return await self.aacquire_text(self.text(key))

    async def await_value(self, key: Key) -> Any:
        """`wait` for async callers."""
        return (await self.await_text(self.text(key)))[0]

    async def arelease(self, key: Key, token: str) -> None:
        """`release` for async callers."""
        await self.arelease_text(self.text(key), token)

    async def aclear(self) -> None:
        """`clear` for async callers."""
        await self.cache.aclear_matching(self.pattern)
