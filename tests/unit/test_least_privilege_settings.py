"""MIGRATION_DATABASE_URL and API_TOKEN: how they load, fall back and never show."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from psycopg2 import errors

from allocation.adapters.faults import Kind, classify
from allocation.config import ConfigurationError, Settings, load_settings, settings_from
from allocation.entrypoints.cli import explain
from allocation.settings_sources import SECRET_FILES

SERVICE = "postgresql://allocation:service-pw@db:5432/allocation"
ROOT = Path(__file__).resolve().parents[2]
OWNER = "postgresql://allocation_owner:owner-s3cret-pw@db:5432/allocation?sslmode=require"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {name.upper() for name in Settings.model_fields} | set(SECRET_FILES)
    for name in os.environ:
        if name in names:
            monkeypatch.delenv(name)


def test_migrations_use_database_url_when_no_migration_url_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", SERVICE)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", "")  # as a compose file may say it
    settings = load_settings()
    assert settings.migration_database_url is None
    assert settings.migration_sqlalchemy_url == "postgresql+psycopg2://" + SERVICE[13:]


def test_migrations_use_the_owner_url_from_a_variable_or_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MIGRATION_DATABASE_URL", OWNER)
    assert load_settings().migration_sqlalchemy_url.startswith("postgresql+psycopg2://alloc")
    monkeypatch.delenv("MIGRATION_DATABASE_URL")
    (tmp_path / "owner").write_text(OWNER + "\n")
    monkeypatch.setenv("MIGRATION_DATABASE_URL_FILE", str(tmp_path / "owner"))
    assert load_settings().migration_database_url == OWNER


def test_a_migration_url_that_is_not_postgresql_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIGRATION_DATABASE_URL", "mysql://root:owner-s3cret-pw@db/x")
    with pytest.raises(ConfigurationError, match="MIGRATION_DATABASE_URL") as refused:
        load_settings()
    assert "owner-s3cret-pw" not in str(refused.value)


def test_the_api_token_from_a_file_and_neither_secret_shows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("api-s3cret-token\n")
    monkeypatch.setenv("API_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("MIGRATION_DATABASE_URL", OWNER)
    settings = load_settings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "api-s3cret-token"
    for shown in (repr(settings), str(settings)):
        assert "api-s3cret-token" not in shown
        assert "owner-s3cret-pw" not in shown
        assert "allocation_owner:***@db:5432" in shown


def test_no_api_token_by_default() -> None:
    assert settings_from().api_token is None


def test_a_refused_privilege_is_systemic_and_says_what_to_do() -> None:
    refused = errors.InsufficientPrivilege("permission denied for table products")
    fault = classify(refused)
    assert fault.kind is Kind.SYSTEMIC
    assert "MIGRATION_DATABASE_URL" in fault.reason
    assert "allocation db upgrade" in fault.reason


def test_the_cli_names_what_to_do_about_a_refused_privilege() -> None:
    refused = errors.InsufficientPrivilege("permission denied for schema public")
    said = explain(refused, settings_from())
    assert said.startswith("permission denied for schema public; ")
    assert "MIGRATION_DATABASE_URL" in said


def test_in_the_compose_file_only_the_deploy_step_has_the_owners_url() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    services = compose["services"]
    having = {
        name for name, s in services.items() if "MIGRATION_DATABASE_URL" in s.get("environment", {})
    }
    assert having == {"prepare"}
    owner = services["prepare"]["environment"]["MIGRATION_DATABASE_URL"]
    assert owner.startswith("postgresql://allocation_owner:")


@pytest.mark.parametrize("token", ["", "two words"])
def test_an_unusable_api_token_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("API_TOKEN", token)
    with pytest.raises(ConfigurationError, match=r"API_TOKEN: .*non-empty") as refused:
        load_settings()
    assert "two words" not in str(refused.value)
