import pytest
from prometheus_client import CollectorRegistry, Histogram

from allocation.adapters import metrics

pytestmark = pytest.mark.unit

BUCKETS = (0.001, 0.01, 0.5, 30)
# Below the first bound, on each bound (counted in it), between bounds, past the last.
AMOUNTS = [0.0, 0.0005, 0.001, 0.0010001, 0.01, 0.2, 0.5, 0.5, 29.9, 30, 31, 1e9]


def histogram() -> Histogram:
    return Histogram("delay_seconds", "d", buckets=BUCKETS, registry=CollectorRegistry())


def samples(observed: Histogram) -> list[tuple[str, dict[str, str], float]]:
    # Every sample but the creation time, which differs between any two histograms.
    return [
        (s.name, s.labels, s.value)
        for m in observed.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    ]


def test_observing_all_at_once_counts_as_observing_each() -> None:
    each, together = histogram(), histogram()
    for amount in AMOUNTS:
        each.observe(amount)
    metrics.observe_all(together, iter(AMOUNTS))
    assert samples(together) == samples(each)
    assert ("delay_seconds_count", {}, len(AMOUNTS)) in samples(together)


def test_nothing_observed_changes_nothing() -> None:
    untouched, observed = histogram(), histogram()
    metrics.observe_all(observed, [])
    assert samples(observed) == samples(untouched)


def test_a_histogram_without_the_expected_insides_is_observed_one_by_one() -> None:
    class Opaque:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    opaque = Opaque()
    metrics.observe_all(opaque, AMOUNTS)  # type: ignore[arg-type]
    assert opaque.seen == AMOUNTS
