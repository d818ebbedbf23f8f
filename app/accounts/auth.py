"""API authentication: a bearer token for API clients, the session for the browser."""

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth

from accounts.selectors import api_token_get

# The id of the token a request authenticated with (GET /api/auth/tokens marks it "current").
TOKEN_ID_ATTR = "api_token_id"  # noqa: S105 - an attribute name


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = api_token_get(token=token)
        if found is None:
            return None
        request.user = found.user  # the views read request.user, whichever auth succeeded
        setattr(request, TOKEN_ID_ATTR, found.pk)
        return found.user


def _staff_only(user: Any) -> Any:
    if user is not None and not user.is_staff:
        raise HttpError(403, "Staff only.")
    return user


class StaffBearerToken(BearerToken):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return _staff_only(super().authenticate(request, token))


class StaffSession(SessionAuth):
    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return _staff_only(super().authenticate(request, key))


# Session auth checks CSRF on unsafe methods: a cookie alone never authorises a write.
customer_auth = [BearerToken(), SessionAuth()]
staff_auth = [StaffBearerToken(), StaffSession()]
