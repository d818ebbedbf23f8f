from django.contrib.auth.models import User

from accounts.models import ApiToken
from accounts.services import token_digest


def api_token_user_get(*, token: str) -> User | None:
    # The primary: a token minted a moment ago must work at once, whatever the replica's lag.
    found = (
        ApiToken.objects.using("default")
        .select_related("user")
        .filter(digest=token_digest(token), user__is_active=True)
        .first()
    )
    return found.user if found else None
