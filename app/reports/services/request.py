"""Asking for a report: the parameters checked, the owner's cap, the row, and its task enqueued
on the "reports" queue after the commit."""

from __future__ import annotations

from datetime import date
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from core.db_router import PRIMARY
from core.queue import task_publish
from reports.errors import ReportForbidden, ReportInvalid, ReportLimitReached
from reports.models import Report
from shop.models import Product

if TYPE_CHECKING:
    # The type only: at run time the user model is settings.AUTH_USER_MODEL (get_user_model()).
    from accounts.models import User

State = Report.State


def report_parameters_check(*, date_from: date, date_to: date) -> None:
    if date_to < date_from:
        raise ReportInvalid("The date range ends before it starts.", field="date_to")
    if (date_to - date_from).days + 1 > settings.REPORT_MAX_DAYS:
        raise ReportInvalid(
            f"The date range may span at most {settings.REPORT_MAX_DAYS} days.", field="date_to"
        )


def report_create(
    *,
    owner: User,
    date_from: date,
    date_to: date,
    product_id: int | None = None,
    shop_wide: bool | None = None,
) -> Report:
    """Stores the request and enqueues its task on the "reports" queue after the commit.

    Shop-wide sales are staff's business: a customer's report covers their own orders only
    (shop_wide None: shop-wide for staff, their own for anyone else).
    """
    if shop_wide is None:
        shop_wide = owner.is_staff
    if shop_wide and not owner.is_staff:
        raise ReportForbidden(
            'Only staff may ask for a shop-wide report; ask for your own orders (scope "own").',
            field="scope",
        )
    report_parameters_check(date_from=date_from, date_to=date_to)
    if product_id is not None and not Product.objects.using(PRIMARY).filter(pk=product_id).exists():
        raise ReportInvalid(f"No product {product_id}.", field="product_id")
    with transaction.atomic(using=PRIMARY):
        _active_reports_check(owner=owner)
        report = Report.objects.using(PRIMARY).create(
            owner=owner,
            date_from=date_from,
            date_to=date_to,
            product_id=product_id,
            shop_wide=shop_wide,
        )
        transaction.on_commit(partial(report_enqueue, report_id=report.pk), using=PRIMARY)
    return report


def _active_reports_check(*, owner: User) -> None:
    """Raises ReportLimitReached when the owner already has REPORT_MAX_ACTIVE_PER_OWNER reports
    queued or running. Call inside the transaction that creates the report."""
    # The owner's row, locked until the commit, serializes their requests: without it, two at
    # the cap minus one would each count the other's report as not there yet and both pass.
    # NO KEY UPDATE: rows that reference the user (orders, tokens) are still written meanwhile;
    # only other writes of that row wait, for one short transaction.
    list(
        get_user_model()
        .objects.using(PRIMARY)
        .select_for_update(no_key=True)
        .filter(pk=owner.pk)
        .values_list("pk", flat=True)
    )
    limit = settings.REPORT_MAX_ACTIVE_PER_OWNER
    active = (
        Report.objects.using(PRIMARY)
        .filter(owner=owner, state__in=[State.QUEUED, State.RUNNING])
        .count()
    )
    if active >= limit:
        raise ReportLimitReached(
            f"At most {limit} reports of yours may be queued or running at once, and {active} "
            "are: ask again once one of them has finished."
        )


def report_enqueue(*, report_id: int) -> bool:
    """Hands the report's task to the broker. A broker outage is logged, never raised: the
    report stays queued without enqueued_at, and the sweeper enqueues it later."""
    from reports.tasks import report_generate  # the tasks module imports this one

    if not task_publish(
        task=report_generate,
        kwargs={"report_id": report_id},
        what=f"report {report_id}",
        later="the sweeper will enqueue it",
    ):
        return False
    Report.objects.using(PRIMARY).filter(pk=report_id).update(enqueued_at=timezone.now())
    return True
