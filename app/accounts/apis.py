from datetime import datetime
from typing import Annotated, Any

from django.contrib.auth import authenticate
from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from accounts.auth import TOKEN_ID_ATTR, customer_auth
from accounts.backends import BUSY_ATTR, RETRY_AFTER_ATTR
from accounts.errors import LoginBusy, LoginThrottled
from accounts.models import ApiToken
from accounts.selectors import api_token_list
from accounts.services import api_token_create, api_token_revoke
from core.schemas import InputSchema, PathId, errors, no_nul

router = Router(tags=["auth"])


class TokenIn(InputSchema):
    username: Annotated[str, no_nul(min_length=1, max_length=150)]
    password: Annotated[str, no_nul(min_length=1, max_length=256)]


class TokenOut(Schema):
    token: str
    id: int
    expires_at: datetime


class TokenInfo(Schema):
    id: int
    created_at: datetime
    expires_at: datetime
    current: bool

    @staticmethod
    def resolve_current(token: ApiToken, context: dict[str, Any]) -> bool:
        # The token this request came with, if it came with one (a session has none).
        return token.pk == getattr(context["request"], TOKEN_ID_ATTR, None)


@router.post("/auth/token", response={201: TokenOut, **errors(400, 401, 429, 503)})
def token_create(request: HttpRequest, payload: TokenIn) -> Status[Any]:
    user = authenticate(request, username=payload.username, password=payload.password)
    if user is None:
        retry_after = getattr(request, RETRY_AFTER_ATTR, None)
        if retry_after:
            raise LoginThrottled(
                f"Too many failed logins for this account; retry in {retry_after} s.",
                retry_after=retry_after,
            )
        if getattr(request, BUSY_ATTR, False):
            raise LoginBusy("Logins are busy; retry shortly.", retry_after=1)
        raise HttpError(401, "Wrong username or password.")
    token, row = api_token_create(user=user)
    return Status(201, {"token": token, "id": row.pk, "expires_at": row.expires_at})


@router.get("/auth/tokens", auth=customer_auth, response={200: list[TokenInfo], **errors(401)})
def token_list(request: HttpRequest) -> list[ApiToken]:
    """Your live tokens (never the tokens themselves); `current` is the one this request used."""
    return api_token_list(user=request.user)  # type: ignore[arg-type]


@router.delete(
    "/auth/tokens/{token_id}",
    auth=customer_auth,
    response={204: None, **errors(400, 401, 403, 404)},
)
def token_revoke(request: HttpRequest, token_id: PathId) -> Status[None]:
    """Revokes one of your tokens (another user's is 404, like a missing one)."""
    if not api_token_revoke(user=request.user, token_id=token_id):  # type: ignore[arg-type]
        raise HttpError(404, f"No token {token_id}.")
    return Status(204, None)
