"""Domain errors the API turns into 4xx JSON (config/api.py)."""

from core.errors import DomainError

__all__ = ["DomainError", "IdempotencyConflict", "OutOfStock", "UnknownProducts"]


class UnknownProducts(DomainError):
    # 404: the request is well formed; what it refers to does not exist.
    status = 404
    code = "unknown_products"


class OutOfStock(DomainError):
    status = 409
    code = "out_of_stock"


class IdempotencyConflict(DomainError):
    status = 409
    code = "idempotency_key_reused"
