"""`check` finds each wiring problem before the first resolve, and passes shipped containers."""

from __future__ import annotations

import pytest
from dependency_injector import containers, providers
from pydantic_settings import BaseSettings

from buttress.di import PersistenceContainer, check
from buttress.errors import ConfigurationError


class Mailer:
    def __init__(self, host: str, port: int, *, tls: bool = True) -> None:
        self.host, self.port, self.tls = host, port, tls


class Service:
    def __init__(self, unit_of_work: object) -> None:
        self.unit_of_work = unit_of_work


class AppSettings(BaseSettings):
    model_config = {"env_prefix": "CHECK_TEST_"}
    api_key: str


def problems_of(container: containers.Container) -> list[str]:
    with pytest.raises(ConfigurationError) as raised:
        check(container)
    return list(raised.value.problems)


def test_the_shipped_containers_pass():
    check(PersistenceContainer())


def test_a_provider_missing_an_argument_is_named_with_the_argument():
    class App(containers.DeclarativeContainer):
        mailer = providers.Singleton(Mailer, "smtp.example.com")

    [problem] = problems_of(App())
    assert problem.startswith("mailer calls Mailer without port")


def test_arguments_given_by_name_or_position_or_defaulted_pass():
    class App(containers.DeclarativeContainer):
        by_name = providers.Factory(Mailer, host="h", port=25)
        by_position = providers.Factory(Mailer, "h", 25)

    check(App())


def test_a_dependency_nobody_provides_is_named():
    class App(containers.DeclarativeContainer):
        mailer = providers.Dependency(instance_of=Mailer)

    [problem] = problems_of(App())
    assert "mailer is a dependency nobody provides" in problem


def test_missing_settings_are_found_before_the_first_request(monkeypatch):
    monkeypatch.delenv("CHECK_TEST_API_KEY", raising=False)

    class App(containers.DeclarativeContainer):
        settings = providers.Singleton(AppSettings)

    [problem] = problems_of(App())
    assert problem.startswith("settings cannot read its settings")
    assert "api_key" in problem
    monkeypatch.setenv("CHECK_TEST_API_KEY", "k")
    check(App())


def test_a_unit_of_work_held_by_a_singleton_is_refused():
    class App(containers.DeclarativeContainer):
        persistence = providers.Container(PersistenceContainer)
        service = providers.Singleton(Service, unit_of_work=persistence.unit_of_work)
        helper = providers.Factory(Service, unit_of_work=persistence.unit_of_work)
        held_through_a_factory = providers.Singleton(Service, unit_of_work=helper)
        fine = providers.Singleton(Service, unit_of_work=persistence.unit_of_work.provider)

    problems = problems_of(App())
    assert len(problems) == 2
    assert problems[0].startswith("service is built once but holds persistence.unit_of_work")
    assert problems[1].startswith("held_through_a_factory is built once but holds")


def test_every_problem_is_listed_at_once():
    class App(containers.DeclarativeContainer):
        mailer = providers.Singleton(Mailer)
        other = providers.Dependency()

    problems = problems_of(App())
    assert len(problems) == 2
    assert "without host, port" in problems[0]


def test_an_override_is_checked_instead_of_the_original():
    class App(containers.DeclarativeContainer):
        mailer = providers.Singleton(Mailer)

    app = App()
    app.mailer.override(providers.Singleton(Mailer, "h", 25))
    check(app)
