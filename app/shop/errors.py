"""Domain errors the API turns into 4xx JSON (config/api.py)."""

from core.errors import DomainError

__all__ = ["DomainError", "IdempotencyConflict", "OutOfStock", "UnknownProducts"]


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
