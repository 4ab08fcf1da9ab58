"""Domain errors: the request itself is wrong, so retrying it cannot succeed."""


class DomainError(Exception):
    """Base of every rejection by the domain or the service layer."""


class InvalidSku(DomainError):
    """No product (no batch at all) exists for the sku."""


class InvalidBatchRef(DomainError):
    """No batch has the reference."""


class DuplicateBatchRef(DomainError):
    """A batch with the reference already exists."""


class InvalidQuantity(DomainError):
    """A quantity is not a positive integer (zero is allowed only for a batch's new quantity)."""


class InvalidValue(DomainError):
    """An identifier (sku, order id, batch reference) is empty or not a string."""


class StaleVersion(DomainError):
    """A command expected a version of a batch that is no longer its current one."""
