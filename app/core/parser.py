"""The API's request bodies: JSON, labelled as JSON, UTF-8, each name once in an object.

django-ninja reads a body with json.loads whatever its Content-Type and wraps any failure in
one 400 "Cannot parse request body"; the errors raised here ride along as that 400's cause and
the API answers them as themselves (config/api.py), naming what was wrong.
"""

import json
import sys
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from core.errors import DomainError


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"


class MalformedJSON(DomainError):
    status = 400
    code = "malformed_json"


def _is_json(content_type: str) -> bool:
    # application/json, and the structured-syntax suffix types (RFC 6839) such as
    # application/merge-patch+json.
    kind, _, subtype = content_type.lower().partition("/")
    return kind == "application" and (
        subtype == "json" or (len(subtype) > 5 and subtype.endswith("+json"))
    )


def _quoted(text: str) -> str:
    # What the client sent, named in the answer, at most a line of it: an error is no echo.
    return repr(text if len(text) <= 80 else text[:80] + "...")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A name twice is refused, not "last one wins": a proxy or a log that reads the first would
    # see another request than the one carried out.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise MalformedJSON(f"The body names {_quoted(name)} twice in one object.")
            seen.add(name)
    return obj


class JSONParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        content_type = request.content_type or ""
        if not _is_json(content_type):
            raise UnsupportedMediaType(
                "Send the body as JSON with Content-Type: application/json "
                f"(this one was {_quoted(content_type) if content_type else 'not labelled'})."
            )
        charset = (request.content_params or {}).get("charset", "utf-8")
        if charset.lower() not in ("utf-8", "utf8"):
            # JSON is UTF-8 (RFC 8259): a body said to be in another charset is not read as
            # UTF-8 behind the client's back.
            raise UnsupportedMediaType(f"Send JSON in UTF-8 (this one said {_quoted(charset)}).")
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJSON("The body is not UTF-8.") from exc
        if text.startswith("\ufeff"):
            raise MalformedJSON("The body starts with a byte order mark; send UTF-8 without one.")
        try:
            data: dict[str, Any] = json.loads(text, object_pairs_hook=_object)
        except RecursionError as exc:
            raise MalformedJSON("The body nests arrays or objects too deeply.") from exc
        except json.JSONDecodeError as exc:
            # "Invalid control character at": the decoder's message ends where its position goes.
            what = exc.msg.removesuffix(" at")
            raise MalformedJSON(
                f"The body is not valid JSON: {what} at line {exc.lineno} column {exc.colno}."
            ) from exc
        except ValueError as exc:  # int() refuses more than sys.get_int_max_str_digits() digits
            raise MalformedJSON(
                f"The body has a number of more than {sys.get_int_max_str_digits()} digits."
            ) from exc
        return data
