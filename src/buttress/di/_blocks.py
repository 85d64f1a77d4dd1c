"""What the caching and resilience containers build from their settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buttress.caching import MemoryCache, RedisCache, TieredCache
from buttress.errors import ConfigurationError
from buttress.resilience import CircuitBreaker, retry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from buttress.caching import SharedCache
    from buttress.settings import CacheSettings, RedisSettings, ResilienceSettings

__all__ = ["CircuitBreakers", "RetryPolicy", "cache_resource"]


def cache_resource(settings: CacheSettings, redis: RedisSettings) -> Iterator[SharedCache]:
    """The cache ``settings.backend`` names, its Redis clients closed at shutdown.

    ``settings.ttl`` is the cache's ``default_ttl``: the TTL of `cached`
    functions on it that give none.

    Yields:
        A `MemoryCache`, a `RedisCache` or a `TieredCache`.
    """
    if settings.backend == "memory":
        yield MemoryCache(settings.maxsize, default_ttl=settings.ttl)
        return
    shared = RedisCache.from_settings(
        redis,
        settings,
        client_name=f"buttress:{settings.namespace}",  # seen in CLIENT LIST
    )
    cache: RedisCache | TieredCache = (
        shared
        if settings.backend == "redis"
        else TieredCache(
            shared, maxsize=settings.maxsize, local_ttl=settings.local_ttl, default_ttl=settings.ttl
        )
    )
    try:
        yield cache
    finally:
        cache.close()


class CircuitBreakers:
    """Named circuit breakers sharing the settings' defaults: one breaker per name.

    ``breakers("payments")`` makes the breaker on first use and returns the
    same one afterwards, from any thread, so every caller of a dependency
    counts its failures together.

    Args:
        settings: The resilience settings; their ``breaker`` section gives the defaults.
    """

    def __init__(self, settings: ResilienceSettings) -> None:
        self.defaults = settings.breaker
        self._breakers: dict[str, tuple[CircuitBreaker, dict[str, Any]]] = {}

    def __call__(self, name: str, **options: Any) -> CircuitBreaker:
        """The breaker called ``name``, made with the defaults and ``options`` on first use.

        Raises:
            ConfigurationError: ``options`` differ from those the breaker was made with.
        """
        found = self._breakers.get(name)
        if found is not None and CircuitBreaker.live(name) is not found[0]:
            found = None  # forgotten by the registry (isolated_breakers): make it anew
        if found is None:
            # CircuitBreaker keeps one live breaker per name, thread-safely: two callers
            # racing here get the same one (or a ConfigurationError for other settings).
            breaker = CircuitBreaker(name, **{**self.defaults.model_dump(), **options})
            current = self._breakers.get(name)
            if current is None or current[0] is not breaker:
                self._breakers[name] = (breaker, options)
            found = self._breakers[name]
        breaker, made_with = found
        if options and options != made_with:
            raise ConfigurationError(
                f"the circuit breaker {name!r} was made with {made_with or 'the defaults'}, "
                f"not {options}; give a breaker its options where it is first asked for, or "
                "use another name"
            )
        return breaker

    def __iter__(self) -> Iterator[CircuitBreaker]:
        """The breakers made so far."""
        return iter([breaker for breaker, _ in list(self._breakers.values())])


class RetryPolicy:
    """`buttress.resilience.retry` with the settings' defaults.

    ``policy(on=TimeoutError)`` is ``retry(on=TimeoutError, attempts=..., ...)``
    with the configured attempts, waits and deadline; keyword arguments
    override them for one use.

    Args:
        settings: The resilience settings; their ``retry`` section gives the defaults.
    """

    def __init__(self, settings: ResilienceSettings) -> None:
        self.defaults = settings.retry

    def __call__(self, *, on: Any, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        """A retry decorator for ``on`` with the defaults, and ``options`` over them."""
        return retry(on=on, **{**self.defaults.model_dump(), **options})
