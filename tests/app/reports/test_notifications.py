"""The report-ready email (reports.notifications), written to the outbox. The run writes it in
the transaction that marks the report done: tests/app/reports/test_services.py."""

from datetime import date

import pytest

from notifications.models import OutboxEmail
from reports.models import Report
from reports.notifications import report_ready_email_create
from tests.app.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


def a_report(email: str) -> Report:
    owner = UserFactory(username="ada", email=email)
    return Report.objects.create(owner=owner, date_from=date(2025, 3, 1), date_to=date(2025, 3, 5))


def test_the_email_links_the_download_once_per_report(broker_down):
    report = a_report("ada@example.com")
    email = report_ready_email_create(report=report)
    assert email is not None
    assert (email.key, email.recipient) == (f"report-ready:{report.pk}", "ada@example.com")
    assert email.subject == f"Your sales report {report.pk} is ready"
    assert email.body.splitlines() == [
        "Hello ada,",
        "",
        f"your sales report {report.pk} (2025-03-01 to 2025-03-05) is ready:",
        f"http://localhost:8080/api/reports/{report.pk}/download",
        "(download it with the same sign-in you used to ask for it)",
    ]
    # Written again (a second completion cannot happen, but the key guards it): one email.
    assert report_ready_email_create(report=report) == email
    assert OutboxEmail.objects.count() == 1


def test_an_owner_without_an_address_gets_no_email(broker_down):
    assert report_ready_email_create(report=a_report("")) is None
    assert not OutboxEmail.objects.exists()
