"""The chaos suite's recorder: a reader that never got a partition is replaced, and the
replacement reads everything once."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from allocation.adapters.kafka import Outgoing, produce_and_wait, producer_config
from allocation.config import Settings
from testkit.processes import wait_until
from testkit.topics import drop_topics
from testkit.traffic import Recorder


def test_a_recorder_without_a_partition_joins_a_new_group_and_reads_each_message_once(
    settings: Settings, admin: AdminClient
) -> None:
    topic = f"test-recorder-{uuid.uuid4().hex[:8]}"
    recorder = Recorder(settings, [topic])  # nothing to assign yet: the topic is not there
    recorder.UNASSIGNED_S = 1.0
    recorder.start()
    try:
        wait_until(lambda: recorder.rebuilt >= 1, 30, "the recorder to join a new group")
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(30)
        producer = Producer(producer_config(settings, "test-recorder"))
        produce_and_wait(producer, [Outgoing(topic, b"k", b"only one", [])])
        wait_until(lambda: recorder.on(topic), 60, "the message to be recorded")
        assert [r.value for r in recorder.on(topic)] == [b"only one"]
    finally:
        recorder.stop()
        drop_topics(admin, [topic])
