"""Settings load from BUTTRESS_* variables, name each bad variable and never leak secrets."""

from __future__ import annotations

import logging
import os

import pytest
import redis
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from buttress.errors import ConfigurationError
from buttress.settings import (
    ButtressSettings,
    CacheSettings,
    DatabaseSettings,
    RedisSettings,
    ResilienceSettings,
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
