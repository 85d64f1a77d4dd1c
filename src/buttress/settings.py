"""Configuration models, loaded from ``BUTTRESS_*`` environment variables.

Each block's settings is a pydantic-settings model that reads its own section
of the environment, and `ButtressSettings` gathers all of them:

| model                | environment prefix        | example variable                           |
|----------------------|---------------------------|--------------------------------------------|
| `DatabaseSettings`   | ``BUTTRESS_DATABASE__``   | ``BUTTRESS_DATABASE__POOL_SIZE=10``        |
| `RedisSettings`      | ``BUTTRESS_REDIS__``      | ``BUTTRESS_REDIS__URL=redis://cache:6379`` |
| `CacheSettings`      | ``BUTTRESS_CACHE__``      | ``BUTTRESS_CACHE__BACKEND=tiered``         |
| `ResilienceSettings` | ``BUTTRESS_RESILIENCE__`` | ``BUTTRESS_RESILIENCE__RETRY__ATTEMPTS=5`` |

Nested fields are joined with ``__``. Values passed as keyword arguments win
over the environment. Anything invalid raises `ConfigurationError` naming each
offending variable, and so does a variable in a known section whose name
matches no setting (a typo would otherwise be ignored silently).

Durations are finite numbers of seconds: ``inf``, ``-inf`` and ``nan`` are
refused like any other invalid value (an optional one, such as a ``ttl`` or a
``deadline``, is left unset for no limit).

URLs are `SecretStr`: their passwords never appear in a ``repr``, a log line or
an error message. Read the real value with ``url.get_secret_value()``, and log
``safe_url``, which masks the password.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import logging
import os
import re
import types
import typing
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from buttress.errors import ConfigurationError

if typing.TYPE_CHECKING:
    from collections.abc import Iterator

    from pydantic.fields import FieldInfo

__all__ = [
    "BreakerSettings",
    "ButtressSettings",
    "CacheSettings",
    "DatabaseSettings",
    "RedisSettings",
    "ResilienceSettings",
    "RetrySettings",
    "mask_url",
]

logger = logging.getLogger("buttress.settings")

ENV_PREFIX = "BUTTRESS_"
NESTED_DELIMITER = "__"

# -----------------------------------------------------------------------------
# URLs
# -----------------------------------------------------------------------------

# The grammar SQLAlchemy's make_url() accepts, checked here without importing it.
_DATABASE_URL = re.compile(
    r"""
    (?P<dialect>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.VERBOSE,
)
_PASSWORD_IN_URL = re.compile(r"^(?P<head>[^:/?#]+://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@.*)$")
# Drivers also take the password as a query parameter (redis-py over unix://, libpq).
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pass|pwd)=)[^&#]*", re.IGNORECASE)
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, safe to log.

    Args:
        url: A URL of the form ``scheme://user:password@host/...``, possibly with
            the password in the query instead (``?password=...``).

    Returns:
        The same URL with every password masked; unchanged when it has none.
    """
    masked = _PASSWORD_IN_URL.sub(r"\g<head>***\g<tail>", url)
    return _PASSWORD_IN_QUERY.sub(r"\g<head>***", masked)


def _check_database_url(value: SecretStr) -> SecretStr:
    match = _DATABASE_URL.fullmatch(value.get_secret_value())
    if match is None:
        # The value is never echoed back: it may carry a password.
        raise ValueError(
            "is not a database URL; expected dialect[+driver]://[user[:password]@]host[:port]"
            "/database, such as postgresql+psycopg://app@127.0.0.1:5432/app or "
            "sqlite:///path/to/app.db"
        )
    dialect, _, driver = match["dialect"].partition("+")
    if dialect == "postgres":  # Heroku and libpq spell it so; SQLAlchemy does not take it
        raise ValueError(
            f"starts with {match['dialect']}://, a scheme SQLAlchemy does not know; write "
            f"postgresql+{driver or 'psycopg'}:// instead (the rest of the URL stays as it is)"
        )
    port = match["port"]
    if port and not port.isdigit():
        raise ValueError("has a port that is not a number; write host:5432, or leave the port out")
    return value


def _check_redis_url(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in _REDIS_SCHEMES or not (parts.hostname or parts.path):
        raise ValueError(
            "is not a Redis URL; expected redis://[[user]:password@]host[:port][/db], "
            "rediss://... for TLS, or unix:///path/to/redis.sock"
        )
    database = parts.path.lstrip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError("has a database that is not a number; write redis://host:6379/0")
    return value


DatabaseUrl = Annotated[SecretStr, AfterValidator(_check_database_url)]
RedisUrl = Annotated[SecretStr, AfterValidator(_check_redis_url)]

# -----------------------------------------------------------------------------
# Numbers
# -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Finite:
    """Marks a float setting that refuses ``inf`` and ``nan``, saying what to give instead."""

    expected: str


# inf would pass a bound such as gt=0 and fail much later, when a driver turns the
# timeout into an integer (OverflowError) or waits forever; nan fails every bound
# with a misleading message. So every float setting is one of these, and a
# non-finite value is reported as such (see _describe).
Seconds = Annotated[
    float, Field(ge=0.0, allow_inf_nan=False), _Finite("a finite number of seconds")
]
"""A duration in seconds, 0 or more, finite."""

PositiveSeconds = Annotated[
    float, Field(gt=0.0, allow_inf_nan=False), _Finite("a finite number of seconds")
]
"""A duration in seconds, more than 0, finite."""

Fraction = Annotated[
    float,
    Field(ge=0.0, lt=1.0, allow_inf_nan=False),
    _Finite("a finite number from 0 up to (not including) 1"),
]
"""A share of something, from 0 up to (not including) 1."""

# -----------------------------------------------------------------------------
# Loading and error reporting
# -----------------------------------------------------------------------------

# How deep we are in nested settings construction: only the outermost turns a
# ValidationError into a ConfigurationError, so that pydantic can merge the
# locations of nested errors first.
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("buttress_settings_depth", default=0)


@contextlib.contextmanager
def _construction() -> Iterator[bool]:
    """Count one level of nested settings construction; yield whether it is the outermost."""
    token = _depth.set(_depth.get() + 1)
    try:
        yield _depth.get() == 1
    finally:
        _depth.reset(token)


def _is_secret(annotation: object) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def _nested_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            model = _nested_model(arg)
            if model is not None:
                return model
    return None


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The field at ``loc`` (a path of field names through nested models), if any."""
    current: type[BaseModel] | None = model
    info: FieldInfo | None = None
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return None
        info = current.model_fields[part]
        current = _nested_model(info.annotation)
    return info


def _not_finite(info: FieldInfo | None) -> str:
    """The message for ``inf`` or ``nan`` given to the float setting ``info``."""
    metadata: list[object] = list(info.metadata) if info is not None else []
    optional = False
    if info is not None:
        # An optional setting (X | None) keeps its Annotated metadata inside the union.
        for arg in typing.get_args(info.annotation):
            optional = optional or arg is type(None)
            metadata.extend(getattr(arg, "__metadata__", ()))
    expected = next(
        (item.expected for item in metadata if isinstance(item, _Finite)), "a finite number"
    )
    unset = ", or leave it unset for no limit" if optional else ""
    return f"is not a finite number; give {expected}{unset}"


def _may_echo(model: type[BaseModel], loc: tuple[int | str, ...]) -> bool:
    """Tell whether the rejected input at ``loc`` may be shown in an error message.

    Only plain values of known, non-secret fields are shown: a whole section (which
    may hold a URL) or an unknown location is never echoed.
    """
    current: type[BaseModel] | None = model
    annotation: object = None
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return False
        annotation = current.model_fields[part].annotation
        if _is_secret(annotation):
            return False
        current = _nested_model(annotation)
    return bool(loc) and current is None


def _already_reported(variable: str, reported: set[str]) -> bool:
    """Tell whether ``variable``, or a variable nested under it, was already reported."""
    upper = variable.upper()
    return any(name == upper or name.startswith(upper + NESTED_DELIMITER) for name in reported)


_SETTINGS_ERROR_FIELD = re.compile(r'field "(\w+)"')


def _variable(prefix: str, loc: tuple[int | str, ...]) -> str:
    return prefix + NESTED_DELIMITER.join(str(part).upper() for part in loc)


def _describe(model: type[BaseModel], prefix: str, error: Any) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    message: str = error["msg"].removeprefix("Value error, ")
    if error["type"] == "finite_number":
        message = _not_finite(_field_at(model, loc))
    name = _variable(prefix, loc) if loc else prefix.rstrip("_")
    field = ".".join(str(part) for part in loc)
    where = f"{name} (the {field!r} setting)" if loc else name
    if _may_echo(model, loc) and "input" in error:
        return f"{where}: {message} (got {error['input']!r})"
    return f"{where}: {message}"


def _unknown_variables(
    model: type[BaseModel], prefix: str, environ: typing.Mapping[str, str]
) -> list[str]:
    """List variables under ``prefix`` whose name matches no field (likely typos)."""
    problems: list[str] = []
    upper_prefix = prefix.upper()
    fields = {name.upper(): info for name, info in model.model_fields.items()}
    seen: set[str] = set()
    # At the top level, other BUTTRESS_* variables may belong to the application: only
    # a nested-looking name close to a section's (BUTTRESS_DATABSE__URL) is a typo.
    top_level = upper_prefix == ENV_PREFIX
    # BUTTRESS_DATABASE_URL for BUTTRESS_DATABASE__URL: the section's prefix with one "_".
    single = upper_prefix.removesuffix("_") if upper_prefix.endswith(NESTED_DELIMITER) else None
    for variable in environ:
        upper = variable.upper()
        if single is not None and upper.startswith(single) and not upper.startswith(upper_prefix):
            path = _setting_path(model, upper[len(single) :])
            if path is not None:
                problems.append(_one_underscore(variable, upper_prefix + path))
            continue
        if not upper.startswith(upper_prefix):
            continue
        head, nested_name, rest = upper[len(upper_prefix) :].partition(NESTED_DELIMITER)
        if head not in fields and (path := _setting_path(model, upper[len(upper_prefix) :])):
            problems.append(_one_underscore(variable, upper_prefix + path))
            continue
        if head in fields:
            if nested_name and _nested_model(fields[head].annotation) is None:
                problems.append(
                    f"{variable}: {upper_prefix}{head} is a single setting, not a group; "
                    f"set {upper_prefix}{head} itself"
                )
            continue
        if head in seen:
            continue
        suggestion = difflib.get_close_matches(head, list(fields), n=1)
        if top_level and not (nested_name and suggestion):
            continue
        seen.add(head)
        hint = (
            f"did you mean {upper_prefix}{suggestion[0]}{nested_name}{rest}?"
            if suggestion
            else f"known settings: {', '.join(sorted(fields))}"
        )
        problems.append(f"{variable}: no such setting; {hint}")
    for name, info in fields.items():
        nested = _nested_model(info.annotation)
        if nested is not None:
            problems.extend(
                _unknown_variables(nested, f"{upper_prefix}{name}{NESTED_DELIMITER}", environ)
            )
    return list(dict.fromkeys(problems))  # a section and its group may both see one variable


def _setting_path(model: type[BaseModel], text: str) -> str | None:
    """``text`` read as a setting of ``model`` whose parts are joined by "_" or "__".

    Returns:
        The setting's name with its parts joined by "__" (``RETRY__ATTEMPTS``), or
        None when ``text`` names no setting.
    """
    for name, info in model.model_fields.items():
        upper = name.upper()
        if text == upper:
            return upper
        nested = _nested_model(info.annotation)
        if nested is None:
            continue
        for separator in (NESTED_DELIMITER, "_"):
            if text.startswith(upper + separator):
                inner = _setting_path(nested, text[len(upper) + len(separator) :])
                if inner is not None:
                    return f"{upper}{NESTED_DELIMITER}{inner}"
    return None


def _one_underscore(variable: str, right: str) -> str:
    return (
        f"{variable}: is not read; Buttress joins the parts of a setting's name with two "
        f"underscores: set {right}"
    )


class _Settings(BaseSettings):
    """Common loading behaviour: environment, error translation and a safe log line."""

    def __init__(self, **values: Any) -> None:
        """Load from keyword arguments, then ``BUTTRESS_*`` variables, then defaults.

        Raises:
            ConfigurationError: A value is invalid, or a variable in this
                section names no setting. Every problem is listed.
        """
        with _construction() as outermost:
            prefix = str(self.model_config.get("env_prefix", ""))
            problems = _unknown_variables(type(self), prefix, os.environ) if outermost else []
            try:
                super().__init__(**values)
            except SettingsError as exc:
                # A section given as one variable holding JSON that does not parse.
                # Not chained: the parser's error carries the raw value.
                field = _SETTINGS_ERROR_FIELD.search(str(exc))
                name = _variable(prefix, (field[1],)) if field else f"a {prefix}* variable"
                problems.append(
                    f"{name}: is not valid JSON; set the section's settings one variable "
                    f"each ({name}__<SETTING>), or give a JSON object"
                )
            except ValidationError as exc:
                if not outermost:
                    raise  # pydantic merges it into the outer error, with its location
                reported = {problem.split(":", 1)[0].upper() for problem in problems}
                problems.extend(
                    _describe(type(self), prefix, error)
                    for error in exc.errors(include_url=False)
                    if not _already_reported(_variable(prefix, tuple(error["loc"])), reported)
                )
            if problems:
                # Not chained: pydantic's own message would repeat the rejected values,
                # and those may hold passwords.
                raise ConfigurationError.from_problems(
                    f"invalid {type(self).__name__}", problems
                ) from None
        if outermost:
            logger.debug("loaded %r", self)


class _Group(BaseModel):
    """A group of settings inside a section, such as ``retry`` in `ResilienceSettings`.

    It reads no environment of its own: its section does. Built directly, it
    reports invalid values as `ConfigurationError` the way sections do, each
    named by the variable that would set it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env_prefix: ClassVar[str]
    """Prefix of this group's variables, such as ``BUTTRESS_RESILIENCE__RETRY__``."""

    def __init__(self, **values: Any) -> None:
        """Build the group from keyword arguments and defaults.

        Raises:
            ConfigurationError: A value is invalid. Every problem is listed.
        """
        with _construction() as outermost:
            try:
                super().__init__(**values)
            except ValidationError as exc:
                if not outermost:
                    raise  # pydantic merges it into the section's error, with its location
                problems = [
                    _describe(type(self), self.env_prefix, error)
                    for error in exc.errors(include_url=False)
                ]
                # Not chained, like the sections: pydantic would repeat the rejected values.
                raise ConfigurationError.from_problems(
                    f"invalid {type(self).__name__}", problems
                ) from None


def _settings_config(section: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=f"{ENV_PREFIX}{section}{NESTED_DELIMITER}" if section else ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,
    )


# -----------------------------------------------------------------------------
# The models
# -----------------------------------------------------------------------------


class DatabaseSettings(_Settings):
    """How to reach the database, read from ``BUTTRESS_DATABASE__*``.

    Example:
        ```python
        from buttress.settings import DatabaseSettings

        settings = DatabaseSettings(url="postgresql+psycopg://app:s3cret@db:5432/app")
        assert "s3cret" not in repr(settings)
        assert settings.safe_url == "postgresql+psycopg://app:***@db:5432/app"
        ```
    """

    model_config = _settings_config("DATABASE")

    url: DatabaseUrl = SecretStr("sqlite+pysqlite:///:memory:")
    """SQLAlchemy URL (``BUTTRESS_DATABASE__URL``). SQLite in memory by default."""

    echo: bool = False
    """Log every SQL statement (through SQLAlchemy's ``sqlalchemy.engine`` logger)."""

    pool_size: PositiveInt = 5
    """Connections kept open in the pool."""

    max_overflow: Annotated[int, Field(ge=0)] = 10
    """Connections opened beyond ``pool_size`` under load, closed when returned."""

    pool_timeout: PositiveSeconds = 30.0
    """Seconds to wait for a free connection before giving up."""

    pool_recycle: PositiveSeconds | None = None
    """Seconds after which a connection is replaced (for servers that drop idle ones)."""

    pool_pre_ping: bool = True
    """Test each connection when it is taken from the pool, replacing dead ones."""

    statement_timeout: PositiveSeconds | None = None
    """Seconds a statement may run before the server cancels it (PostgreSQL)."""

    connect_timeout: PositiveSeconds = 10.0
    """Seconds to wait for a new connection to be established."""

    isolation_level: Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"] | None = None
    """Every transaction's isolation level; the database's default (PostgreSQL: READ
    COMMITTED) when unset. SQLite always runs SERIALIZABLE transactions."""

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, safe to log or show."""
        return mask_url(self.url.get_secret_value())


class RedisSettings(_Settings):
    """How to reach Redis, read from ``BUTTRESS_REDIS__*``.

    Example:
        ```python
        from buttress.settings import RedisSettings

        settings = RedisSettings(url="redis://:hunter2@cache:6379/1", socket_timeout=0.25)
        assert "hunter2" not in repr(settings)
        assert settings.safe_url == "redis://:***@cache:6379/1"
        ```
    """

    model_config = _settings_config("REDIS")

    url: RedisUrl = SecretStr("redis://127.0.0.1:6379/0")
    """Redis URL (``BUTTRESS_REDIS__URL``): ``redis://``, ``rediss://`` or ``unix://``."""

    socket_timeout: PositiveSeconds = 1.0
    """Seconds a command may take before it fails (and a cache read degrades to a miss)."""

    socket_connect_timeout: PositiveSeconds = 1.0
    """Seconds to wait for a connection to be established."""

    health_check_interval: Seconds = 30.0
    """Seconds between checks of idle connections; 0 turns the checks off."""

    max_connections: PositiveInt = 100
    """Size of each client's connection pool (``BUTTRESS_REDIS__MAX_CONNECTIONS``).

    A cache has one pool for its sync client and one for its asyncio client in
    each event loop, each holding up to this many connections. 100 is redis-py's
    own default: a pool is never unbounded.
    """

    pool_timeout: PositiveSeconds = 1.0
    """Seconds a command waits for a free pooled connection when every one is busy.

    Waiting is back-pressure, not an outage: only when the wait runs out does the
    call fail, and a cache read degrade to a miss (``BUTTRESS_REDIS__POOL_TIMEOUT``).
    """

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, safe to log or show."""
        return mask_url(self.url.get_secret_value())


class CacheSettings(_Settings):
    """Defaults for `buttress.caching`, read from ``BUTTRESS_CACHE__*``."""

    model_config = _settings_config("CACHE")

    backend: Literal["memory", "redis", "tiered"] = "memory"
    """Where cached values live: this process, Redis, or both (memory in front of Redis)."""

    maxsize: PositiveInt = 1024
    """Entries kept in memory before the least recently used is evicted."""

    ttl: PositiveSeconds | None = None
    """Seconds an entry lives; forever (until evicted or invalidated) when unset."""

    ttl_jitter: Fraction = 0.0
    """Fraction of ``ttl`` added at random, so entries written together expire apart."""

    local_ttl: PositiveSeconds = 5.0
    """Backstop lifetime, in seconds, of the in-memory copy in a tiered cache."""

    namespace: Annotated[str, Field(min_length=1, pattern=r"^[\w.-]+$")] = "buttress"
    """Prefix of every Redis key, so several applications can share one server."""

    version: Annotated[str, Field(min_length=1, pattern=r"^[\w.-]+$")] = "1"
    """Part of every Redis key; change it to drop all entries written by older code."""

    serializer: Literal["json", "pickle"] = "json"
    """How values are stored in Redis. Pickle needs ``signing_key``."""

    signing_key: SecretStr | None = None
    """Key that signs pickled values (at least 32 characters); required with pickle."""

    @field_validator("signing_key")
    @classmethod
    def _signing_key_for_pickle(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if info.data.get("serializer") == "pickle":
            if value is None:
                raise ValueError(
                    "is required when serializer is 'pickle': unsigned pickles from a shared "
                    "store can run arbitrary code; set a random key of at least 32 characters"
                )
            if len(value.get_secret_value()) < 32:  # noqa: PLR2004 - documented minimum
                raise ValueError("is too short; use a random key of at least 32 characters")
        return value


class RetrySettings(_Group):
    """Defaults for `buttress.resilience.retry`.

    `ResilienceSettings` reads them from ``BUTTRESS_RESILIENCE__RETRY__*``.
    """

    env_prefix: ClassVar[str] = f"{ENV_PREFIX}RESILIENCE{NESTED_DELIMITER}RETRY{NESTED_DELIMITER}"

    attempts: PositiveInt = 3
    """Calls made in all, the first included."""

    wait_initial: Seconds = 0.05
    """Seconds before the first retry; the wait doubles after each failure."""

    wait_max: Seconds = 5.0
    """Upper bound on one wait, in seconds."""

    wait_jitter: Seconds = 0.05
    """Up to this many seconds added at random to each wait."""

    deadline: PositiveSeconds | None = None
    """Seconds the whole call may take, waits included; unbounded when unset."""

    @field_validator("wait_max")
    @classmethod
    def _max_not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("wait_initial")
        if initial is not None and value < initial:
            raise ValueError(f"must not be below wait_initial ({initial})")
        return value


class BreakerSettings(_Group):
    """Defaults for `buttress.resilience.CircuitBreaker`.

    `ResilienceSettings` reads them from ``BUTTRESS_RESILIENCE__BREAKER__*``.
    """

    env_prefix: ClassVar[str] = f"{ENV_PREFIX}RESILIENCE{NESTED_DELIMITER}BREAKER{NESTED_DELIMITER}"

    fail_max: PositiveInt = 5
    """Consecutive failures that open the circuit."""

    reset_timeout: PositiveSeconds = 30.0
    """Seconds the circuit stays open before trial calls are let through."""

    half_open_max_calls: PositiveInt = 1
    """Trial calls let through at once while the circuit is half-open."""

    probe_lease: PositiveSeconds = 30.0
    """Seconds after which a trial still running may have its permit taken over."""


class ResilienceSettings(_Settings):
    """Defaults for `buttress.resilience`, read from ``BUTTRESS_RESILIENCE__*``.

    Example:
        ```python
        import os
        from buttress.settings import ResilienceSettings

        os.environ["BUTTRESS_RESILIENCE__RETRY__ATTEMPTS"] = "5"
        try:
            assert ResilienceSettings().retry.attempts == 5
        finally:
            del os.environ["BUTTRESS_RESILIENCE__RETRY__ATTEMPTS"]
        ```
    """

    model_config = _settings_config("RESILIENCE")

    retry: RetrySettings = RetrySettings()
    """Retry defaults (``BUTTRESS_RESILIENCE__RETRY__*``)."""

    breaker: BreakerSettings = BreakerSettings()
    """Circuit-breaker defaults (``BUTTRESS_RESILIENCE__BREAKER__*``)."""


class ButtressSettings(_Settings):
    """Every block's settings at once, read from ``BUTTRESS_*``.

    Example:
        ```python
        from buttress.settings import ButtressSettings

        settings = ButtressSettings(cache={"backend": "tiered", "ttl": 60})
        assert settings.cache.ttl == 60
        assert settings.database.pool_size == 5
        ```
    """

    model_config = _settings_config("")

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    """Database settings (``BUTTRESS_DATABASE__*``)."""

    redis: RedisSettings = Field(default_factory=RedisSettings)
    """Redis settings (``BUTTRESS_REDIS__*``)."""

    cache: CacheSettings = Field(default_factory=CacheSettings)
    """Cache settings (``BUTTRESS_CACHE__*``)."""

    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    """Resilience settings (``BUTTRESS_RESILIENCE__*``)."""
