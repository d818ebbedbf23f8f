"""What every app's admin builds on. No model of its own: core has none."""

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

# django-stubs types ModelAdmin by its model; Django's class takes no subscript at runtime.
if TYPE_CHECKING:

    class ModelAdmin[M: Model](admin.ModelAdmin[M]):
        pass

else:

    class ModelAdmin[M: Model](admin.ModelAdmin):
        pass


class ReadOnlyAdmin[M: Model](ModelAdmin[M]):
    """To look at, not to edit: these rows move through services (row locks, the outbox, state
    machines a worker drives), which a form saving fields would bypass. Changes are actions
    that call the services."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
