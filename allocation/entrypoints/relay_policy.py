"""The relay's decisions as plain values: its limits and timings, and what a delivery means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from confluent_kafka import KafkaError

from allocation.adapters.outbox_publishing import PendingRow
from allocation.adapters.security import is_refusal, refused
from allocation.config import Settings

Delivered = Callable[[PendingRow, KafkaError | None], None]


@dataclass
class Delivery:
    """What became of one chunk of rows handed to the producer."""

    acked: list[PendingRow] = field(default_factory=list)
    refused: list[tuple[PendingRow, str]] = field(default_factory=list)
    lost: list[PendingRow] = field(default_factory=list)
    fatal: str | None = None
    timed_out: bool = False  # a row's message timed out in the producer

    def record(self, row: PendingRow, err: KafkaError | None) -> None:
        if err is None:
            self.acked.append(row)
        elif is_refusal(err):  # not this row's fault: no row could be sent; stop, park none
            raise refused(err)
        elif err.fatal():
            self.fatal = err.str()  # the row stays pending, for the next producer
            self.lost.append(row)
        elif err.retriable() or err.code() == KafkaError._MSG_TIMED_OUT:
            self.lost.append(row)  # the broker may take it next time
            self.timed_out |= err.code() == KafkaError._MSG_TIMED_OUT
        else:
            self.refused.append((row, f"broker refused: {err.str()}"))

    def all_acked(self, sent: int) -> bool:
        """Whether the broker acknowledged every one of the ``sent`` rows, refusing none."""
        return len(self.acked) == sent and not (self.refused or self.lost or self.fatal)

    def publishable(self) -> list[int]:
        """Ids of the acknowledged rows that no earlier row of their key failed to precede.

        A row acknowledged after an earlier row of its key was lost stays pending, so
        it goes out again after that row: the key's last copies are in commit order.
        """
        first_failed: dict[str, int] = {}
        for row in [*self.lost, *(row for row, _ in self.refused)]:
            first_failed[row.key] = min(row.id, first_failed.get(row.key, row.id))
        return [row.id for row in self.acked if row.id < first_failed.get(row.key, row.id + 1)]


_DEFAULTS = Settings.model_fields


@dataclass(frozen=True)
class RelayPolicy:
    """How much the relay takes at once, how often it looks, how long a failed row waits."""

    # The settings' defaults, so that a policy built by hand is the relay that runs.
    chunk_size: int = _DEFAULTS["relay_chunk_size"].default
    poll_interval_s: float = _DEFAULTS["relay_poll_interval_s"].default
    gather_s: float = _DEFAULTS["relay_gather_s"].default
    standby_poll_s: float = 1.0
    max_attempts: int = _DEFAULTS["relay_max_attempts"].default
    hold_back_base_s: float = _DEFAULTS["relay_retry_base_s"].default

    def hold_back(self, attempts: int) -> timedelta:
        """How long a row that failed ``attempts`` times waits: doubling, at most 5 minutes."""
        return timedelta(seconds=min(300.0, self.hold_back_base_s * 2 ** (attempts - 1)))

    @classmethod
    def from_settings(cls, settings: Settings) -> RelayPolicy:
        return cls(
            chunk_size=settings.relay_chunk_size,
            poll_interval_s=settings.relay_poll_interval_s,
            gather_s=settings.relay_gather_s,
            max_attempts=settings.relay_max_attempts,
            hold_back_base_s=settings.relay_retry_base_s,
        )
