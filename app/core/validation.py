"""Turns a JSON request body into validated data, or a 400 that names the problem."""

import json
from typing import Any

from django import forms
from django.http import HttpRequest, JsonResponse

from core.errors import error_response


class InvalidInput(Exception):
    def __init__(self, response: JsonResponse) -> None:
        super().__init__(response.content.decode())
        self.response = response


def json_body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise InvalidInput(
            error_response(415, "unsupported_media_type", "Send the body as application/json.")
        )
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            error_response(400, "malformed_json", f"Body is not JSON: {exc}")
        ) from exc
    if not isinstance(data, dict):
        raise InvalidInput(error_response(400, "malformed_json", "Body must be a JSON object."))
    return data


def validated(form_class: type[forms.Form], data: dict[str, Any]) -> dict[str, Any]:
    form = form_class(data=data)
    if not form.is_valid():
        fields = {name: [str(e) for e in errors] for name, errors in form.errors.items()}
        raise InvalidInput(
            error_response(
                400,
                "validation_error",
                "Invalid fields: " + ", ".join(sorted(fields)),
                fields=fields,
            )
        )
    return dict(form.cleaned_data)
