"""Schemas every API shares: the error body and pagination."""

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from ninja import Field, Path, Schema
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

# Deep pages cost an OFFSET scan; past this, clients should narrow the query instead.
MAX_PAGE = 10_000
MAX_PAGE_SIZE = 100
# The only page sizes a cached list accepts: each size is its own set of cache keys, so a client
# free to pick any size could multiply the keys (and the misses) by MAX_PAGE_SIZE.
PAGE_SIZES = (10, 20, 50, 100)


# Postgres text cannot hold NUL; saying so in the schema turns it into a 400, not a 500.
NO_NUL = r"^[^\x00]*$"


def no_nul(*, min_length: int = 0, max_length: int) -> StringConstraints:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL)


# Money travels as a decimal string ("19.90"): a JSON number would pass through binary floats.
MONEY_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"


def _money_string(value: object) -> object:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not re.fullmatch(MONEY_PATTERN, value):
        raise ValueError('send the amount as a string with up to 2 decimals, e.g. "19.90"')
    return Decimal(value)


Money = Annotated[
    Decimal,
    BeforeValidator(_money_string),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["19.90"]}),
]


def _decimal_string(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value


# Money in an answer: the model's Decimal written by str() ("19.90"), a string in the schema. A
# string (a cached page) passes as it is.
MoneyOut = Annotated[str, BeforeValidator(_decimal_string)]


def _iso_string(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


# A moment in an answer: the model's datetime written by isoformat(), a string in the schema.
Timestamp = Annotated[str, BeforeValidator(_iso_string)]


def json_integer(value: object) -> object:
    """An integer as JSON Schema means it: 7 and 7.0, never "7" or true (with strict input).

    Use as Annotated[int, Field(ge=..., le=...), BeforeValidator(json_integer)]: in that order,
    so the bounds appear in the OpenAPI schema as minimum/maximum.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


MAX_BIGINT = 2**63 - 1
# A database id in a request body, within bigint.
PositiveId = Annotated[int, Field(ge=1, le=MAX_BIGINT), BeforeValidator(json_integer)]


_CANONICAL_ID = re.compile(r"[1-9][0-9]*", re.ASCII)


def _canonical_id(value: object) -> object:
    # As written in the URL: "1_0", "+1", " 1", "01" and "1.0" would all parse as an int, so one
    # object would answer at many URLs (and be cached under each).
    if isinstance(value, str) and not _CANONICAL_ID.fullmatch(value):
        raise ValueError("must be a positive whole number in decimal digits, no leading zero")
    return value


# Database ids in a URL: declared in the schema (a fuzzer reads it), within bigint, and spelt
# one way only.
# Path last: django-ninja takes the parameter's source from the last Annotated argument.
PathId = Annotated[int, BeforeValidator(_canonical_id), Path(ge=1, le=MAX_BIGINT)]


class InputSchema(Schema):
    """A request body: a JSON object whose types are strict (no "5" for 5, no 0 for false) and
    whose fields are all known: a misspelt optional field (a price guard, a flag) would be
    dropped and the request carried out without it, so it is a 400 naming the field. The
    OpenAPI schema says so (no other property is allowed)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        # Ninja wraps the input to read attributes off any value, so [null] would pass as {}.
        if not isinstance(getattr(data, "_obj", data), dict):
            raise ValueError("the body must be a JSON object")
        return data


def _fields_never_null(schema: dict[str, Any]) -> None:
    """A PATCH body's schema as PatchSchema validates it: each field left out, or a value; the
    `| None` its type needs for "left out" is no value a client may send."""
    for field in schema.get("properties", {}).values():
        choices = field.pop("anyOf", None)
        if choices is not None:
            values = [choice for choice in choices if choice != {"type": "null"}]
            if len(values) == 1:
                field.update(values[0])
            else:
                field["anyOf"] = values
        if "default" in field and field["default"] is None:
            del field["default"]


class PatchSchema(InputSchema):
    """A PATCH body: the fields sent change, those left out keep their value. A field sent as
    null is refused (400 naming it), as is, for any body, a field it does not have; the OpenAPI
    schema says both: none is nullable, no other property is allowed. Read with
    .dict(exclude_unset=True)."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_fields_never_null)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # A field left out keeps its value; one sent as null would read the same, and the
        # client be answered 200 for a value none of these fields can take.
        if value is None:
            raise ValueError("must not be null; leave the field out to keep its value")
        return value


class ErrorDetail(Schema):
    code: str
    message: str
    fields: dict[str, list[str]] | None = None


class ErrorOut(Schema):
    error: ErrorDetail


class PageQuery(Schema):
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)


def _canonical_page_size(value: int) -> int:
    if value not in PAGE_SIZES:
        raise ValueError(f"page_size must be one of {', '.join(map(str, PAGE_SIZES))}")
    return value


# An int (a query string's "50" is parsed as usual) that must be one of PAGE_SIZES, listed in the
# OpenAPI schema as an enum.
CanonicalPageSize = Annotated[
    int,
    AfterValidator(_canonical_page_size),
    WithJsonSchema({"type": "integer", "enum": list(PAGE_SIZES), "default": 20}),
]


class CachedPageQuery(Schema):
    """Pagination of a cached list: page sizes from PAGE_SIZES only."""

    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: CanonicalPageSize = Field(
        20, description=f"One of {', '.join(map(str, PAGE_SIZES))}; any other is a 400."
    )


def errors(*statuses: int) -> dict[int, Any]:
    """The documented error responses of an operation, all in the one error shape."""
    return dict.fromkeys(statuses, ErrorOut)
