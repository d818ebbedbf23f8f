from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.backends import BUSY_ATTR, RETRY_AFTER_ATTR
from accounts.models import ApiToken, User
from core.admin import ModelAdmin

if TYPE_CHECKING:
    _UserAdmin = UserAdmin[User]
else:
    _UserAdmin = UserAdmin


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form saying why a login was refused unchecked (accounts.backends): the
    account is locked after failed logins, or the server is busy hashing others; not the usual
    "enter a correct username and password", which would send a right password to be retyped."""

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except ValidationError:
            retry_after = getattr(self.request, RETRY_AFTER_ATTR, None)
            if retry_after:
                raise ValidationError(
                    "Too many failed logins for this account; try again in %(seconds)s s.",
                    code="login_throttled",
                    params={"seconds": retry_after},
                ) from None
            if getattr(self.request, BUSY_ATTR, False):
                raise ValidationError(
                    "The server is busy checking other logins; try again in a moment.",
                    code="login_busy",
                ) from None
            raise


admin.site.login_form = ThrottledAdminLoginForm


@admin.register(User)
class AccountUserAdmin(_UserAdmin):
    # Django's user admin (password form, groups, permissions) on the project's user model.
    list_display = ("username", "email", "is_staff", "is_active", "date_joined", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active", "date_joined")
    search_fields = ("username", "email", "first_name", "last_name")


@admin.register(ApiToken)
class ApiTokenAdmin(ModelAdmin[ApiToken]):
    """Seen and revoked (deleted), never made or edited here: a token exists only as the digest
    of a secret its login printed once, and changing its expiry or user would forge one."""

    list_display = ("id", "user", "created_at", "expires_at", "live")
    list_filter = ("created_at", "expires_at")
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)
    fields = ("user", "created_at", "expires_at")

    @admin.display(boolean=True, description="live")
    def live(self, token: ApiToken) -> bool:
        return token.expires_at > timezone.now()

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return super().get_queryset(request).order_by("-created_at", "-pk")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
