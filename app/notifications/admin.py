from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyAdmin
from core.db_router import PRIMARY
from notifications.models import OutboxEmail
from notifications.services import outbox_email_resend


@admin.register(OutboxEmail)
class OutboxEmailAdmin(ReadOnlyAdmin[OutboxEmail]):
    """Rows the relay's claim guards (notifications.services): edited by hand they could be
    sent twice. An operator resends with the action, through the service."""

    list_display = ("id", "key", "recipient", "state", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("state", "created_at")
    search_fields = ("key", "recipient", "subject", "message_id")
    actions = ("send_again",)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEmail]:
        # The primary: whoever decides to resend must see the state as it is, not a lagging copy.
        return super().get_queryset(request).using(PRIMARY)

    @admin.action(description="Send again", permissions=["resend"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[OutboxEmail]) -> None:
        queued, skipped = outbox_email_resend(email_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"{queued} email(s) queued to send again.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} email(s) left alone: a relay is sending them right now.",
                level="warning",
            )

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.change_outboxemail")
