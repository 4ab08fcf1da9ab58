from confluent_kafka import KafkaError

from allocation.adapters.positions import Positions, is_fatal


def test_the_next_offset_is_one_past_the_highest_applied() -> None:
    positions = Positions()
    moved = positions.advance([("allocate", 0, 7), ("allocate", 0, 5), ("add-batch", 2, 0)])
    assert moved == {("allocate", 0), ("add-batch", 2)}
    assert sorted(positions.to_commit()) == [("add-batch", 2, 1), ("allocate", 0, 8)]


def test_an_older_message_never_moves_a_position_back() -> None:
    positions = Positions()
    positions.advance([("allocate", 1, 10)])
    positions.advance([("allocate", 1, 3)])
    assert positions.to_commit() == [("allocate", 1, 11)]


def test_only_the_partitions_asked_for_are_committed() -> None:
    positions = Positions()
    positions.advance([("allocate", 0, 1), ("allocate", 1, 1)])
    assert positions.to_commit({("allocate", 1)}) == [("allocate", 1, 2)]


def test_a_revoked_partition_is_forgotten() -> None:
    positions = Positions()
    positions.advance([("allocate", 0, 1), ("allocate", 1, 1)])
    positions.forget([("allocate", 0)])
    assert positions.to_commit() == [("allocate", 1, 2)]
    positions.forget([("allocate", 1)])
    assert not positions


def test_fatal_errors_are_recognised_by_flag_or_code() -> None:
    assert is_fatal(KafkaError(KafkaError._FATAL))
    assert is_fatal(KafkaError(KafkaError._FENCED, fatal=True))
    assert not is_fatal(KafkaError(KafkaError._TRANSPORT))
