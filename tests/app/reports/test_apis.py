"""The reports API through Django's test client: validation, ownership, the X-Accel download."""

import csv
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from reports.models import Report
from reports.services import report_files_expire, report_run
from tests.app.accounts.factories import UserFactory, bearer
from tests.app.reports.conftest import at, order_at
from tests.app.shop.factories import ProductFactory

pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


def post(client, body, **headers):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/api/reports", data=data, content_type="application/json", **headers)


@pytest.fixture
def customer():
    user = UserFactory()
    return user, bearer(user)


def test_asking_for_a_report_queues_it_on_the_reports_queue(client, customer, celery_broker):
    user, headers = customer
    response = post(client, {"date_from": "2025-01-01", "date_to": "2025-01-31"}, **headers)
    assert response.status_code == 202
    body = response.json()
    assert body["status_url"] == f"/api/reports/{body['id']}"
    report = Report.objects.get(pk=body["id"])
    assert report.owner == user
    assert (report.date_from, report.date_to) == (date(2025, 1, 1), date(2025, 1, 31))
    assert report.state == Report.State.QUEUED
    # Enqueued after the commit, on its own queue, and recorded as such.
    assert report.enqueued_at is not None
    [raw] = celery_broker.lrange("reports", 0, -1)
    assert json.loads(raw)["headers"]["task"] == "reports.generate"
    assert celery_broker.llen("default") == celery_broker.llen("email") == 0

    status = client.get(body["status_url"], **headers).json()
    assert status["state"] == "queued"
    assert status["progress"] == 0
    assert status["download_url"] is None


def test_a_report_is_accepted_while_the_broker_is_down(client, customer, broker_down):
    _, headers = customer
    response = post(client, {"date_from": "2025-01-01", "date_to": "2025-01-01"}, **headers)
    assert response.status_code == 202
    # Not handed to the broker: the sweeper enqueues it later.
    assert Report.objects.get().enqueued_at is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"date_to": "2025-01-31"}, "date_from"),
        ({"date_from": "2025-01-01"}, "date_to"),
        ({"date_from": "2025-13-01", "date_to": "2025-12-31"}, "date_from"),
        ({"date_from": "2025-02-30", "date_to": "2025-03-31"}, "date_from"),
        ({"date_from": "01/02/2025", "date_to": "2025-03-31"}, "date_from"),
        ({"date_from": 20250101, "date_to": "2025-03-31"}, "date_from"),
        ({"date_from": "2025-01-01T00:00:00", "date_to": "2025-03-31"}, "date_from"),
        ({"date_from": "2025-01-01", "date_to": "tomorrow"}, "date_to"),
        # Reversed, and longer than REPORT_MAX_DAYS (366).
        ({"date_from": "2025-03-01", "date_to": "2025-02-28"}, "date_to"),
        ({"date_from": "2024-01-01", "date_to": "2025-01-01"}, "date_to"),
        ({"date_from": "2025-01-01", "date_to": "2025-01-31", "product_id": 0}, "product_id"),
        # Misspelt: the report would cover every product.
        ({"date_from": "2025-01-01", "date_to": "2025-01-31", "product": 5}, "product"),
    ],
)
def test_invalid_parameters_are_a_400_naming_the_field(client, customer, body, field):
    _, headers = customer
    response = post(client, body, **headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert Report.objects.count() == 0


def test_the_longest_range_allowed_is_accepted(client, customer, broker_down):
    _, headers = customer
    # 2024 is a leap year: 366 days, the default REPORT_MAX_DAYS.
    response = post(client, {"date_from": "2024-01-01", "date_to": "2024-12-31"}, **headers)
    assert response.status_code == 202


def test_an_unknown_product_is_a_400_naming_it(client, customer):
    _, headers = customer
    body = {"date_from": "2025-01-01", "date_to": "2025-01-31", "product_id": 999_999}
    response = post(client, body, **headers)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"product_id": ["No product 999999."]}


def test_reports_need_a_customer(client):
    response = post(client, {"date_from": "2025-01-01", "date_to": "2025-01-31"})
    assert response.status_code == 401
    assert client.get("/api/reports/1").status_code == 401
    assert client.get("/api/reports/1/download").status_code == 401


def test_another_customers_report_is_a_404(client, customer, broker_down):
    _, headers = customer
    report_id = post(client, {"date_from": "2025-01-01", "date_to": "2025-01-02"}, **headers)
    report_id = report_id.json()["id"]
    report_run(report_id=report_id)
    other = bearer(UserFactory())
    for path in (f"/api/reports/{report_id}", f"/api/reports/{report_id}/download"):
        response = client.get(path, **other)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert client.get("/api/reports/999999", **headers).status_code == 404


def test_download_is_handed_to_nginx_once_done(client, customer, broker_down, media_root):
    _, headers = customer
    product = ProductFactory()
    body = {"date_from": "2025-01-01", "date_to": "2025-01-02", "product_id": product.pk}
    report_id = post(client, body, **headers).json()["id"]
    download = f"/api/reports/{report_id}/download"

    not_yet = client.get(download, **headers)
    assert not_yet.status_code == 409
    assert "queued" in not_yet.json()["error"]["message"]

    assert report_run(report_id=report_id).status == "done"
    status = client.get(f"/api/reports/{report_id}", **headers).json()
    assert status["state"] == "done"
    assert status["progress"] == 100
    assert status["download_url"] == download

    response = client.get(download, **headers)
    assert response.status_code == 200
    assert response.content == b""  # Nginx sends the file
    accel = response["X-Accel-Redirect"]
    assert accel.startswith(f"/protected-media/reports/{report_id}/")
    assert (media_root / accel.removeprefix("/protected-media/")).is_file()
    assert response["Content-Disposition"] == f'attachment; filename="report-{report_id}.csv"'
    assert response["Content-Type"].startswith("text/csv")


# --- who sees whose sales ---------------------------------------------------------------------


@pytest.fixture
def two_customers_orders():
    """Ada and Bob each bought on 2025-03-03: a teapot pair and a single teapot."""
    teapot = ProductFactory(name="Teapot", price=Decimal("2.00"))
    ada, bob = UserFactory(), UserFactory()
    order_at(ada, at(3, 9), {teapot: 2})
    order_at(bob, at(3, 10), {teapot: 1})
    return teapot, ada, bob


def report_csv(client, headers, media_root, body) -> tuple[dict, list[list[str]]]:
    response = post(client, body, **headers)
    assert response.status_code == 202, response.content
    report_id = response.json()["id"]
    assert report_run(report_id=report_id).status == "done"
    status = client.get(f"/api/reports/{report_id}", **headers).json()
    accel = client.get(status["download_url"], **headers)["X-Accel-Redirect"]
    with (media_root / accel.removeprefix("/protected-media/")).open(newline="") as f:
        return status, list(csv.reader(f))


MARCH_3 = {"date_from": "2025-03-03", "date_to": "2025-03-03"}


def test_a_customers_report_counts_only_their_own_orders(
    client, two_customers_orders, broker_down, media_root
):
    teapot, ada, _ = two_customers_orders
    # One day and one product: the very request that exposed single purchases of others.
    body = {**MARCH_3, "product_id": teapot.pk}
    status, rows = report_csv(client, bearer(ada), media_root, body)
    assert status["scope"] == "own"
    assert (status["order_count"], status["units"], status["revenue"]) == (1, 2, "4.00")
    assert rows[1:] == [
        ["2025-03-03", str(teapot.pk), "Teapot", "1", "2", "4.00"],
        ["total", "", "", "1", "2", "4.00"],
    ]

    # A new account has bought nothing: its report is empty, whatever others bought.
    status, rows = report_csv(client, bearer(UserFactory()), media_root, MARCH_3)
    assert (status["order_count"], status["units"], status["revenue"]) == (0, 0, "0.00")
    assert rows[1:] == [["total", "", "", "0", "0", "0.00"]]


def test_a_customer_asking_for_the_whole_shops_sales_is_a_403(client, customer, broker_down):
    _, headers = customer
    response = post(client, {**MARCH_3, "scope": "shop"}, **headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert "staff" in error["message"]
    assert list(error["fields"]) == ["scope"]
    assert Report.objects.count() == 0


def test_a_staff_report_covers_every_customers_orders(
    client, two_customers_orders, broker_down, media_root
):
    teapot, _, _ = two_customers_orders
    staff = bearer(UserFactory(is_staff=True))
    status, rows = report_csv(client, staff, media_root, MARCH_3)
    assert status["scope"] == "shop"
    assert rows[1:] == [
        ["2025-03-03", str(teapot.pk), "Teapot", "2", "3", "6.00"],
        ["total", "", "", "2", "3", "6.00"],
    ]
    # Staff may also ask for their own orders only (none here).
    status, rows = report_csv(client, staff, media_root, {**MARCH_3, "scope": "own"})
    assert status["scope"] == "own"
    assert rows[1:] == [["total", "", "", "0", "0", "0.00"]]


def test_asking_beyond_the_active_reports_cap_is_a_409_naming_it(
    client, customer, broker_down, settings
):
    settings.REPORT_MAX_ACTIVE_PER_OWNER = 2
    user, headers = customer
    body = {"date_from": "2025-01-01", "date_to": "2025-01-02"}
    assert [post(client, body, **headers).status_code for _ in range(2)] == [202, 202]
    response = post(client, body, **headers)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "too_many_active_reports"
    assert "2 reports" in error["message"]
    assert Report.objects.filter(owner=user).count() == 2
    # Once one finishes, the next is accepted.
    report_run(report_id=Report.objects.filter(owner=user).first().pk)
    assert post(client, body, **headers).status_code == 202


def test_a_report_whose_file_expired_answers_410_and_its_status_still_reads(
    client, customer, broker_down, media_root, settings
):
    settings.REPORT_RETENTION_DAYS = 7
    _, headers = customer
    body = {"date_from": "2025-01-01", "date_to": "2025-01-02"}
    report_id = post(client, body, **headers).json()["id"]
    assert report_run(report_id=report_id).status == "done"
    download = f"/api/reports/{report_id}/download"
    assert client.get(download, **headers).status_code == 200
    Report.objects.filter(pk=report_id).update(finished_at=timezone.now() - timedelta(days=8))
    assert report_files_expire() == {"expired": 1}

    response = client.get(download, **headers)
    assert response.status_code == 410
    assert "X-Accel-Redirect" not in response
    error = response.json()["error"]
    assert error["code"] == "expired"
    assert "7 days" in error["message"]
    status = client.get(f"/api/reports/{report_id}", **headers).json()
    assert (status["state"], status["download_url"]) == ("done", None)
    assert status["expired_at"] is not None
    assert status["order_count"] == 0
    # Still only its owner's business.
    assert client.get(download, **bearer(UserFactory())).status_code == 404


def test_the_schema_documents_the_cap_and_the_expiry():
    from config.api import api

    paths = api.get_openapi_schema()["paths"]
    assert "409" in {str(s) for s in paths["/api/reports"]["post"]["responses"]}
    download = paths["/api/reports/{report_id}/download"]["get"]["responses"]
    assert "410" in {str(s) for s in download}
