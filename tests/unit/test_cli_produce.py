"""``allocation produce`` when the broker's answer did not come: what the user is told."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from allocation.entrypoints.cli.common import ToolError
from allocation.entrypoints.cli.console import MESSAGE_ID_MAX, chosen_message_id, not_sent


def test_a_timeout_tells_how_to_send_again_without_applying_twice() -> None:
    reason = not_sent(
        "allocate", KafkaError(KafkaError._MSG_TIMED_OUT, "no acknowledgement within 30 s"), "m-7"
    )
    assert reason.startswith("could not produce to allocate: no acknowledgement within 30 s;")
    assert "--message-id m-7" in reason


def test_a_refusal_says_only_why() -> None:
    reason = not_sent("allocate", KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "m-7")
    assert reason.startswith("could not produce to allocate:")
    assert "--message-id" not in reason


@pytest.mark.parametrize("given", ["", "x" * (MESSAGE_ID_MAX + 1), "line\nbreak"])
def test_an_id_the_inbox_would_ignore_is_refused_before_anything_is_sent(given: str) -> None:
    with pytest.raises(ToolError, match="nothing was sent"):
        chosen_message_id(given)


def test_without_an_id_each_send_gets_a_new_one() -> None:
    assert chosen_message_id(None) != chosen_message_id(None)
    assert chosen_message_id("order-42-try") == "order-42-try"
