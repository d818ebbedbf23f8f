"""Reports over HTTP: ask for one (202), poll it, download it through Nginx. Thin."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Router, Status
from ninja.errors import HttpError

from accounts.auth import customer_auth
from core.schemas import PathId, errors
from reports import selectors, services
from reports.errors import ReportExpired
from reports.models import Report
from reports.schemas import ReportCreated, ReportIn, ReportOut

router = Router(tags=["reports"])


def _owner_id(request: HttpRequest) -> int:
    # customer_auth guarantees an authenticated user on every route here.
    return int(request.user.pk)  # type: ignore[arg-type]


def _owned(request: HttpRequest, report_id: int) -> Report:
    report = selectors.report_get(owner_id=_owner_id(request), report_id=report_id)
    if report is None:
        raise HttpError(404, f"No report {report_id}.")
    return report


# 403: a session without its CSRF token (tests/app/config/test_openapi.py). 409: the owner has
# REPORT_MAX_ACTIVE_PER_OWNER reports queued or running already.
@router.post(
    "/reports", auth=customer_auth, response={202: ReportCreated, **errors(400, 401, 403, 409)}
)
def report_create(request: HttpRequest, payload: ReportIn) -> Status[Any]:
    report = services.report_create(
        owner=request.user,  # type: ignore[arg-type]
        date_from=payload.date_from,
        date_to=payload.date_to,
        product_id=payload.product_id,
        shop_wide=None if payload.scope is None else payload.scope == "shop",
    )
    status_url = reverse("api:report_detail", args=[report.pk])
    return Status(202, {"id": report.pk, "status_url": status_url})


@router.get(
    "/reports/{report_id}",
    auth=customer_auth,
    response={200: ReportOut, **errors(400, 401, 404)},
    url_name="report_detail",
)
def report_detail(request: HttpRequest, report_id: PathId) -> Report:
    return _owned(request, report_id)


@router.get(
    "/reports/{report_id}/download",
    auth=customer_auth,
    # 410: its file was deleted REPORT_RETENTION_DAYS after it finished.
    response={**errors(400, 401, 404, 409, 410)},
    url_name="report_download",
    openapi_extra={
        "responses": {200: {"description": "The CSV", "content": {"text/csv": {}}}},
    },
)
def report_download(request: HttpRequest, report_id: PathId) -> HttpResponse:
    """Django decides who may download; Nginx sends the file (X-Accel-Redirect to an internal
    location over the media volume), so no worker is tied up streaming it."""
    report = _owned(request, report_id)
    if report.expired_at is not None:
        raise ReportExpired(
            f"Report {report_id} expired: its file was deleted on "
            f"{report.expired_at.date().isoformat()}, as every report's is "
            f"{settings.REPORT_RETENTION_DAYS} days after it is done. Ask for a new report."
        )
    if report.state != Report.State.DONE or not report.file:
        raise HttpError(409, f"Report {report_id} is {report.state}, not ready to download.")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["X-Accel-Redirect"] = settings.PROTECTED_MEDIA_PREFIX + report.file
    response["Content-Disposition"] = f'attachment; filename="report-{report.pk}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
