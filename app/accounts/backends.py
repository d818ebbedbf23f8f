"""Django's ModelBackend behind the login limits of accounts.throttle, for every login: the
API's token endpoint and the admin's form alike."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts.throttle import (
    hash_gate,
    login_failure_record,
    login_lock_remaining,
    login_success_record,
)

# Set on the request when a login was refused unhashed, for the API to answer 429 or 503 instead
# of 401; the admin's form shows its usual error.
RETRY_AFTER_ATTR = "login_retry_after"
BUSY_ATTR = "login_busy"


class ThrottledModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        remaining = login_lock_remaining(username=username)
        if remaining:
            if request is not None:
                setattr(request, RETRY_AFTER_ATTR, remaining)
            raise PermissionDenied  # Django stops here: no other backend, no hash
        ran, user = hash_gate.run(
            lambda: super(ThrottledModelBackend, self).authenticate(
                request, username=username, password=password, **kwargs
            ),
            share=settings.LOGIN_HASH_SHARE,
            max_wait=settings.LOGIN_HASH_WAIT_SECONDS,
        )
        if not ran:
            if request is not None:
                setattr(request, BUSY_ATTR, True)
            raise PermissionDenied
        if user is None:
            login_failure_record(username=username)
        else:
            login_success_record(username=username)
        return user
