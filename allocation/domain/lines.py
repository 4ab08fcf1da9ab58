"""Order lines and the set of lines a batch holds: the values the aggregate is built from."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from allocation.domain.errors import InvalidQuantity, InvalidValue

# Limits that keep every value storable: PostgreSQL's btree refuses an index
# entry over about 2,700 bytes, and the read model's key holds three identifiers,
# so they are counted in bytes of UTF-8, not characters. Quantities are
# PostgreSQL integers. The README's "Limits" table lists the same numbers.
MAX_IDENTIFIER_BYTES = 255
MAX_QUANTITY = 2**31 - 1


def require_text(field: str, value: object) -> str:
    """An identifier: a non-blank string of printable characters, at most 255 bytes of UTF-8."""
    # The common case first, in a few C calls: printable ASCII counts one byte a character.
    if (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and 0 < len(value) <= MAX_IDENTIFIER_BYTES
        and not value.isspace()
    ):
        return value
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{field} must be a non-empty string, got {value!r:.80}")
    # Checked first: a lone surrogate is unprintable and has no UTF-8 form to measure.
    if not value.isprintable():
        raise InvalidValue(f"{field} must not contain control or unprintable characters")
    size = len(value.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise InvalidValue(
            f"{field} is {size} bytes of UTF-8; at most {MAX_IDENTIFIER_BYTES} are allowed"
        )
    return value


def require_quantity(field: str, value: object, *, allow_zero: bool = False) -> int:
    """A quantity: a positive integer (or zero) that fits a PostgreSQL integer."""
    # bool is an int subclass; True is not a quantity.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidQuantity(f"{field} must be an integer, got {value!r:.80}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "positive"
        raise InvalidQuantity(f"{field} must be {bound}, got {value}")
    if value > MAX_QUANTITY:
        raise InvalidQuantity(f"{field} must be at most {MAX_QUANTITY}, got {value}")
    return value


@dataclass(frozen=True)
class OrderLine:
    """A value object: a quantity of one sku on a customer order."""

    orderid: str
    sku: str
    qty: int

    def __post_init__(self) -> None:
        require_text("orderid", self.orderid)
        require_text("sku", self.sku)
        require_quantity("qty", self.qty)


class AllocationSet(abc.ABC):
    """The order lines a batch holds, and their total quantity.

    A storage adapter implements it to fetch lines on demand, so that allocating
    one more line never needs a batch's whole history in memory; the total is
    kept beside the lines for the same reason. ``Allocations`` is the in-memory
    reference behaviour; one contract suite checks both.
    """

    quantity: int

    @abc.abstractmethod
    def __contains__(self, line: object) -> bool:
        """Whether the batch holds exactly this line."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[OrderLine]:
        """Every line held."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many lines are held."""

    @abc.abstractmethod
    def add(self, line: OrderLine) -> None:
        """Hold the line; holding it again changes nothing."""

    @abc.abstractmethod
    def remove(self, line: OrderLine) -> None:
        """Release the line; releasing a line not held changes nothing."""

    @abc.abstractmethod
    def largest(self) -> OrderLine | None:
        """The line to release first: the largest (ties: the greatest order id)."""


class Allocations(AllocationSet):
    """Lines held in memory: the reference behaviour, and a new batch's lines."""

    def __init__(self, lines: Iterable[OrderLine] = ()) -> None:
        self._lines = set(lines)
        self.quantity = sum(line.qty for line in self._lines)

    def __contains__(self, line: object) -> bool:
        return line in self._lines

    def __iter__(self) -> Iterator[OrderLine]:
        return iter(set(self._lines))

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: OrderLine) -> None:
        if line not in self:
            self._lines.add(line)
            self.quantity += line.qty

    def remove(self, line: OrderLine) -> None:
        if line in self:
            self._lines.remove(line)
            self.quantity -= line.qty

    def largest(self) -> OrderLine | None:
        return max(self._lines, key=release_order, default=None)


def release_order(line: OrderLine) -> tuple[int, str]:
    """Sort key of the line a batch releases first when it shrinks."""
    return (line.qty, line.orderid)
