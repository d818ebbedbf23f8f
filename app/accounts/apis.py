from typing import Annotated, Any

from django.contrib.auth import authenticate
from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from accounts.services import api_token_create
from core.schemas import InputSchema, errors, no_nul

router = Router(tags=["auth"])


class TokenIn(InputSchema):
    username: Annotated[str, no_nul(min_length=1, max_length=150)]
    password: Annotated[str, no_nul(min_length=1, max_length=256)]


class TokenOut(Schema):
    token: str


@router.post("/auth/token", response={201: TokenOut, **errors(400, 401)})
def token_create(request: HttpRequest, payload: TokenIn) -> Status[Any]:
    user = authenticate(request, username=payload.username, password=payload.password)
    if user is None:
        raise HttpError(401, "Wrong username or password.")
    return Status(201, {"token": api_token_create(user=user)})
