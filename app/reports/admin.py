from django.contrib import admin

from core.admin import ReadOnlyAdmin
from reports.models import Report


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin[Report]):
    # Asked for over the API, moved on only by the run that holds it (reports.services.claim).
    list_display = (
        "id",
        "owner",
        "state",
        "shop_wide",
        "date_from",
        "date_to",
        "progress",
        "attempts",
        "created_at",
        "finished_at",
    )
    list_filter = ("state", "shop_wide", "created_at")
    search_fields = ("=id", "owner__username", "owner__email")
    list_select_related = ("owner",)
