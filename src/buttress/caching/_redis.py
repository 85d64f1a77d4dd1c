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

from buttress._text import a
from buttress.caching._backend import (
    FORK_AWARE,
    MISSING,
    CacheListener,
    Lease,
    default_ttl_problem,
    logger,
)
from buttress.caching._pending import Invalidation, Pending
from buttress.caching._serial import (
    JsonSerializer,
    PickleSerializer,
    Serializer,
    encode_key,
)
from buttress.errors import (
    ConfigurationError,
    DecodeError,
    MissingDependencyError,
    UnavailableError,
)

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

MARK_SUFFIX: Final = ":gen"
"""Appended to an entry's key to name its invalidation mark.

Invalidating a key (a function, a tag, the whole cache) sets its mark to a new
random value that lives `RedisCache.mark_window` seconds; a miss reads the marks
when it begins and writes its value only if none changed. A miss that runs
longer than the window does not write at all (its marks may have expired).
"""

_WINDOW_MARGIN: Final = 1.0
"""Seconds short of the mark window at which a miss stops trusting the marks."""


class _Script:
    """A Lua script, run by its SHA1 and loaded again when Redis forgot it."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


_TAG: Final = """
local function tag(set, member, ttl)
  local kind = redis.call('TYPE', set)['ok']
  if kind ~= 'set' and kind ~= 'none' then
    redis.call('DEL', set)  -- another type under a tag's key: that tag starts afresh
    kind = 'none'
  end
  redis.call('SADD', set, member)
  if ttl > 0 then
    local left = redis.call('PTTL', set)
    if kind == 'none' or (left >= 0 and left < ttl) then
      redis.call('PEXPIRE', set, ttl)
    end
  else
    redis.call('PERSIST', set)
  end
end
"""
"""Add a key to a tag's set; the set lives as long as its longest entry."""

_SET_TAGGED: Final = _Script(
    _TAG
    + """
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
for i = 2, #KEYS do
  tag(KEYS[i], KEYS[1], ttl)
end
return 1
"""
)
"""SET the value and add its key to each tag's set."""

_BEGIN: Final = _Script("""
local value = redis.call('GET', KEYS[1])
if value then
  return {0, value, redis.call('PTTL', KEYS[1])}
end
local taken = 0
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  taken = 1
end
local found = {1, taken}
for i = 3, #KEYS do
  found[#found + 1] = redis.call('GET', KEYS[i]) or ''
end
return found
""")
"""Start a miss: ``{0, value, pttl}`` if the value is there, else take the lease if free and
return ``{1, taken, generations...}``: the invalidation marks the write is checked against."""

_STORE: Final = _Script(
    _TAG
    + """
local marks = tonumber(ARGV[4])
local fresh = true
for i = 1, marks do
  if (redis.call('GET', KEYS[2 + i]) or '') ~= ARGV[4 + i] then
    fresh = false
    break
  end
end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
if not fresh then
  return 0
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
for i = 3 + marks, #KEYS do
  tag(KEYS[i], KEYS[1], ttl)
end
return 1
"""
)
"""Finish a miss: release the lease, and write the value (tagged) only if no invalidation
mark changed since the miss began; 1 if written, 0 if an invalidation came first."""

_DELETE: Final = _Script("""
redis.call('UNLINK', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if #ARGV > 2 then
  return redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 0
""")
"""Delete a key, mark it invalidated (for misses in flight), and announce it if asked."""

_INVALIDATE_TAGS: Final = _Script("""
local dropped = {}
local tags = #KEYS / 2
for i = 1, tags do
  if redis.call('TYPE', KEYS[i])['ok'] == 'set' then
    for _, member in ipairs(redis.call('SMEMBERS', KEYS[i])) do
      redis.call('UNLINK', member)
      dropped[#dropped + 1] = member
    end
  end
  redis.call('UNLINK', KEYS[i])
  redis.call('SET', KEYS[tags + i], ARGV[1], 'PX', ARGV[2])
end
return dropped
""")
"""Delete every key of the tag sets and the sets, mark the tags invalidated; return the keys."""

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
            ``url`` (``socket_timeout``, ``retry``...).
        default_ttl: The TTL of `cached` functions on this cache that give none;
            None keeps their entries until invalidated.

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

    def __init__(  # noqa: PLR0915 - checks every argument, then sets the cache up
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
        default_ttl: float | None = None,
    ) -> None:
        redis = _redis_module()
        problems: list[str] = []
        ttl_problem = default_ttl_problem("RedisCache", default_ttl)
        if ttl_problem:
            problems.append(ttl_problem)
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
        self.default_ttl = None if default_ttl is None else float(default_ttl)
        """The TTL of `cached` functions on this cache that give none (None: no expiry)."""
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
        self._pending = Pending(self.health.label)
        self.everything_mark = f"{self.prefix}gen:all"
        """The key of the invalidation mark of every entry of the cache."""
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
            cache: Namespace, version, serializer, signing key, and ``ttl``: the
                TTL of `cached` functions on this cache that give none.
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
            default_ttl=cache.ttl,
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
        down, or by ``await`` `aclose` in that loop. Invalidations still waiting
        for Redis get one last try, then are reported (a warning) if Redis still
        does not answer. The cache stays usable: clients are made again on use.
        """
        if self._pending and self.can_listen:
            self.ready()
        self._pending.close()
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
        self._pending.after_fork()

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

    def tag_mark(self, tag: str) -> str:
        """The key of ``tag``'s invalidation mark (see `MARK_SUFFIX`)."""
        return f"{self.prefix}gen:t:{tag}"

    def function_mark(self, name: str) -> str:
        """The key of the invalidation mark of every entry of the function ``name``."""
        return f"{self.prefix}gen:f:{name}"

    @property
    def mark_window(self) -> float:
        """Seconds an invalidation mark lives: misses running longer never write."""
        return max(60.0, 4 * self.lease_ttl)

    def clear(self) -> None:
        """Delete every key of this namespace and version (entries, leases, tag sets).

        While Redis is unreachable the clear is kept and applied when it answers.
        """
        self.invalidate(Invalidation("everything"))

    async def aclear(self) -> None:
        """`clear` for async callers."""
        await self.ainvalidate(Invalidation("everything"))

    def invalidate_tags(self, *tags: str) -> None:
        """Delete every entry written with any of ``tags`` (atomically), and the tag sets.

        While Redis is unreachable the invalidation is kept and applied when it answers.

        Args:
            *tags: The tags.
        """
        if tags:
            self.invalidate(Invalidation("tags", tags))

    async def ainvalidate_tags(self, *tags: str) -> None:
        """`invalidate_tags` for async callers."""
        if tags:
            await self.ainvalidate(Invalidation("tags", tags))

    def counts(self) -> tuple[int | None, int | None]:
        """Return ``(None, None)``: Redis cannot tell size and evictions of a namespace cheaply."""
        return None, None

    # -- invalidations: applied now, or kept until Redis answers ---------------------------

    @property
    def pending(self) -> Pending:
        """The invalidations waiting for Redis (empty when all were applied)."""
        return self._pending

    def skip(self) -> bool:
        """Whether Redis is being left alone right now (after a failure)."""
        return self.health.skip()

    def can_flush_in_background(self) -> bool:
        """Whether a thread may apply waiting invalidations (it needs a sync client)."""
        return self.can_listen

    def ready(self) -> bool:
        """Apply the waiting invalidations; tell whether none is left (Redis may be used)."""
        return self._pending.flush(self.apply, self.health.skip)

    async def aready(self) -> bool:
        """`ready` with this event loop's client."""
        return await self._pending.aflush(self.aapply, self.health.skip)

    def invalidate(self, invalidation: Invalidation, *, strict: bool = False) -> bool:
        """Apply an invalidation, after those still waiting; keep it if Redis fails.

        Args:
            invalidation: What to drop.
            strict: Also raise when it could not be applied now.

        Returns:
            Whether it was applied now (else it waits for Redis).

        Raises:
            UnavailableError: With ``strict``, Redis could not be reached (the
                invalidation is kept and applied when it answers).
        """
        if self.ready() and not self.health.skip() and self.apply(invalidation):
            return True
        self._pending.defer(invalidation, self)
        if strict:
            raise self._unapplied(invalidation)
        return False

    async def ainvalidate(self, invalidation: Invalidation, *, strict: bool = False) -> bool:
        """`invalidate` with this event loop's client."""
        if await self.aready() and not self.health.skip() and await self.aapply(invalidation):
            return True
        self._pending.defer(invalidation, self)
        if strict:
            raise self._unapplied(invalidation)
        return False

    def _unapplied(self, invalidation: Invalidation) -> UnavailableError:
        return UnavailableError(
            f"Redis cache {self.health.label} could not apply the invalidation of "
            f"{invalidation.describe()} now: Redis is unreachable. It is kept and applied as "
            "soon as Redis answers; until then this process reads nothing from Redis"
        )

    def _mark(self) -> list[Any]:
        """A fresh invalidation mark and its lifetime, as script arguments."""
        return [secrets.token_hex(8), _milliseconds(self.mark_window)]

    def apply(self, invalidation: Invalidation) -> bool:
        """Apply one invalidation now with the sync client; False (handled) if Redis failed.

        The caller has asked `skip` (Redis is not being left alone).
        """
        kind, targets, announce = invalidation.kind, invalidation.targets, invalidation.announce
        try:
            client = self.sync_client()
            messages: tuple[bytes, ...] = ()
            if kind == "key":
                [text] = targets
                extra = [announce[0], announce[1][0]] if announce else []
                self.run(_DELETE, [text, text + MARK_SUFFIX], [*self._mark(), *extra])
                announce = None  # published by the script, atomically
            elif kind == "tags":
                keys = [self.tag_key(tag) for tag in targets]
                marks = [self.tag_mark(tag) for tag in targets]
                dropped = _texts(self.run(_INVALIDATE_TAGS, [*keys, *marks], self._mark()))
                messages = invalidation.dropped(dropped)
            elif kind == "function":
                [name] = targets
                mark, window = self._mark()
                client.set(self.function_mark(name), mark, px=window)
                self._unlink_matching(client, _glob_escape(f"{self.prefix}{name}:") + "[(#]*")
            else:
                mark, window = self._mark()
                client.set(self.everything_mark, mark, px=window)
                self._unlink_matching(client, f"{self.prefix}*")  # the mark too: set it again
                client.set(self.everything_mark, secrets.token_hex(8), px=window)
            if announce is not None:
                for message in (*announce[1], *messages):
                    client.publish(announce[0], message)
        except self.errors as error:
            self.trouble(error, f"invalidating {invalidation.describe()}")
            return False
        self.health.succeeded()
        return True

    async def aapply(self, invalidation: Invalidation) -> bool:
        """`apply` with this event loop's client."""
        kind, targets, announce = invalidation.kind, invalidation.targets, invalidation.announce
        try:
            client = self.async_client()
            messages: tuple[bytes, ...] = ()
            if kind == "key":
                [text] = targets
                extra = [announce[0], announce[1][0]] if announce else []
                await self.arun(_DELETE, [text, text + MARK_SUFFIX], [*self._mark(), *extra])
                announce = None
            elif kind == "tags":
                keys = [self.tag_key(tag) for tag in targets]
                marks = [self.tag_mark(tag) for tag in targets]
                dropped = _texts(await self.arun(_INVALIDATE_TAGS, [*keys, *marks], self._mark()))
                messages = invalidation.dropped(dropped)
            elif kind == "function":
                [name] = targets
                mark, window = self._mark()
                await client.set(self.function_mark(name), mark, px=window)
                await self._aunlink_matching(
                    client, _glob_escape(f"{self.prefix}{name}:") + "[(#]*"
                )
            else:
                mark, window = self._mark()
                await client.set(self.everything_mark, mark, px=window)
                await self._aunlink_matching(client, f"{self.prefix}*")
                await client.set(self.everything_mark, secrets.token_hex(8), px=window)
            if announce is not None:
                for message in (*announce[1], *messages):
                    await client.publish(announce[0], message)
        except self.errors as error:
            self.trouble(error, f"invalidating {invalidation.describe()}")
            return False
        self.health.succeeded()
        return True

    @staticmethod
    def _unlink_matching(client: Any, pattern: str) -> None:
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)

    @staticmethod
    async def _aunlink_matching(client: Any, pattern: str) -> None:
        batch: list[Any] = []
        async for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)


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
            problems.append(f"url must be a str or a SecretStr, got {a(type(url).__qualname__)}")
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
        self.function_mark = cache.function_mark(name)
        """The key of the invalidation mark of every entry of this function."""
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

    def marks(self, text: str, tags: tuple[str, ...]) -> list[str]:
        """The invalidation marks a write of ``text`` with ``tags`` is checked against."""
        cache = self.cache
        return [
            text + MARK_SUFFIX,
            self.function_mark,
            cache.everything_mark,
            *(cache.tag_mark(tag) for tag in tags),
        ]

    def began(self, found: Any, text: str, token: str) -> tuple[Lease, float | None, bool]:
        """``(lease, seconds left, corrupt)`` from what the begin script returned."""
        if isinstance(found, _Failed | _WrongType):
            _, corrupt = self.read(found, text)
            return Lease(), None, corrupt  # compute here; nothing to check a write against
        if found[0] == 0:
            value, corrupt = self.read(found[1], text)
            left = _remaining(found[2]) if value is not MISSING else None
            return Lease(value=value), left, corrupt
        taken = bool(found[1])
        marks = tuple(mark.decode() if isinstance(mark, bytes) else str(mark) for mark in found[2:])
        return Lease(token=token if taken else "", mine=taken, since=marks), None, False

    def storable(self, lease: Lease, value: Any) -> bytes | None:
        """The bytes to write for a finished miss, or None when it must not write."""
        if lease.since is None:
            return None  # Redis failed when the miss began: no marks to check against
        if time.monotonic() - lease.started > self.cache.mark_window - _WINDOW_MARGIN:
            logger.debug(
                "%s: a value computed for too long to be checked was not cached", self.name
            )
            return None
        return self.encode(value)

    def store_command(
        self,
        text: str,
        lease: Lease,
        data: bytes,
        ttl: float | None,
        tags: tuple[str, ...],
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the store script."""
        marks = self.marks(text, tags)
        keys = [text, text + LEASE_SUFFIX, *marks, *(self.cache.tag_key(tag) for tag in tags)]
        return keys, [data, self.ttl_ms(ttl), lease.token, len(marks), *lease.since]

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
        """Run ``command`` unless Redis is being left alone; `_FAILED` when skipped or failed.

        Invalidations waiting for Redis are applied first; while any is left,
        nothing is read or written (a read that could return what they drop).
        """
        cache = self.cache
        if cache.pending and not cache.ready():
            return _FAILED
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

    def delete_text(
        self, text: str, announce: tuple[str, bytes] | None = None, *, strict: bool = False
    ) -> None:
        """`delete` by Redis key; with ``announce``, also PUBLISH ``(channel, message)``.

        Kept and applied when Redis answers if it cannot be now (see `RedisCache.invalidate`).
        """
        self.cache.invalidate(self.deletion(text, announce), strict=strict)

    def deletion(self, text: str, announce: tuple[str, bytes] | None) -> Invalidation:
        """The invalidation of the entry under ``text``."""
        return Invalidation(
            "key", (text,), None if announce is None else (announce[0], (announce[1],))
        )

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

    def begin_text(self, text: str, tags: tuple[str, ...]) -> tuple[Lease, float | None]:
        """`begin` by Redis key; also the seconds a value found has left."""
        lease, left, corrupt = self._begin_once(text, tags)
        if corrupt:  # a bad entry: deleted, then the miss begins again
            self.delete_text(text)
            lease, left, _ = self._begin_once(text, tags)
        return lease, left

    def _begin_once(self, text: str, tags: tuple[str, ...]) -> tuple[Lease, float | None, bool]:
        token = secrets.token_hex(16)
        keys = [text, text + LEASE_SUFFIX, *self.marks(text, tags)]
        found = self._call(
            "taking a lease", lambda: self.cache.run(_BEGIN, keys, [token, self._lease_ms])
        )
        return self.began(found, text, token)

    def store_text(
        self, text: str, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> bool | None:
        """`store` by Redis key: True if written, False if overtaken, None if not tried."""
        data = self.storable(lease, value)
        if data is None:
            return None
        keys, args = self.store_command(text, lease, data, ttl, tags)
        done = self._call("writing", lambda: self.cache.run(_STORE, keys, args))
        if isinstance(done, _Failed | _WrongType):
            return None
        lease.open = False  # the script released the lease
        return bool(done)

    def end_text(self, text: str, lease: Lease) -> None:
        """`end` by Redis key: release the lease if it is still held."""
        if lease.open:
            lease.open = False
            self.release_text(text, lease.token)

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
        cache = self.cache
        if cache.pending and not await cache.aready():
            return _FAILED
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

    async def adelete_text(
        self, text: str, announce: tuple[str, bytes] | None = None, *, strict: bool = False
    ) -> None:
        """`delete_text` for async callers."""
        await self.cache.ainvalidate(self.deletion(text, announce), strict=strict)

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

    async def abegin_text(self, text: str, tags: tuple[str, ...]) -> tuple[Lease, float | None]:
        """`begin_text` for async callers."""
        lease, left, corrupt = await self._abegin_once(text, tags)
        if corrupt:  # a bad entry: deleted, then the miss begins again
            await self.adelete_text(text)
            lease, left, _ = await self._abegin_once(text, tags)
        return lease, left

    async def _abegin_once(
        self, text: str, tags: tuple[str, ...]
    ) -> tuple[Lease, float | None, bool]:
        token = secrets.token_hex(16)
        keys = [text, text + LEASE_SUFFIX, *self.marks(text, tags)]
        found = await self._acall(
            "taking a lease", lambda: self.cache.arun(_BEGIN, keys, [token, self._lease_ms])
        )
        return self.began(found, text, token)

    async def astore_text(
        self, text: str, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> bool | None:
        """`store_text` for async callers."""
        data = self.storable(lease, value)
        if data is None:
            return None
        keys, args = self.store_command(text, lease, data, ttl, tags)
        done = await self._acall("writing", lambda: self.cache.arun(_STORE, keys, args))
        if isinstance(done, _Failed | _WrongType):
            return None
        lease.open = False
        return bool(done)

    async def aend_text(self, text: str, lease: Lease) -> None:
        """`end_text` for async callers."""
        if lease.open:
            lease.open = False
            await self.arelease_text(text, lease.token)

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

    def delete(self, key: Key, *, strict: bool = False) -> None:
        """Delete ``key`` (kept and applied when Redis answers, if it cannot be now).

        Raises:
            UnavailableError: With ``strict``, Redis could not be reached now.
        """
        self.delete_text(self.text(key), strict=strict)

    def begin(self, key: Key, tags: tuple[str, ...]) -> Lease:
        """Start a miss: the value if it is there, else ``key``'s lease and invalidation marks."""
        return self.begin_text(self.text(key), tags)[0]

    def store(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """Write a computed value unless an invalidation came since the miss began."""
        self.store_text(self.text(key), lease, value, ttl, tags)

    def end(self, key: Key, lease: Lease) -> None:
        """Release the miss's lease if the write did not."""
        self.end_text(self.text(key), lease)

    async def abegin(self, key: Key, tags: tuple[str, ...]) -> Lease:
        """`begin` for async callers."""
        return (await self.abegin_text(self.text(key), tags))[0]

    async def astore(
        self, key: Key, lease: Lease, value: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        """`store` for async callers."""
        await self.astore_text(self.text(key), lease, value, ttl, tags)

    async def aend(self, key: Key, lease: Lease) -> None:
        """`end` for async callers."""
        await self.aend_text(self.text(key), lease)

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
        """Delete every entry of this function (kept and applied when Redis answers)."""
        self.cache.invalidate(Invalidation("function", (self.name,)))

    async def aget(self, key: Key) -> Any:
        """`get` for async callers."""
        return await self.aget_text(self.text(key))

    async def aset(
        self, key: Key, value: Any, ttl: float | None, tags: tuple[str, ...] = ()
    ) -> None:
        """`set` for async callers."""
        await self.aset_text(self.text(key), value, ttl, tags)

    async def adelete(self, key: Key, *, strict: bool = False) -> None:
        """`delete` for async callers."""
        await self.adelete_text(self.text(key), strict=strict)

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
        await self.cache.ainvalidate(Invalidation("function", (self.name,)))
