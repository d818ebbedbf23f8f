from typing import Annotated, Any

from django.contrib.auth import authenticate
from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from accounts.backends import BUSY_ATTR, RETRY_AFTER_ATTR
from accounts.errors import LoginBusy, LoginThrottled
from accounts.services import api_token_create
from core.schemas import InputSchema, errors, no_nul

router = Router(tags=["auth"])


class TokenIn(InputSchema):
    username: Annotated[str, no_nul(min_length=1, max_length=150)]
    password: Annotated[str, no_nul(min_length=1, max_length=256)]


class TokenOut(Schema):
    token: str


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
    return Status(201, {"token": api_token_create(user=user)})
