"""How the service proves who it is to Kafka and the registry, and what a refusal means.

The one place that turns settings into client security configuration: every
Kafka client (producer, consumer, admin) and every registry client of the
service, its CLI and its tests is built with these dicts, so a setting added
here reaches all of them.

A refusal (bad credentials, a principal without the ACL it needs) is not a
fault that clears by itself: retrying cannot help until an operator changes
something, so it is raised as ``AccessDenied`` and stops the process with one
clear line instead of a retry loop.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError

from allocation.config import Settings

logger = logging.getLogger(__name__)


class AccessDenied(Exception):
    """A server refused the service's credentials or its principal lacks a permission."""


# librdkafka's codes for "who you are" or "what you may do" refusals.
_REFUSALS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
    }
)


def kafka_client_security(settings: Settings) -> dict[str, Any]:
    """librdkafka properties for TLS and SASL, then the KAFKA_CONFIG_* pass-through.

    Also the client's ``error_cb``: librdkafka reports failed authentication only
    there (the client itself just reconnects forever), so it raises ``AccessDenied``
    from the ``poll``/``consume``/``flush`` call that serves it.
    """
    config: dict[str, Any] = {
        "security.protocol": settings.kafka_security_protocol,
        "error_cb": raise_refusal,
    }
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username is not None:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return {**config, **settings.kafka_config}


def registry_client_config(settings: Settings) -> dict[str, Any]:
    """The confluent-kafka ``SchemaRegistryClient`` configuration, credentials included."""
    config: dict[str, Any] = {"url": settings.schema_registry_url, "timeout": 10}
    if settings.schema_registry_basic_auth_user_info is not None:
        config["basic.auth.user.info"] = (
            settings.schema_registry_basic_auth_user_info.get_secret_value()
        )
    if settings.schema_registry_ca_location:
        config["ssl.ca.location"] = settings.schema_registry_ca_location
    return config


def is_refusal(error: KafkaError) -> bool:
    """Did the broker refuse who we are or what we asked (not a fault that may clear)?"""
    if error.code() == KafkaError._AUTHENTICATION:
        # librdkafka also says _AUTHENTICATION when the connection drops mid-handshake
        reason = error.str().lower()
        return "authentication fail" in reason and "transport failure" not in reason
    return error.code() in _REFUSALS


def raise_refusal(error: KafkaError) -> None:
    """A Kafka client's ``error_cb``: a refusal stops the caller; other errors clear."""
    if is_refusal(error):
        raise refused(error)
    # librdkafka has logged it already, and retries by itself
    logger.debug("kafka client error: %s", error.str())


def refused(error: KafkaError) -> AccessDenied:
    """The exception for a refusal: what was refused and what to check, in one line."""
    return AccessDenied(
        f"Kafka refused access: {error.name()}: {error.str()} "
        "(check the credentials and the ACLs; not retried)"
    )
