"""Where settings come from besides plain variables: secrets in files, librdkafka pass-through.

- ``<NAME>_FILE``: the setting is the file's content, read once when the settings
  load, so a container runtime can mount secrets as files (``SECRET_FILES``).
- ``KAFKA_CONFIG_<PROPERTY>``: any librdkafka property the settings do not name,
  passed to every Kafka client as it is (``kafka_property`` spells the mapping).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource


class ConfigurationError(Exception):
    """A setting from the environment is missing or malformed."""


DEFAULT_DATABASE_URL = "postgresql://allocation:allocation@127.0.0.1:5432/allocation"


# <NAME>_FILE variables: the setting is the file's content (one trailing newline dropped),
# read once when the settings load, so secrets can be mounted as files by a container runtime.
SECRET_FILES = {
    "KAFKA_SASL_PASSWORD_FILE": "kafka_sasl_password",
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": "schema_registry_basic_auth_user_info",
    "DATABASE_URL_FILE": "database_url",
    "DATABASE_PASSWORD_FILE": "database_url",  # only the password part of DATABASE_URL
    "MIGRATION_DATABASE_URL_FILE": "migration_database_url",
    "API_TOKEN_FILE": "api_token",
}

KAFKA_CONFIG_PREFIX = "KAFKA_CONFIG_"
# Properties the service sets itself: for its guarantees, or through a named setting.
RESERVED_KAFKA_PROPERTIES = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "security.protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.mechanisms": "KAFKA_SASL_MECHANISM",
    "sasl.username": "KAFKA_SASL_USERNAME",
    "sasl.password": "KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "KAFKA_SSL_CA_LOCATION",
    "group.id": "CONSUMER_GROUP",
    "enable.idempotence": "",
    "acks": "",
    "enable.auto.commit": "",
    "enable.auto.offset.store": "",
    "isolation.level": "",
}
_SECRET_PROPERTY = re.compile(r"password|secret|token|jaas|key\.pem")
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)[^@]*@")


def mask_password(url: str) -> str:
    """The URL with the password of its user info (``scheme://user:password@``) masked."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def masked_property(name: str, value: str) -> str:
    return "***" if _SECRET_PROPERTY.search(name) else value


def kafka_property(variable: str) -> str:
    """``KAFKA_CONFIG_SOCKET_KEEPALIVE_ENABLE`` -> ``socket.keepalive.enable``.

    librdkafka property names are lower case with dots and never an underscore,
    so the mapping is lower-case and ``_`` -> ``.``.
    """
    return variable.removeprefix(KAFKA_CONFIG_PREFIX).lower().replace("_", ".")


class FromFilesAndPassThrough(PydanticBaseSettingsSource):
    """``<NAME>_FILE`` secrets and ``KAFKA_CONFIG_<PROPERTY>`` librdkafka properties."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is done in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for variable, field in SECRET_FILES.items():
            path = os.environ.get(variable)
            if not path:
                continue
            plain = variable.removesuffix("_FILE")
            if plain in os.environ or field in values:
                taken = plain if plain in os.environ else "another *_FILE variable"
                raise ConfigurationError(f"{variable}: set either it or {taken}, not both")
            secret = _read_secret(variable, path)
            if variable == "DATABASE_PASSWORD_FILE":
                secret = _with_password(
                    os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), secret
                )
            values[field] = secret
        passed = {
            kafka_property(name): value
            for name, value in os.environ.items()
            if name.startswith(KAFKA_CONFIG_PREFIX) and len(name) > len(KAFKA_CONFIG_PREFIX)
        }
        if passed:
            values["kafka_config"] = passed
        return values


def _read_secret(variable: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{variable}: {path} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def _with_password(url: str, password: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not sep or not at:
        raise ConfigurationError("DATABASE_PASSWORD_FILE: DATABASE_URL names no user to give it to")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{quote(password, safe='')}@{hosts}"


def check_pass_through(properties: dict[str, str]) -> None:
    """Refuse a passed-through property that a named setting or the service's guarantees own."""
    for name in properties:
        if name in RESERVED_KAFKA_PROPERTIES:
            variable = KAFKA_CONFIG_PREFIX + name.upper().replace(".", "_")
            instead = RESERVED_KAFKA_PROPERTIES[name]
            why = f"use {instead} instead" if instead else "the service sets it itself"
            raise ValueError(f"{variable} ({name}) cannot be passed through: {why}")


def sqlalchemy_form(database_url: str) -> str:
    """A PostgreSQL URL with the driver SQLAlchemy should use spelled out.

    libpq's multi-host form (``@h1:5432,h2:5433/db``, a Patroni cluster) is one SQLAlchemy's
    URL parser rejects: it becomes ``@/db?host=h1:5432&host=h2:5433``, which psycopg2 gets
    back as libpq's lists, so ``target_session_attrs`` still picks the primary.
    """
    url = database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    if "," not in hosts:
        return url
    database, _, query = path.partition("?")
    params = "&".join([*(f"host={host}" for host in hosts.split(",")), *filter(None, [query])])
    return f"{scheme}://{credentials}{at}/{database}?{params}"
