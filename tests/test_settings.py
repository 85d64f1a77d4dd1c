"""Settings load from BUTTRESS_* variables, name each bad variable and never leak secrets."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import re
import types
import typing
from typing import Annotated

import pytest
import redis
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from buttress import settings as settings_module
from buttress.errors import ConfigurationError
from buttress.settings import (
    BreakerSettings,
    ButtressSettings,
    CacheSettings,
    DatabaseSettings,
    RedisSettings,
    ResilienceSettings,
    RetrySettings,
    mask_url,
)

PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BUTTRESS_") and not name.upper().startswith("BUTTRESS_TEST_"):
            monkeypatch.delenv(name)


def test_defaults_need_no_environment() -> None:
    settings = ButtressSettings()
    assert settings.database.url.get_secret_value() == "sqlite+pysqlite:///:memory:"
    assert settings.redis.url.get_secret_value() == "redis://127.0.0.1:6379/0"
    assert settings.cache.backend == "memory"
    assert settings.resilience.retry.attempts == 3
    assert settings.resilience.breaker.fail_max == 5


def test_each_section_loads_from_its_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTRESS_DATABASE__URL", "postgresql+psycopg://app@db:5432/app")
    monkeypatch.setenv("BUTTRESS_DATABASE__POOL_SIZE", "12")
    monkeypatch.setenv("BUTTRESS_DATABASE__STATEMENT_TIMEOUT", "2.5")
    monkeypatch.setenv("BUTTRESS_REDIS__SOCKET_TIMEOUT", "0.25")
    monkeypatch.setenv("BUTTRESS_CACHE__BACKEND", "tiered")
    monkeypatch.setenv("BUTTRESS_RESILIENCE__RETRY__ATTEMPTS", "5")
    monkeypatch.setenv("BUTTRESS_RESILIENCE__BREAKER__RESET_TIMEOUT", "9")

    for settings in (ButtressSettings(), None):
        database = settings.database if settings else DatabaseSettings()
        assert database.pool_size == 12
        assert database.statement_timeout == 2.5
        assert database.safe_url == "postgresql+psycopg://app@db:5432/app"
        assert (settings.redis if settings else RedisSettings()).socket_timeout == 0.25
        assert (settings.cache if settings else CacheSettings()).backend == "tiered"
        resilience = settings.resilience if settings else ResilienceSettings()
        assert resilience.retry.attempts == 5
        assert resilience.breaker.reset_timeout == 9.0


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTRESS_DATABASE__POOL_SIZE", "12")
    assert DatabaseSettings(pool_size=3).pool_size == 3


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BUTTRESS_DATABASE__POOL_SIZE", "-1", "greater than 0"),
        ("BUTTRESS_DATABASE__POOL_SIZE", "many", "valid integer"),
        ("BUTTRESS_DATABASE__URL", "not a url", "is not a database URL"),
        ("BUTTRESS_DATABASE__URL", "postgresql://app@db:port/app", "port that is not a number"),
        ("BUTTRESS_REDIS__URL", "http://cache:6379", "is not a Redis URL"),
        ("BUTTRESS_REDIS__URL", "redis://cache:6379/zero", "database that is not a number"),
        ("BUTTRESS_REDIS__URL", "redis://cache:port", "is not a Redis URL"),
        ("BUTTRESS_CACHE__BACKEND", "disk", "'memory', 'redis' or 'tiered'"),
        ("BUTTRESS_CACHE__NAMESPACE", "has spaces", "should match pattern"),
        ("BUTTRESS_CACHE__TTL_JITTER", "1.5", "less than 1"),
        ("BUTTRESS_RESILIENCE__RETRY__ATTEMPTS", "0", "greater than 0"),
        ("BUTTRESS_RESILIENCE__BREAKER__RESET_TIMEOUT", "-5", "greater than 0"),
    ],
)
def test_an_invalid_variable_is_named_in_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        ButtressSettings()
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith(f"{variable} (the ")
    assert expected in problem
    assert isinstance(caught.value, ValueError)


def test_the_issue_example_pool_size_minus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTRESS_DATABASE__POOL_SIZE", "-1")
    with pytest.raises(ConfigurationError, match="BUTTRESS_DATABASE__POOL_SIZE"):
        DatabaseSettings()


def test_every_problem_is_listed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTRESS_DATABASE__POOL_SIZE", "-1")
    monkeypatch.setenv("BUTTRESS_REDIS__SOCKET_TIMEOUT", "0")
    monkeypatch.setenv("BUTTRESS_CACHE__MAXSIZE", "none")
    with pytest.raises(ConfigurationError) as caught:
        ButtressSettings()
    named = sorted(problem.split(" ", 1)[0] for problem in caught.value.problems)
    assert named == [
        "BUTTRESS_CACHE__MAXSIZE",
        "BUTTRESS_DATABASE__POOL_SIZE",
        "BUTTRESS_REDIS__SOCKET_TIMEOUT",
    ]


def test_a_misspelt_variable_is_reported_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUTTRESS_DATABASE__POOLSIZE", "3")
    monkeypatch.setenv("BUTTRESS_RESILIENCE__RETRY__ATEMPTS", "3")
    with pytest.raises(ConfigurationError) as caught:
        ButtressSettings()
    assert sorted(caught.value.problems) == [
        "BUTTRESS_DATABASE__POOLSIZE: no such setting; did you mean BUTTRESS_DATABASE__POOL_SIZE?",
        (
            "BUTTRESS_RESILIENCE__RETRY__ATEMPTS: no such setting; "
            "did you mean BUTTRESS_RESILIENCE__RETRY__ATTEMPTS?"
        ),
    ]
    with pytest.raises(ConfigurationError, match="POOLSIZE: no such setting"):
        DatabaseSettings()


@pytest.mark.parametrize(
    ("variable", "right", "model"),
    [
        ("BUTTRESS_DATABASE_URL", "BUTTRESS_DATABASE__URL", DatabaseSettings),
        ("BUTTRESS_DATABASE_URL", "BUTTRESS_DATABASE__URL", ButtressSettings),
        ("buttress_database_pool_size", "BUTTRESS_DATABASE__POOL_SIZE", DatabaseSettings),
        ("BUTTRESS_REDIS_URL", "BUTTRESS_REDIS__URL", RedisSettings),
        ("BUTTRESS_CACHE_TTL", "BUTTRESS_CACHE__TTL", CacheSettings),
        (
            "BUTTRESS_RESILIENCE_RETRY_ATTEMPTS",
            "BUTTRESS_RESILIENCE__RETRY__ATTEMPTS",
            ResilienceSettings,
        ),
        (
            "BUTTRESS_RESILIENCE__BREAKER_FAIL_MAX",
            "BUTTRESS_RESILIENCE__BREAKER__FAIL_MAX",
            ButtressSettings,
        ),
    ],
)
def test_a_setting_spelt_with_one_underscore_is_refused_naming_the_right_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, right: str, model: type[typing.Any]
) -> None:
    monkeypatch.setenv(variable, "5")
    with pytest.raises(ConfigurationError) as caught:
        model()
    expected = (
        f"{variable}: is not read; Buttress joins the parts of a setting's name with two "
        f"underscores: set {right}"
    )
    assert list(caught.value.problems) == [expected]


def test_a_variable_of_the_application_that_only_starts_like_a_section_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUTTRESS_DATABASE_OWNER", "ops")  # no such setting: the app's own
    assert DatabaseSettings().pool_size == 5


@pytest.mark.parametrize("scheme", ["postgres", "postgres+psycopg", "postgres+asyncpg"])
def test_a_postgres_scheme_is_refused_with_the_spelling_sqlalchemy_takes(scheme: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        DatabaseSettings(url=f"{scheme}://app:s3cret@db:5432/app")
    driver = scheme.partition("+")[2] or "psycopg"
    (problem,) = caught.value.problems
    assert f"write postgresql+{driver}:// instead" in problem
    assert "s3cret" not in problem


def test_other_buttress_variables_of_the_application_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUTTRESS_FEATURE_FLAG", "on")
    assert ButtressSettings().cache.backend == "memory"


def test_an_unknown_keyword_argument_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="BUTTRESS_DATABASE__POOLSIZE"):
        DatabaseSettings(poolsize=3)


def test_cross_field_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="BUTTRESS_CACHE__SIGNING_KEY .*required"):
        CacheSettings(serializer="pickle")
    with pytest.raises(ConfigurationError, match="at least 32 characters"):
        CacheSettings(serializer="pickle", signing_key="short")
    assert CacheSettings(serializer="pickle", signing_key="k" * 32).signing_key is not None
    with pytest.raises(ConfigurationError, match="RETRY__WAIT_MAX .*below wait_initial"):
        ResilienceSettings(retry={"wait_initial": 2.0, "wait_max": 1.0})


SECRET_URLS = [
    ("BUTTRESS_DATABASE__URL", f"postgresql+psycopg://app:{PASSWORD}@db:5432/app"),
    ("BUTTRESS_REDIS__URL", f"redis://:{PASSWORD}@cache:6379/0"),
]


@pytest.mark.parametrize(("variable", "url"), SECRET_URLS)
def test_a_password_never_appears_in_repr_str_dumps_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    with caplog.at_level(logging.DEBUG, logger="buttress"):
        settings = ButtressSettings()
    assert caplog.records, "loading settings logs what was loaded"
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(settings.model_dump()),
        settings.database.safe_url,
        settings.redis.safe_url,
        caplog.text,
    ]
    for text in shown:
        assert PASSWORD not in text
    assert "***" in settings.database.safe_url + settings.redis.safe_url
    # The real value is there for whoever asks for it explicitly.
    section = settings.database if "DATABASE" in variable else settings.redis
    assert section.url.get_secret_value() == url


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("BUTTRESS_DATABASE__URL", f"postgresql://app:{PASSWORD}@db:port/app"),
        ("BUTTRESS_DATABASE__URL", f"{PASSWORD}"),
        ("BUTTRESS_REDIS__URL", f"redis://:{PASSWORD}@cache:6379/db"),
    ],
)
def test_a_rejected_url_is_not_echoed_in_the_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    with pytest.raises(ConfigurationError) as caught:
        ButtressSettings()
    assert variable in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_mask_url() -> None:
    assert mask_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert mask_url("redis://:p@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"


# Our URL check runs without importing SQLAlchemy; it must agree with make_url().
url_parts = st.text(alphabet="abcxyz019_-.", min_size=1, max_size=8)


@given(
    dialect=st.sampled_from(["sqlite", "postgresql", "postgresql+psycopg", "mysql+pymysql"]),
    user=st.none() | url_parts,
    password=st.none() | url_parts,
    host=st.none() | url_parts,
    port=st.none() | st.integers(1, 65535),
    database=st.none() | url_parts,
)
def test_accepted_database_urls_parse_in_sqlalchemy(
    dialect: str,
    user: str | None,
    password: str | None,
    host: str | None,
    port: int | None,
    database: str | None,
) -> None:
    auth = f"{user or ''}:{password}@" if password else (f"{user}@" if user else "")
    address = f"{host or ''}:{port}" if port else (host or "")
    url = f"{dialect}://{auth}{address}" + (f"/{database}" if database else "")
    settings = DatabaseSettings(url=url)
    parsed = sa.make_url(settings.url.get_secret_value())
    assert parsed.drivername == dialect
    assert parsed.port == port
    assert parsed.password == password
    assert parsed.render_as_string(hide_password=True) == settings.safe_url


@pytest.mark.parametrize("url", ["not a url", "://db", "postgresql://h:x/db", "pg:/h/db"])
def test_rejected_database_urls_are_rejected_by_sqlalchemy_too(url: str) -> None:
    with pytest.raises(ConfigurationError):
        DatabaseSettings(url=url)
    with pytest.raises(Exception):  # noqa: B017 - any parse failure will do
        sa.make_url(url).get_backend_name()  # port and dialect problems surface on use


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@cache:6380/2",
        "unix:///tmp/redis.sock",
        "redis://h",
    ],
)
def test_accepted_redis_urls_parse_in_redis_py(url: str) -> None:
    settings = RedisSettings(url=url)
    pool = redis.ConnectionPool.from_url(settings.url.get_secret_value())
    pool.disconnect()


def test_secret_values_can_be_passed_as_secret_str() -> None:
    url = f"postgresql://app:{PASSWORD}@db/app"
    assert DatabaseSettings(url=SecretStr(url)).url.get_secret_value() == url


@pytest.mark.parametrize(
    "section",
    [
        f"postgresql://app:{PASSWORD}@db/app",
        [f"postgresql://app:{PASSWORD}@db/app"],
        42,
    ],
)
def test_a_whole_section_of_the_wrong_type_is_not_echoed(section: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ButtressSettings(database=section)
    assert caught.value.problems[0].startswith("BUTTRESS_DATABASE (the 'database' setting)")
    assert PASSWORD not in str(caught.value)
    assert "(got" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("BUTTRESS_RESILIENCE__RETRY", "not json", "BUTTRESS_RESILIENCE"),
        ("BUTTRESS_DATABASE", f'{{"url": "postgresql://u:{PASSWORD}@h/db"', "BUTTRESS_DATABASE"),
    ],
)
def test_a_section_variable_with_broken_json_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        ButtressSettings()
    assert caught.value.problems[0].startswith(f"{named}: is not valid JSON")
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_section_variable_with_a_json_object_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTRESS_RESILIENCE__RETRY", '{"attempts": 7}')
    assert ButtressSettings().resilience.retry.attempts == 7


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        (
            "BUTTRESS_DATABASE__URL__HOST",
            (
                "BUTTRESS_DATABASE__URL__HOST: BUTTRESS_DATABASE__URL is a single setting, not a "
                "group; set BUTTRESS_DATABASE__URL itself"
            ),
        ),
        (
            "BUTTRESS_DATABSE__POOL_SIZE",
            (
                "BUTTRESS_DATABSE__POOL_SIZE: no such setting; did you mean "
                "BUTTRESS_DATABASE__POOL_SIZE?"
            ),
        ),
    ],
)
def test_misplaced_variables_are_reported_once_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, variable: str, problem: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigurationError) as caught:
        ButtressSettings()
    assert caught.value.problems == (problem,)


def test_a_password_in_the_query_is_masked_too() -> None:
    url = f"unix:///run/redis.sock?db=1&password={PASSWORD}&x=1"
    settings = RedisSettings(url=url)
    assert settings.safe_url == "unix:///run/redis.sock?db=1&password=***&x=1"
    assert mask_url(f"postgresql://u@h/db?sslmode=require&PASSWORD={PASSWORD}") == (
        "postgresql://u@h/db?sslmode=require&PASSWORD=***"
    )


# -- finite numbers ---------------------------------------------------------------


UNIONS = (typing.Union, types.UnionType)


def _float_field(annotation: object) -> tuple[bool, bool]:
    """Tell whether a field's annotation is a float, and whether it may be None."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in UNIONS else ()
    members = [arg for arg in args if arg is not type(None)] if args else [annotation]
    bare = [typing.get_args(m)[0] if typing.get_origin(m) is Annotated else m for m in members]
    return bare == [float], len(members) < len(args)


@dataclasses.dataclass(frozen=True)
class FloatSetting:
    """A float field somewhere under `ButtressSettings`, with the models on its path."""

    path: tuple[str, ...]  # field names from ButtressSettings down to the float
    models: tuple[type[BaseModel], ...]  # ButtressSettings, then each nested model
    optional: bool

    @property
    def variable(self) -> str:
        return "BUTTRESS_" + "__".join(part.upper() for part in self.path)

    def constructions(
        self, value: object
    ) -> list[tuple[tuple[str, ...], typing.Callable[[], BaseModel]]]:
        """Ways to build each model on the path with ``value`` as a keyword argument.

        Returns:
            For each model, the path from it down to the float and a call building it.
        """
        built: list[tuple[tuple[str, ...], typing.Callable[[], BaseModel]]] = []
        for depth, model in enumerate(self.models):
            head, *inner = self.path[depth:]
            argument: object = value
            for part in reversed(inner):
                argument = {part: argument}
            built.append((self.path[depth:], functools.partial(model, **{head: argument})))
        return built

    def __str__(self) -> str:
        return ".".join(self.path)


def _float_settings(
    model: type[BaseModel], path: tuple[str, ...], models: tuple[type[BaseModel], ...]
) -> typing.Iterator[FloatSetting]:
    models = (*models, model)
    for name, info in model.model_fields.items():
        is_float, optional = _float_field(info.annotation)
        if is_float:
            yield FloatSetting((*path, name), models, optional)
        nested = typing.get_args(info.annotation) or (info.annotation,)
        for candidate in nested:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from _float_settings(candidate, (*path, name), models)


FLOAT_SETTINGS = list(_float_settings(ButtressSettings, (), ()))
NOT_FINITE = ["inf", "-inf", "nan", "+Infinity", "NaN"]
NOT_SECONDS = {"cache.ttl_jitter"}  # a fraction of the ttl


def test_float_settings_are_discovered_in_every_settings_class() -> None:
    # The walk starts at ButtressSettings: a settings class it cannot reach is not covered.
    reached = {model for setting in FLOAT_SETTINGS for model in setting.models}
    public_models = {
        value
        for name in settings_module.__all__
        if isinstance(value := getattr(settings_module, name), type)
        and issubclass(value, BaseModel)
    }
    assert public_models == reached
    named = {str(setting) for setting in FLOAT_SETTINGS}
    assert {"redis.socket_timeout", "redis.pool_timeout", "resilience.retry.deadline"} <= named
    assert {"cache.ttl_jitter", "database.statement_timeout"} <= named


def _assert_names_a_non_finite_number(error: ConfigurationError, setting: FloatSetting) -> None:
    assert len(error.problems) == 1, error.problems
    problem = error.problems[0]
    # Named by its variable and by its field, seen from the model that was built.
    assert re.match(
        rf"{setting.variable} \(the '([\w.]+\.)?{setting.path[-1]}' setting\): ", problem
    )
    assert "is not a finite number; give a finite number" in problem
    assert ("of seconds" in problem) is (str(setting) not in NOT_SECONDS), problem
    assert ("or leave it unset for no limit" in problem) is setting.optional, problem


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize("setting", FLOAT_SETTINGS, ids=str)
def test_a_non_finite_float_from_the_environment_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, setting: FloatSetting, value: str
) -> None:
    monkeypatch.setenv(setting.variable, value)
    for model in setting.models[:2]:  # the whole settings and the section that reads the env
        with pytest.raises(ConfigurationError) as caught:
            model()
        _assert_names_a_non_finite_number(caught.value, setting)
        assert f"(got {value!r})" in caught.value.problems[0]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "inf", "nan"], ids=repr)
@pytest.mark.parametrize("setting", FLOAT_SETTINGS, ids=str)
def test_a_non_finite_float_keyword_argument_is_a_configuration_error(
    setting: FloatSetting, value: object
) -> None:
    for _, construct in setting.constructions(value):
        with pytest.raises(ConfigurationError) as caught:
            construct()
        _assert_names_a_non_finite_number(caught.value, setting)


def _read(settings: object, path: tuple[str, ...]) -> object:
    for part in path:
        settings = getattr(settings, part)
    return settings


@pytest.mark.parametrize("setting", FLOAT_SETTINGS, ids=str)
def test_a_finite_float_still_passes(
    monkeypatch: pytest.MonkeyPatch, setting: FloatSetting
) -> None:
    for path, construct in setting.constructions(0.5):
        assert _read(construct(), path) == 0.5
    monkeypatch.setenv(setting.variable, "0.25")
    for model in setting.models[:2]:
        assert _read(model(), setting.path[setting.models.index(model) :]) == 0.25


def test_optional_durations_still_mean_no_limit_when_unset() -> None:
    optional = {str(setting) for setting in FLOAT_SETTINGS if setting.optional}
    assert optional == {
        "database.pool_recycle",
        "database.statement_timeout",
        "cache.ttl",
        "resilience.retry.deadline",
    }
    settings = ButtressSettings()
    assert settings.database.pool_recycle is None
    assert settings.cache.ttl is None
    assert settings.resilience.retry.deadline is None
    assert ResilienceSettings(retry={"deadline": None}).retry.deadline is None


def test_a_group_built_directly_reports_every_problem_as_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetrySettings(attempts=0, wait_initial=math.nan, colour="red")
    assert sorted(problem.split(" ", 1)[0] for problem in caught.value.problems) == [
        "BUTTRESS_RESILIENCE__RETRY__ATTEMPTS",
        "BUTTRESS_RESILIENCE__RETRY__COLOUR",
        "BUTTRESS_RESILIENCE__RETRY__WAIT_INITIAL",
    ]
    assert caught.value.__cause__ is None
    with pytest.raises(ConfigurationError, match="BREAKER__RESET_TIMEOUT .*finite number"):
        BreakerSettings(reset_timeout=math.inf)


# -- the Redis connection pool ----------------------------------------------------


def test_redis_pool_defaults_match_redis_py() -> None:
    settings = RedisSettings()
    assert settings.max_connections == 100
    assert settings.pool_timeout == 1.0
    pool = redis.ConnectionPool.from_url(settings.url.get_secret_value())
    assert pool.max_connections == settings.max_connections
    pool.disconnect()


def test_redis_pool_settings_load_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTRESS_REDIS__MAX_CONNECTIONS", "20")
    monkeypatch.setenv("BUTTRESS_REDIS__POOL_TIMEOUT", "0.5")
    for settings in (RedisSettings(), ButtressSettings().redis):
        assert settings.max_connections == 20
        assert settings.pool_timeout == 0.5
    assert RedisSettings(max_connections=7, pool_timeout=2).max_connections == 7


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BUTTRESS_REDIS__MAX_CONNECTIONS", "0", "greater than 0"),
        ("BUTTRESS_REDIS__MAX_CONNECTIONS", "", "valid integer"),
        ("BUTTRESS_REDIS__POOL_TIMEOUT", "0", "greater than 0"),
        ("BUTTRESS_REDIS__POOL_TIMEOUT", "inf", "give a finite number of seconds"),
    ],
)
def test_bad_redis_pool_settings_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        RedisSettings()
    assert caught.value.problems[0].startswith(f"{variable} (the ")
    assert expected in caught.value.problems[0]
