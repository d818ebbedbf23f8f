import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, User
from core.db_router import PRIMARY


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user: User) -> tuple[str, ApiToken]:
    """Returns the token itself, once (only its digest is kept), and its row. The user's expired
    tokens go at the same time, so each login does not leave one more row forever."""
    now = timezone.now()
    ApiToken.objects.using(PRIMARY).filter(user=user, expires_at__lte=now).delete()
    token = secrets.token_urlsafe(32)
    row = ApiToken.objects.using(PRIMARY).create(
        user=user,
        digest=token_digest(token),
        expires_at=now + timedelta(seconds=settings.API_TOKEN_LIFETIME_SECONDS),
        auth_hash=user.get_session_auth_hash(),
    )
    return token, row


def api_token_revoke(*, user: User, token_id: int) -> bool:
    """Deletes one of the user's own tokens; False if they have none with that id."""
    deleted, _ = ApiToken.objects.using(PRIMARY).filter(user=user, pk=token_id).delete()
    return deleted > 0


@transaction.atomic
def customer_create(*, username: str, password: str, email: str = "", staff: bool = False) -> User:
    user = get_user_model().objects.create_user(
        username=username, password=password, email=email, is_staff=staff
    )
    return user
