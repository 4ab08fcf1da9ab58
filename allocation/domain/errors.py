"""Domain errors: the request itself is wrong, so retrying it cannot succeed."""


class DomainError(Exception):
    """Base of every rejection by the domain or the service layer."""


class Rejection(DomainError):
    """A well-formed command that the current state refuses: a business rejection.

    Unlike poison (bytes that do not decode, invalid fields), a rejection is news
    for the command's sender: it becomes a ``CommandRejected`` event, committed
    with the command's inbox record. ``reason`` is its stable code.
    """

    @property
    def reason(self) -> str:
        return type(self).__name__


class InvalidSku(Rejection):
    """No product (no batch at all) exists for the sku."""


class InvalidBatchRef(Rejection):
    """No batch has the reference."""


class DuplicateBatchRef(Rejection):
    """A batch with the reference already exists."""


class InvalidQuantity(DomainError):
    """A quantity is not a positive integer (zero is allowed only for a batch's new quantity)."""


class InvalidValue(DomainError):
    """An identifier (sku, order id, batch reference) is empty or not a string."""


class StaleVersion(Rejection):
    """A command expected a version of a batch that is no longer its current one."""

    def __init__(self, message: str, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version
