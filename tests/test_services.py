"""The suite's services: reachable through Buttress's own settings, or skipped/failed clearly."""

from __future__ import annotations

import pytest
import redis
import sqlalchemy as sa

from buttress.settings import DatabaseSettings, RedisSettings
from service_check import HOW_TO_START, require_service


def test_an_unreachable_service_skips_with_how_to_start_it() -> None:
    with pytest.raises(pytest.skip.Exception, match="pg_ctlcluster"):
        require_service("postgres", is_reachable=False, ci=False)


def test_an_unreachable_service_fails_in_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_service("redis", is_reachable=False, ci=True)
    assert "redis-server" in HOW_TO_START["redis"]


def test_a_reachable_service_neither_skips_nor_fails() -> None:
    require_service("postgres", is_reachable=True, ci=True)


def test_postgres_answers_through_database_settings(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUTTRESS_DATABASE__URL", postgres_url)
    monkeypatch.setenv("BUTTRESS_DATABASE__STATEMENT_TIMEOUT", "2.5")
    settings = DatabaseSettings()
    engine = sa.create_engine(settings.url.get_secret_value(), pool_pre_ping=settings.pool_pre_ping)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_redis_answers_through_redis_settings(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUTTRESS_REDIS__URL", redis_url)
    settings = RedisSettings()
    client = redis.Redis.from_url(
        settings.url.get_secret_value(), socket_timeout=settings.socket_timeout
    )
    try:
        assert client.ping() is True
    finally:
        client.close()
