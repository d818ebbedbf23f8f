from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """The project's user (settings.AUTH_USER_MODEL), Django's fields for now.

    Its own model from the first migration, as Django advises for new projects: a field added
    here later is one migration, while swapping the model under existing tables is not.
    Code refers to it through get_user_model() or settings.AUTH_USER_MODEL.
    """


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
