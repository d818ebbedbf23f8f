"""Domain errors the API turns into 4xx JSON (config/api.py)."""

from core.errors import DomainError

__all__ = [
    "DomainError",
    "IdempotencyConflict",
    "InvalidProduct",
    "OutOfStock",
    "PriceChanged",
    "UnknownProducts",
]


class UnknownProducts(DomainError):
    # 404: the request is well formed; what it refers to does not exist.
    status = 404
    code = "unknown_products"


class ProductNotFound(DomainError):
    status = 404
    code = "not_found"


class ConflictingStockChange(DomainError):
    # 400: one PATCH either sets the count or moves it, never both.
    code = "conflicting_fields"


class OutOfStock(DomainError):
    status = 409
    code = "out_of_stock"


class IdempotencyConflict(DomainError):
    status = 409
    code = "idempotency_key_reused"


class InvalidProduct(DomainError):
    # 400: the values sent, combined with the row's, break a rule of the model (a stock past
    # what the column holds after a stock_delta).
    code = "invalid"


class PriceChanged(DomainError):
    # 409: the client showed one price and the catalogue now says another (a price change the
    # replica serving its page had not replayed yet); nothing was charged.
    status = 409
    code = "price_changed"
