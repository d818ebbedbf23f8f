"""The reports' emails. Reports compose them; the outbox (notifications) stores and sends them."""

from django.conf import settings
from django.urls import reverse

from notifications.models import OutboxEmail
from notifications.services import outbox_email_create
from reports.models import Report


def report_ready_email_create(*, report: Report) -> OutboxEmail | None:
    """The link to a finished report, in the transaction that marks it done."""
    owner = report.owner
    if not owner.email:
        return None
    link = settings.PUBLIC_BASE_URL + reverse("api:report_download", args=[report.pk])
    body = "\n".join(
        [
            f"Hello {owner.get_username()},",
            "",
            f"your sales report {report.pk} ({report.date_from} to {report.date_to}) is ready:",
            link,
            "(download it with the same sign-in you used to ask for it)",
        ]
    )
    return outbox_email_create(
        key=f"report-ready:{report.pk}",
        to=owner.email,
        subject=f"Your sales report {report.pk} is ready",
        body=body,
    )
