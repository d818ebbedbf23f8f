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


class Session(SessionAuth):
    """The session, with CSRF checked only when the session cookie logs someone in: without
    one (no cookie, an expired or made-up one) there is no ambient credential to forge, and the
    answer is the 401 that names the missing credential, not "CSRF check Failed"."""

    def _get_key(self, request: HttpRequest) -> str | None:
        if self.param_name not in request.COOKIES or not request.user.is_authenticated:
            return None
        return super()._get_key(request)


class StaffSession(Session):
    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return _staff_only(super().authenticate(request, key))


# Session auth checks CSRF on unsafe methods: a cookie alone never authorises a write.
customer_auth = [BearerToken(), Session()]
staff_auth = [StaffBearerToken(), StaffSession()]
