"""Every error the app returns is JSON: {"error": {"code", "message", ["fields"]}}."""

from typing import Any

from django.http import HttpRequest, JsonResponse


class DomainError(Exception):
    """An error a service raises that the API answers as a 4xx (or 503) JSON (config/api.py)."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # Seconds, sent as Retry-After: when asking again may succeed.
        self.retry_after = retry_after


class ServerBusy(DomainError):
    """Nothing of the request ran, and the server could not start it in time: ask again."""

    status = 503
    code = "server_busy"


def error_response(
    status: int, code: str, message: str, *, fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse({"error": body}, status=status)


def domain_error_response(exc: DomainError) -> JsonResponse:
    """The JSON answer to a DomainError: its status and code, the field it names, Retry-After."""
    fields = {exc.field: [exc.message]} if exc.field else None
    response = error_response(exc.status, exc.code, exc.message, fields=fields)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, ServerBusy):
        # Logged once where the request was refused (runtime.asgi), with what the operator
        # needs; Django's handler skips a response marked logged (django.utils.log.log_response)
        # rather than add its "Service Unavailable" error for every refusal of a flood.
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    # Reached for DisallowedHost too: the Host header is not one this site serves.
    return error_response(400, "bad_request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(403, "forbidden", "You may not do this.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(404, "not_found", f"Nothing at {request.path}.")


def server_error(request: HttpRequest) -> JsonResponse:
    return error_response(500, "server_error", "Something went wrong on our side.")
