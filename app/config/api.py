"""The JSON API: one NinjaAPI, every error in one shape {"error": {code, message, fields?}}.

django-ninja: typed request/response schemas (pydantic), async views, and an OpenAPI schema
generated from the same types, which the fuzz test holds the running stack to.
"""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from accounts.apis import router as accounts_router
from core.db import DATABASE_ERRORS, database_error_response
from core.errors import DomainError, domain_error_response, error_response
from core.parser import JSONParser
from ops.apis import router as ops_router
from reports.apis import router as reports_router  # demo-shop
from shop.apis import router as shop_router  # demo-shop


class ProjectAPI(NinjaAPI):
    """The schema also lists the 429 Nginx answers (nginx/nginx.conf's limit_req zones) before a
    request reaches Django: every unsafe method counts against the writes' zone, so every unsafe
    operation can answer it, in the API's error shape, with Retry-After. And the 415 the parser
    answers (core/parser.py) wherever a body is read."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        limited = {
            "description": "Too many requests from this address (Nginx's rate limit); "
            "Retry-After says when to try again.",
            "content": content,
        }
        unlabelled = {
            "description": "The body is not labelled application/json.",
            "content": content,
        }
        for methods in schema["paths"].values():
            for method, operation in methods.items():
                if method in UNSAFE_METHODS:
                    operation["responses"].setdefault(429, limited)
                if "requestBody" in operation:
                    operation["responses"].setdefault(415, unlabelled)
        return schema


UNSAFE_METHODS = frozenset({"post", "put", "patch", "delete"})

api = ProjectAPI(
    title="djstack shop API",  # demo-shop
    # demo-shop: else title="djstack API",
    version="1.0.0",
    urls_namespace="api",
    parser=JSONParser(),
    docs_url="/docs",
    # The schema and its docs page are read-only: another method gets the JSON 405
    # (core.middleware), where django-ninja's views would answer any method as a GET. Exempt from
    # the CSRF check, like the API's own views: it would answer that method with its HTML 403.
    docs_decorator=lambda view: csrf_exempt(require_safe(view)),
)
api.add_router("", accounts_router)
api.add_router("", shop_router)  # demo-shop
api.add_router("", reports_router)  # demo-shop
api.add_router("", ops_router)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "too_many_requests",
    422: "unprocessable",
}


def _field_name(loc: list[Any]) -> str:
    # ("body", "payload", "items", 0, "quantity") -> "items.0.quantity"; ("query", "page") -> "page"
    parts = [str(p) for p in loc[1:]]
    if loc and loc[0] == "body" and parts and parts[0] == "payload":
        parts = parts[1:]
    return ".".join(parts) or str(loc[0])


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields: dict[str, list[str]] = {}
    for error in exc.errors:
        fields.setdefault(_field_name(list(error.get("loc", []))), []).append(error["msg"])
    return error_response(
        400, "validation_error", "Invalid fields: " + ", ".join(sorted(fields)), fields=fields
    )


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = error_response(401, "unauthorized", "Send a valid bearer token or session.")
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, DomainError):
        # Ninja's "Cannot parse request body" around the parser's own reason (core/parser.py).
        return domain_error_response(exc.__cause__)
    return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), str(exc))


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(404, "not_found", "Not found.")


@api.exception_handler(DomainError)
def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return domain_error_response(exc)


def on_database_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    return database_error_response(exc)


for _error in DATABASE_ERRORS:
    api.add_exception_handler(_error, on_database_error)  # type: ignore[arg-type]
