import re
from datetime import date
from typing import Any, Literal

from django.conf import settings
from django.urls import reverse
from ninja import Schema
from pydantic import ValidationInfo, field_validator

from core.schemas import InputSchema, MoneyOut, PositiveId, Timestamp
from reports.models import Report

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ReportIn(InputSchema):
    date_from: date
    date_to: date
    # Only orders containing this product, and only its lines.
    product_id: PositiveId | None = None
    # "own": the asker's orders; "shop": every customer's (staff only). Default: "shop" for
    # staff, "own" for everyone else.
    scope: Literal["own", "shop"] | None = None

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def calendar_date(cls, value: Any) -> date:
        # A day, written YYYY-MM-DD: not 1700000000, not "2024-01-01T00:00", not 2024-02-30.
        if isinstance(value, str) and _ISO_DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError("must be a date written YYYY-MM-DD")

    @field_validator("date_to")
    @classmethod
    def range_within_limit(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("date_from")
        if start is None:
            return value
        if value < start:
            raise ValueError("must not be before date_from")
        if (value - start).days + 1 > settings.REPORT_MAX_DAYS:
            raise ValueError(f"the range may span at most {settings.REPORT_MAX_DAYS} days")
        return value


class ReportCreated(Schema):
    id: int
    status_url: str


class ReportOut(Schema):
    id: int
    state: str
    progress: int
    error: str
    date_from: date
    date_to: date
    product_id: int | None
    scope: Literal["own", "shop"]
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    # Set once its file was deleted (REPORT_RETENTION_DAYS after it finished): no download since.
    expired_at: Timestamp | None
    # Set once the report is done, until its file expires.
    download_url: str | None
    order_count: int | None
    units: int | None
    revenue: MoneyOut | None

    @staticmethod
    def resolve_scope(report: Report) -> str:
        return "shop" if report.shop_wide else "own"

    @staticmethod
    def resolve_download_url(report: Report) -> str | None:
        done = report.state == Report.State.DONE and report.expired_at is None
        return reverse("api:report_download", args=[report.pk]) if done else None
