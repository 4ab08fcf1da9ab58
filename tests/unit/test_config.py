import pytest

from allocation.config import ConfigurationError, Settings, load_settings


def test_defaults_are_the_contracts() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.schema_registry_url == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert settings.command_topics == ("add-batch", "allocate", "batch-quantity")
    assert settings.event_topics == ("line-allocated", "line-deallocated", "out-of-stock")
    assert settings.topic_dlq == "allocation-dlq"


def test_every_topic_name_is_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_ALLOCATE", "orders.allocate")
    monkeypatch.setenv("TOPIC_LINE_ALLOCATED", "orders.allocated")
    settings = load_settings()
    assert settings.topic_allocate == "orders.allocate"
    assert settings.topic_line_allocated == "orders.allocated"


def test_a_bad_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    monkeypatch.setenv("TOPIC_PARTITIONS", "zero")
    with pytest.raises(ConfigurationError, match="DATABASE_URL") as error:
        load_settings()
    assert "TOPIC_PARTITIONS" in str(error.value)


def test_the_driver_is_spelled_out_for_sqlalchemy() -> None:
    settings = Settings(database_url="postgresql://u:p@h:5432/d")
    assert settings.sqlalchemy_url == "postgresql+psycopg2://u:p@h:5432/d"
