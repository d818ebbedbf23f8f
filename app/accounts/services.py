import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from accounts.models import ApiToken


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user: User) -> str:
    """Returns the token itself, once; only its digest is kept."""
    token = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, digest=token_digest(token))
    return token


@transaction.atomic
def customer_create(*, username: str, password: str, email: str = "", staff: bool = False) -> User:
    user = get_user_model().objects.create_user(
        username=username, password=password, email=email, is_staff=staff
    )
    return user
