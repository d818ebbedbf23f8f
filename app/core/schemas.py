"""Schemas every API shares: the error body and pagination."""

from typing import Any

from ninja import Field, Schema

# Deep pages cost an OFFSET scan; past this, clients should narrow the query instead.
MAX_PAGE = 10_000
MAX_PAGE_SIZE = 100


class ErrorDetail(Schema):
    code: str
    message: str
    fields: dict[str, list[str]] | None = None


class ErrorOut(Schema):
    error: ErrorDetail


class PageQuery(Schema):
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)


def errors(*statuses: int) -> dict[int, Any]:
    """The documented error responses of an operation, all in the one error shape."""
    return dict.fromkeys(statuses, ErrorOut)
