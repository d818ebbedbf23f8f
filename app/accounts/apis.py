from typing import Any

from django.contrib.auth import authenticate
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from accounts.services import api_token_create
from core.schemas import errors

router = Router(tags=["auth"])


class TokenIn(Schema):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=256)


class TokenOut(Schema):
    token: str


@router.post("/auth/token", response={201: TokenOut, **errors(400, 401)})
def token_create(request: HttpRequest, payload: TokenIn) -> Status[Any]:
    user = authenticate(request, username=payload.username, password=payload.password)
    if user is None:
        raise HttpError(401, "Wrong username or password.")
    return Status(201, {"token": api_token_create(user=user)})
