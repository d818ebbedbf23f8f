from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A bearer token for API clients. Only its SHA-256 is stored: a leaked table is no login."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Past this the token is refused (API_TOKEN_LIFETIME_SECONDS after it was made).
    expires_at = models.DateTimeField()
    # The user's session auth hash when the token was made (an HMAC of the password hash): a
    # password change ends every token, as it ends every session.
    auth_hash = models.CharField(max_length=128)

    def __str__(self) -> str:
        return f"token {self.digest[:8]} of user {self.user_id}"
