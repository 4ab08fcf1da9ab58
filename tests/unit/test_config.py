import pytest

from allocation.config import ConfigurationError, load_settings, settings_from
from allocation.entrypoints.provision import min_insync_replicas


def test_defaults_are_the_contracts() -> None:
    settings = settings_from()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.schema_registry_url == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert settings.command_topics == ("add-batch", "allocate", "batch-quantity")
    assert settings.event_topics == (
        "line-allocated",
        "line-deallocated",
        "out-of-stock",
        "command-rejected",
    )
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
    settings = settings_from(database_url="postgresql://u:p@h:5432/d")
    assert settings.sqlalchemy_url == "postgresql+psycopg2://u:p@h:5432/d"


def test_explicit_settings_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_ALLOCATE", "elsewhere")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "10.9.9.9:9092")
    settings = settings_from(topic_dlq="dead")
    assert settings.topic_allocate == "allocate"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_dlq == "dead"


def test_renamed_variables_still_work_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CONSUMER_BATCH_SIZE", "42")
    monkeypatch.setenv("RELAY_BATCH_SIZE", "7")
    settings = load_settings()
    assert (settings.consumer_poll_size, settings.relay_chunk_size) == (42, 7)
    assert "CONSUMER_BATCH_SIZE is deprecated" in caplog.text
    assert "set RELAY_CHUNK_SIZE instead" in caplog.text


def test_topics_tolerate_one_broker_lost_without_stopping_writers() -> None:
    factors = [settings_from(topic_replication_factor=rf) for rf in (1, 2, 3)]
    assert [min_insync_replicas(settings) for settings in factors] == [1, 1, 2]
