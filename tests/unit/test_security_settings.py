"""Security settings: what reaches the Kafka and registry clients, and what never shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from allocation.adapters.kafka import consumer_config, producer_config
from allocation.adapters.security import (
    AccessDenied,
    is_refusal,
    kafka_client_security,
    raise_refusal,
    registry_client_config,
)
from allocation.config import ConfigurationError, Settings, load_settings
from allocation.entrypoints.cli import explain as _explain
from allocation.entrypoints.relay_policy import Delivery
from allocation.settings_sources import SECRET_FILES, kafka_property

SASL_PASSWORD = "kafka-s3cret-pw"
REGISTRY_USER_INFO = "allocation:registry-s3cret-pw"
DB_PASSWORD = "db-s3cret-pw"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the caller's environment reaches these tests."""
    names = {name.upper() for name in Settings.model_fields} | set(SECRET_FILES)
    for name in os.environ:
        if name in names or name.startswith("KAFKA_CONFIG"):
            monkeypatch.delenv(name)


def secure(**changes: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": "broker:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "allocation",
        "kafka_sasl_password": SASL_PASSWORD,
        "kafka_ssl_ca_location": "/etc/ca.pem",
        "schema_registry_url": "https://registry:8443/apis/ccompat/v7",
        "schema_registry_basic_auth_user_info": REGISTRY_USER_INFO,
        "schema_registry_ca_location": "/etc/ca.pem",
        "database_url": f"postgresql://allocation:{DB_PASSWORD}@db:5432/allocation"
        "?sslmode=verify-full&sslrootcert=/etc/ca.pem",
    }
    return Settings(**{**values, **changes})  # type: ignore[arg-type]


def without_callback(config: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in config.items() if k != "error_cb"}


class TestKafkaClientSecurity:
    def test_plaintext_by_default_and_nothing_else(self) -> None:
        assert without_callback(kafka_client_security(Settings())) == {
            "security.protocol": "PLAINTEXT"
        }

    def test_sasl_ssl_settings_become_librdkafka_properties(self) -> None:
        assert without_callback(kafka_client_security(secure())) == {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "allocation",
            "sasl.password": SASL_PASSWORD,
            "ssl.ca.location": "/etc/ca.pem",
        }

    def test_every_client_config_of_the_service_carries_them(self) -> None:
        settings = secure()
        for config in (producer_config(settings, "p"), consumer_config(settings, "g", "c")):
            assert config["security.protocol"] == "SASL_SSL"
            assert config["sasl.password"] == SASL_PASSWORD
            assert config["error_cb"] is raise_refusal

    def test_an_unknown_protocol_is_named(self) -> None:
        with pytest.raises(ValueError, match="SASL_SSL"):
            Settings(kafka_security_protocol="TLS")


class TestPassThrough:
    def test_mapping_is_lower_case_with_dots(self) -> None:
        assert kafka_property("KAFKA_CONFIG_SOCKET_KEEPALIVE_ENABLE") == "socket.keepalive.enable"

    def test_kafka_config_variables_reach_every_client(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KAFKA_CONFIG_SOCKET_KEEPALIVE_ENABLE", "true")
        monkeypatch.setenv("KAFKA_CONFIG_LINGER_MS", "20")
        settings = load_settings()
        assert settings.kafka_config == {"socket.keepalive.enable": "true", "linger.ms": "20"}
        assert producer_config(settings, "p")["linger.ms"] == "20"
        assert consumer_config(settings, "g", "c")["socket.keepalive.enable"] == "true"

    def test_a_property_of_a_named_setting_is_refused_with_the_setting_to_use(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KAFKA_CONFIG_SASL_PASSWORD", SASL_PASSWORD)
        with pytest.raises(ConfigurationError, match="use KAFKA_SASL_PASSWORD") as error:
            load_settings()
        assert SASL_PASSWORD not in str(error.value)

    def test_a_property_the_guarantees_depend_on_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KAFKA_CONFIG_ENABLE_AUTO_COMMIT", "true")
        with pytest.raises(ConfigurationError, match="KAFKA_CONFIG_ENABLE_AUTO_COMMIT"):
            load_settings()


class TestRegistryClientConfig:
    def test_plain_by_default(self) -> None:
        assert registry_client_config(Settings()) == {
            "url": "http://127.0.0.1:8081/apis/ccompat/v7",
            "timeout": 10,
        }

    def test_basic_auth_and_ca(self) -> None:
        config = registry_client_config(secure())
        assert config["basic.auth.user.info"] == REGISTRY_USER_INFO
        assert config["ssl.ca.location"] == "/etc/ca.pem"

    def test_user_info_without_a_colon_is_refused_without_echoing_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "justasecret")
        with pytest.raises(ConfigurationError, match="SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") as e:
            load_settings()
        assert "justasecret" not in str(e.value)


class TestSecretFiles:
    def test_a_password_file_is_read_once_without_its_newline(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        secret = tmp_path / "password"
        secret.write_text(SASL_PASSWORD + "\n")
        monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(secret))
        settings = load_settings()
        secret.write_text("changed later")
        assert settings.kafka_sasl_password is not None
        assert settings.kafka_sasl_password.get_secret_value() == SASL_PASSWORD

    def test_registry_user_info_from_a_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / "user-info").write_text(REGISTRY_USER_INFO)
        monkeypatch.setenv("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE", str(tmp_path / "user-info"))
        config = registry_client_config(load_settings())
        assert config["basic.auth.user.info"] == REGISTRY_USER_INFO

    def test_a_database_password_file_fills_the_url_and_keeps_its_tls_parameters(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / "db").write_text("p@ss/word\n")
        monkeypatch.setenv(
            "DATABASE_URL",
            "postgresql://allocation@db:5432/allocation?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "db"))
        settings = load_settings()
        assert settings.database_url == (
            "postgresql://allocation:p%40ss%2Fword@db:5432/allocation"
            "?sslmode=verify-full&sslrootcert=/ca.pem"
        )
        assert settings.sqlalchemy_url.endswith("?sslmode=verify-full&sslrootcert=/ca.pem")

    def test_a_database_url_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        url = f"postgresql://allocation:{DB_PASSWORD}@db/allocation?sslmode=verify-full"
        (tmp_path / "url").write_text(url)
        monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "url"))
        assert load_settings().database_url == url

    def test_a_variable_and_its_file_together_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / "password").write_text(SASL_PASSWORD)
        monkeypatch.setenv("KAFKA_SASL_PASSWORD", "other")
        monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "password"))
        with pytest.raises(ConfigurationError, match=r"KAFKA_SASL_PASSWORD_FILE.*not both"):
            load_settings()

    def test_a_missing_file_is_named(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "absent"))
        with pytest.raises(ConfigurationError, match="KAFKA_SASL_PASSWORD_FILE: cannot read"):
            load_settings()


class TestRedaction:
    def test_no_secret_in_the_settings_repr_or_str(self) -> None:
        settings = secure(kafka_config={"ssl.key.password": "key-s3cret", "linger.ms": "7"})
        for shown in (repr(settings), str(settings)):
            for secret in (SASL_PASSWORD, REGISTRY_USER_INFO, DB_PASSWORD, "key-s3cret"):
                assert secret not in shown
            assert "postgresql://allocation:***@db:5432/allocation?sslmode=verify-full" in shown
            assert "'linger.ms': '7'" in shown

    def test_a_refusal_names_the_principal_and_no_secret(self) -> None:
        error = AccessDenied("Kafka refused access: TOPIC_AUTHORIZATION_FAILED: ...")
        line = _explain(error, secure())
        assert line.startswith("as principal User:allocation: Kafka refused access")
        assert SASL_PASSWORD not in line


class TestRefusals:
    @pytest.mark.parametrize(
        "code",
        [
            KafkaError._AUTHENTICATION,
            KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        ],
    )
    def test_refusals_are_recognised_and_raised(self, code: int) -> None:
        error = KafkaError(code)
        assert is_refusal(error)
        with pytest.raises(AccessDenied, match="not retried"):
            raise_refusal(error)

    @pytest.mark.parametrize(
        "code", [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._MSG_TIMED_OUT]
    )
    def test_faults_that_clear_are_not_refusals(self, code: int) -> None:
        assert not is_refusal(KafkaError(code))
        raise_refusal(KafkaError(code))  # the client goes on retrying by itself

    def test_a_connection_lost_during_the_handshake_is_not_a_refusal(self) -> None:
        lost = KafkaError(
            KafkaError._AUTHENTICATION,
            "SASL authentication error: SaslAuthenticateRequest failed: "
            "Local: Broker transport failure",
        )
        assert not is_refusal(lost)
        wrong = KafkaError(
            KafkaError._AUTHENTICATION,
            "SASL authentication error: Authentication failed during authentication due to "
            "invalid credentials with SASL mechanism SCRAM-SHA-512",
        )
        assert is_refusal(wrong)

    def test_the_relay_stops_on_a_refused_delivery_instead_of_parking_the_row(self) -> None:
        delivery = Delivery()
        with pytest.raises(AccessDenied, match="TOPIC_AUTHORIZATION_FAILED"):
            delivery.record(None, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))  # type: ignore[arg-type]
        assert delivery.refused == []
