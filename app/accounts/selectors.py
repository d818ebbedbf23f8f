from django.db.models import QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from accounts.models import ApiToken, User
from accounts.services import token_digest
from core.db_router import PRIMARY
from core.orm import one_or_none


def _valid(token: ApiToken) -> bool:
    # A password changed since the token was made: the token ended with it.
    return constant_time_compare(token.auth_hash, token.user.get_session_auth_hash())


def api_token_get(*, token: str) -> ApiToken | None:
    """The live token row (its user loaded) for a bearer token: not expired, the user active
    and their password unchanged since."""
    # The primary: a token minted a moment ago must work at once, whatever the replica's lag.
    found = one_or_none(
        ApiToken.objects.using(PRIMARY)
        .select_related("user")
        .filter(digest=token_digest(token), user__is_active=True, expires_at__gt=timezone.now())
    )
    return found if found is not None and _valid(found) else None


def api_token_list(*, user: User) -> list[ApiToken]:
    """The user's live tokens, newest first."""
    tokens: QuerySet[ApiToken] = (
        ApiToken.objects.using(PRIMARY)
        .select_related("user")
        .filter(user=user, expires_at__gt=timezone.now())
        .order_by("-created_at", "-pk")
    )
    return [t for t in tokens if _valid(t)]
